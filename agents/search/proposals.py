"""Proposing distinct next steps for many states at once, with the reference's retries.

A proposal is one step. As in the ReST-MCTS* reference, a proposal is rejected
when it is empty, repeats a sibling (an existing child or another proposal for
the same state) or repeats a step already in the partial solution; here also
when the environment would reject it (too long) and when it reaches the same
position as a sibling on a task that renders positions for its value model
(Countdown: ``9 * 7`` after ``7 * 9``; the two children would be one node
twice). Each rejected proposal is asked again, up to `retries` times.

With `without_replacement`, steps are drawn one per state per call, up to
``n + retries`` calls, and every call names the steps already taken at the
state (its siblings and the proposals found so far); a policy that can sample
without them does (`HFPolicy`), so no token is spent on a repeat. (Two samples
drawn side by side in one call could repeat each other.) A step already on the
state's path is not named, only filtered: the policy wrote it at another state,
so weighing it out costs a model pass per call, and on Countdown the policy
proposed none of its path steps again in 1,287 proposals (MCTS* at 16x, 100
puzzles).

A caller that asks the same state again later (MCTS* widening a node) can pass
`rejected`, one set per request that remembers the proposals rejected there:
they are named in later asks and filtered, so a proposal rejected once is not
drawn again and again. Without it, a second illegal move at a Countdown node
(the same position as the first: ``illegal``) was the low-temperature policy's
next draw at every widening, each ask brought nothing, and the node closed
with budget left.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.models.base import Policy, SamplingConfig
from agents.search.ledger import Ledger
from reasoning_gym import EpisodeLimits, ReasoningState, apply_step
from reasoning_gym.steps import normalize_step

ProposalRequest = tuple[int, ReasoningState, Sequence[str]]  # (problem, state, sibling steps already taken)


def propose_children(
    ledger: Ledger,
    policy: Policy,
    requests: Sequence[ProposalRequest],
    n: int,
    sampling: SamplingConfig,
    limits: EpisodeLimits,
    retries: int,
    without_replacement: bool = False,
    rejected: Sequence[set[str]] | None = None,
) -> list[list[ReasoningState]]:
    """Up to `n` distinct child states per request (R requests -> R lists).

    The first round is one batched call asking `n` steps of every state; each
    retry round is one batched call asking one step per missing proposal (the
    state repeated once per missing proposal). With `without_replacement`, every
    round asks one step of each state still short of `n`, the taken steps
    excluded (at most ``n + retries`` rounds). Every call goes through the
    ledger, so it is charged per problem and a problem out of budget stops
    asking (its list keeps what it got). ``rejected[k]``, if given: the steps
    rejected at request k's state by earlier calls, excluded like its siblings;
    this call adds the ones it rejects.
    """
    children: list[list[ReasoningState]] = [[] for _ in requests]
    rejected = [set() for _ in requests] if rejected is None else rejected
    taken = [{normalize_step(step) for step in siblings} | set(state.steps) | refused
             for (_, state, siblings), refused in zip(requests, rejected)]  # fmt: skip
    positions = [{_position(state, step) for step in siblings} for _, state, siblings in requests]
    for attempt in range(n + retries if without_replacement else retries + 1):
        if without_replacement:  # one step per request short of n, each call excluding all found so far
            asked, per_row = [k for k, found in enumerate(children) if len(found) < n], 1
        elif attempt == 0:
            asked, per_row = list(range(len(requests))), n
        else:
            asked, per_row = [k for k, found in enumerate(children) for _ in range(n - len(found))], 1
        if not asked:
            break
        exclude = None
        if without_replacement:
            exclude = [(*requests[k][2], *sorted(rejected[k]), *(c.steps[-1] for c in children[k])) for k in asked]
        texts = ledger.propose_steps(policy, [requests[k][:2] for k in asked], per_row, sampling, exclude)
        for k, row in zip(asked, texts):
            for text in row or ():
                step = normalize_step(text)
                if not step or step in taken[k]:
                    continue
                try:
                    child = apply_step(requests[k][1], step, limits)
                except ValueError:
                    rejected[k].add(step)
                    continue  # longer than the environment admits
                # The task may render the step (a planning task appends the numbers
                # left), so two texts can record the same step: compare both forms.
                if child.steps[-1] in taken[k] or child.value_text in positions[k]:
                    rejected[k].add(step)
                    continue
                taken[k].update((step, child.steps[-1]))
                positions[k].add(child.value_text)
                children[k].append(child)
    return children


def _position(state: ReasoningState, step: str) -> str:
    """The value model's view of `state` after the recorded sibling `step`."""
    return ReasoningState(state.problem, (*state.steps, step)).value_text
