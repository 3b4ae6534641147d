"""`Ledger`: the budget accounts of B problems searched together, and their door to the models.

Every policy and PRM call of a search goes through its ledger. A call takes
requests ``(problem index, state)`` from many problems; the ledger

1. drops the requests of problems that are closed, and closes (and drops) each
   problem whose share of the call might exceed its budget (the rule in
   `agents.search.budget`); a policy call asking n samples per request gives a
   problem that cannot afford n the most it can afford instead (one more call);
2. makes ONE batched call for the remaining requests (none if none remain; one
   per reduced sample count at the end of budgets);
3. charges each problem the rows of its own requests.

Results come back aligned with the requests, None for a dropped request. A
closed problem makes no more calls: its search ends with what it has.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace

from agents.models.base import Generation, Policy, SamplingConfig, ValueModel
from agents.search.budget import Budget, Usage
from reasoning_gym import ReasoningState

Request = tuple[int, ReasoningState]  # (problem index in the batch, state)


class Ledger:
    """Per-problem `Usage` under one `Budget` for a batch of `size` problems."""

    def __init__(self, budget: Budget, size: int) -> None:
        self.budget = budget
        self.usage = [Usage() for _ in range(size)]
        self.closed = [False] * size
        self.out_of_budget = [False] * size
        self._started = [time.perf_counter()] * size  # each problem's clock (refill: from when it starts)
        # Tokens per character of state text, the largest seen (None: not seen yet).
        self._rate: dict[str, float | None] = {"policy": None, "prm": None}
        self._longest: dict[str, float] = {"policy": 0.0, "prm": 0.0}
        self._policy_calls = 0

    def open(self, problem: int) -> bool:
        return not self.closed[problem]

    def begin(self, problem: int) -> None:
        """Start a problem's clock now (a problem that waited in a refill queue starts late)."""
        self._started[problem] = time.perf_counter()

    def close(self, problem: int) -> None:
        """End a problem's search: it makes no more calls; its clock stops now."""
        if not self.closed[problem]:
            self.closed[problem] = True
            self.usage[problem].wall_seconds = self._elapsed(problem)

    def close_all(self) -> None:
        for problem in range(len(self.closed)):
            self.close(problem)

    # --- the model calls -------------------------------------------------------

    def propose_steps(
        self,
        policy: Policy,
        requests: Sequence[Request],
        n: int,
        sampling: SamplingConfig,
        exclude: Sequence[Sequence[str]] | None = None,
    ) -> list[list[str] | None]:
        """`n` next steps per request (one batched `policy.propose_steps` call); ``exclude[k]``:
        steps request k should not get again (see `Policy.propose_steps`)."""

        def call(kept: list[int], n: int, sampling: SamplingConfig) -> Generation:
            states = [requests[k][1] for k in kept]
            taken = None if exclude is None else [exclude[k] for k in kept]
            return policy.propose_steps(states, n, sampling, exclude=taken)

        return self._generate(call, requests, n, sampling)

    def sample_solutions(
        self, policy: Policy, requests: Sequence[Request], n: int, sampling: SamplingConfig
    ) -> list[list[str] | None]:
        """`n` whole continuations per request (one batched `policy.sample_solutions` call)."""

        def call(kept: list[int], n: int, sampling: SamplingConfig) -> Generation:
            return policy.sample_solutions([requests[k][1] for k in kept], n, sampling)

        return self._generate(call, requests, n, sampling)

    def score(self, value: ValueModel, requests: Sequence[Request]) -> list[float | None]:
        """PRM value per request (one batched `value.score` call)."""

        def estimate(states: list[ReasoningState]) -> Usage:
            chars = sum(len(state.text) for state in states)
            return Usage(prm_tokens=self._tokens("prm", chars), prm_calls=1, wall_seconds=self._longest["prm"])

        kept = self._admit(requests, estimate)
        results: list[float | None] = [None] * len(requests)
        if not kept:
            return results
        started = time.perf_counter()
        scores = value.score([requests[k][1] for k in kept])
        self._longest["prm"] = max(self._longest["prm"], time.perf_counter() - started)
        for problem, rows in _rows_by_problem(requests, kept).items():
            self.usage[problem].add_scores(scores, rows)
            self.usage[problem].wall_seconds = self._elapsed(problem)
        for row, k in enumerate(kept):
            results[k] = scores.values[row]
            self._learn("prm", scores.tokens[row], len(requests[k][1].text))
        return results

    def _generate(
        self,
        call: Callable[[list[int], int, SamplingConfig], Generation],
        requests: Sequence[Request],
        n: int,
        sampling: SamplingConfig,
    ) -> list[list[str] | None]:
        results: list[list[str] | None] = [None] * len(requests)
        for samples, kept in self._admit_samples(requests, n, sampling):
            if sampling.seed is not None:
                # A fixed seed would give every call (retry, round) the same draws.
                call_sampling = replace(sampling, seed=sampling.seed + self._policy_calls)
            else:
                call_sampling = sampling
            self._policy_calls += 1
            started = time.perf_counter()
            generation = call(kept, samples, call_sampling)
            self._longest["policy"] = max(self._longest["policy"], time.perf_counter() - started)
            for problem, rows in _rows_by_problem(requests, kept).items():
                self.usage[problem].add_generation(generation, rows)
                self.usage[problem].wall_seconds = self._elapsed(problem)
            for row, k in enumerate(kept):
                results[k] = generation.texts[row]
                self._learn("policy", generation.prompt_tokens[row], samples * len(requests[k][1].text))
        return results

    def _admit_samples(
        self, requests: Sequence[Request], n: int, sampling: SamplingConfig
    ) -> list[tuple[int, list[int]]]:
        """[(samples per request, indices of the requests that get them)], most samples first.

        A problem that cannot afford `n` samples per request gets the most it can
        afford (so the end of a budget buys one more proposal rather than none); one
        that cannot afford a single sample is closed.
        """

        def estimate(samples: int) -> Callable[[list[ReasoningState]], Usage]:
            def usage(states: list[ReasoningState]) -> Usage:
                chars = samples * sum(len(state.text) for state in states)
                return Usage(
                    policy_prompt_tokens=self._tokens("policy", chars),
                    policy_completion_tokens=len(states) * samples * sampling.max_new_tokens,
                    policy_calls=1,
                    wall_seconds=self._longest["policy"],
                )

            return usage

        groups: list[tuple[int, list[int]]] = []
        pending = list(requests)
        indices = list(range(len(requests)))
        for samples in range(n, 0, -1):
            kept = self._admit(pending, estimate(samples), close=samples == 1)
            if kept:
                groups.append((samples, [indices[k] for k in kept]))
            admitted = {pending[k][0] for k in kept}
            rest = [k for k in range(len(pending)) if pending[k][0] not in admitted and self.open(pending[k][0])]
            pending, indices = [pending[k] for k in rest], [indices[k] for k in rest]
            if not pending:
                break
        return groups

    # --- the budget rule --------------------------------------------------------

    def _admit(
        self, requests: Sequence[Request], estimate: Callable[[list[ReasoningState]], Usage], close: bool = True
    ) -> list[int]:
        """Indices of the requests whose problems can afford their share of the call; with
        `close`, a problem that cannot is closed (out of budget)."""
        by_problem: dict[int, list[int]] = defaultdict(list)
        for k, (problem, _) in enumerate(requests):
            by_problem[problem].append(k)
        kept: list[int] = []
        for problem, ks in by_problem.items():
            if self.closed[problem]:
                continue
            self.usage[problem].wall_seconds = self._elapsed(problem)
            if self.budget.fits(self.usage[problem] + estimate([requests[k][1] for k in ks])):
                kept.extend(ks)
            elif close:
                self.out_of_budget[problem] = True
                self.close(problem)
        return sorted(kept)

    def _tokens(self, kind: str, chars: int) -> int:
        rate = self._rate[kind]
        return math.ceil(chars * (1.0 if rate is None else rate))

    def _learn(self, kind: str, tokens: int, chars: int) -> None:
        if tokens > 0 and chars > 0:  # a PRM cache hit costs 0 tokens and says nothing
            rate = self._rate[kind]
            self._rate[kind] = tokens / chars if rate is None else max(rate, tokens / chars)

    def _elapsed(self, problem: int) -> float:
        return time.perf_counter() - self._started[problem]


def _rows_by_problem(requests: Sequence[Request], kept: list[int]) -> dict[int, list[int]]:
    """{problem: rows of the batched call that belong to it}."""
    rows: dict[int, list[int]] = defaultdict(list)
    for row, k in enumerate(kept):
        rows[requests[k][0]].append(row)
    return rows
