"""ReST-EM (Singh et al. 2023, "Beyond Human Data"), the first self-training baseline.

One iteration, as `agents.training.self_train.SelfTrainer` runs it with
``method: rest_em``:

1. E-step: sample whole chain-of-thought solutions from pi_{i-1} on the training
   questions until the iteration has spent as many policy completion tokens as
   the ReST-MCTS* search did (`sample_until`, token matching in `self_train`);
2. keep the solutions whose final answer matches the oracle, at most
   `max_correct_per_problem` distinct ones per question (`rest_em_targets`);
3. M-step: SFT of the policy on them with TRL's `SFTTrainer`
   (`agents.training.policy_sft.train_policy`, shared with ReST-MCTS*).

The PRM is not trained (ReST-EM has none); MCTS* evaluation uses V_{i-1}.

`sample_until` is shared with the Self-Rewarding baseline. It samples in rounds:
round r draws one solution for every question, in batches of `batch_size`
questions (one batched ``sample_solutions`` call each), so every question gets
the same number of samples, plus or minus one. It stops as soon as the tokens
spent reach the target; the last batch is trimmed to the questions the remaining
tokens should pay for (at the mean tokens per sample so far), so the overshoot is
at most about one sample's worth per trimmed question.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from agents.models.base import Policy, SamplingConfig
from agents.search.traces import solution_state
from agents.training.tree_targets import TreeTargets
from reasoning_gym import EpisodeLimits, Problem, ReasoningState, Verifier, grade


@dataclass(frozen=True)
class RestEMSettings:
    """How ReST-EM samples and filters.

    Attributes:
        temperature: sampling temperature of the CoT solutions.
        top_p: nucleus sampling mass.
        max_new_tokens: cap on tokens per solution.
        batch_size: questions per batched policy call.
        max_samples_per_problem: hard cap on samples per question (a stop for a
            token target that is never reached).
        max_correct_per_problem: distinct correct solutions kept per question
            (the ReST-EM paper keeps at most 10, so easy questions do not dominate);
            None keeps all.
    """

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 320
    batch_size: int = 32
    max_samples_per_problem: int = 256
    max_correct_per_problem: int | None = 10

    def __post_init__(self) -> None:
        SamplingConfig(self.temperature, self.top_p, self.max_new_tokens)  # validates, naming the field
        for name in ("batch_size", "max_samples_per_problem"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class SampledSolution:
    """One sampled CoT solution.

    Attributes:
        problem: the question (with its oracle answer).
        state: the solution read into the MDP (steps up to the first stated answer).
        tokens: completion tokens the sample cost.
        correct: its answer matches the oracle.
    """

    problem: Problem
    state: ReasoningState
    tokens: int
    correct: bool

    @property
    def prompt(self) -> str:
        return ReasoningState(self.problem).text

    @property
    def completion(self) -> str:
        """The solution's steps as ``"Step k: ...\\n"`` lines (``prompt + completion == state.text``)."""
        return self.state.text[len(self.prompt) :]

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem.id,
            "prompt": self.prompt,
            "completion": self.completion,
            "answer": self.state.answer,
            "correct": self.correct,
            "tokens": self.tokens,
        }


def sample_until(
    policy: Policy,
    problems: Sequence[Problem],
    target_tokens: int,
    settings: RestEMSettings,
    seed: int,
    limits: EpisodeLimits = EpisodeLimits(),
    verifier: Verifier | None = None,
    show_progress: bool = True,
) -> list[SampledSolution]:
    """Sample CoT solutions round-robin over `problems` until `target_tokens` completion tokens are spent.

    Deterministic for a given `seed` (each batched call is seeded from `seed`, the
    round and the batch). Returns the samples in the order drawn.
    """
    samples: list[SampledSolution] = []
    spent = 0
    if target_tokens <= 0 or not problems:
        return samples
    bar = tqdm(total=target_tokens, desc="sample CoT", unit="tok", disable=not show_progress)
    calls = 0
    for round_ in range(settings.max_samples_per_problem):
        for start in range(0, len(problems), settings.batch_size):
            remaining = target_tokens - spent
            if remaining <= 0:
                bar.close()
                return samples
            chunk = list(problems[start : start + settings.batch_size])
            per_sample = spent / len(samples) if samples else None
            if per_sample:  # trim the last batches to what the remaining tokens pay for
                chunk = chunk[: max(1, math.ceil(remaining / per_sample))]
            sampling = SamplingConfig(
                settings.temperature, settings.top_p, settings.max_new_tokens, seed=seed + 7919 * calls
            )
            calls += 1
            generation = policy.sample_solutions([ReasoningState(p) for p in chunk], 1, sampling)
            for problem, row, tokens in zip(chunk, generation.texts, generation.completion_tokens):
                state = solution_state(problem, row[0], limits)
                samples.append(SampledSolution(problem, state, tokens, grade(state, verifier)))
                spent += tokens
            bar.update(generation.total_completion_tokens)
    bar.close()
    return samples


def rest_em_targets(samples: Sequence[SampledSolution], max_correct_per_problem: int | None = 10) -> TreeTargets:
    """Policy rows (TRL prompt/completion) from the correct samples, deduplicated per question."""
    out = TreeTargets()
    kept: dict[str, set[str]] = {}
    for sample in samples:
        if not sample.correct:
            continue
        seen = kept.setdefault(sample.problem.id, set())
        if sample.completion in seen:
            continue
        if max_correct_per_problem is not None and len(seen) >= max_correct_per_problem:
            continue
        seen.add(sample.completion)
        out.policy.append({"prompt": sample.prompt, "completion": sample.completion, "problem_id": sample.problem.id})
    return out
