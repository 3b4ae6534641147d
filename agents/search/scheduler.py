"""Refill scheduling: at most `active` problems searched at once, each finished one replaced from the queue.

A search agent advances its problems in rounds; a round makes one batched
policy call (plus retries and roll-forward steps) and one batched PRM call for
every problem in play. Problems finish at different rounds, so a batch that
started full thins out as its trees finish, and the model works at a fraction
of its batch. `run_rounds` keeps the batch full instead: after each round, the
slots of the problems that finished go to the next problems of the queue, in
order. With ``active >= len(problems)`` every problem starts at once (lockstep).

What a problem's search does depends only on its own tree and draws, never on
which problems share its rounds, so for greedy decoding refill gives the
results of searching one problem at a time (`tests/test_scheduler.py`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from reasoning_gym import Problem

Advance = Callable[[Sequence[int]], Sequence[int]]
"""One round for the problems in play (their indices, in queue order) -> those that finished."""


def run_rounds(
    size: int,
    active: int | None,
    start: Callable[[int], None],
    advance: Advance,
    on_done: Callable[[int], None] | None = None,
) -> None:
    """Run problems ``0 .. size - 1`` through rounds with at most `active` (None: all) in play.

    `start(i)` is called as problem i enters play, `advance` once per round, and
    `on_done(i)` as problem i finishes. A round in which no problem finishes is
    followed by another over the same problems; `advance` must eventually finish
    each problem (every agent's search ends after its iteration or step limit).
    """
    if active is not None and active < 1:
        raise ValueError(f"active must be >= 1 (or None for all problems at once), got {active}")
    slots = size if active is None else active
    queue = deque(range(size))
    running: list[int] = []
    while queue or running:
        while queue and len(running) < slots:
            problem = queue.popleft()
            start(problem)
            running.append(problem)
        finished = set(advance(list(running)))
        if on_done is not None:
            for problem in running:
                if problem in finished:
                    on_done(problem)
        running = [problem for problem in running if problem not in finished]


def forgetting(
    models: Sequence[object], problems: Sequence[Problem], on_done: Callable[[int], None] | None
) -> Callable[[int], None]:
    """An `on_done` that first lets each model that can (`forget(problem)`, e.g. `HFPolicy`'s
    prefix cache) drop what it cached for the finished problem, then calls `on_done`."""
    forgets = [forget for forget in (getattr(model, "forget", None) for model in models) if callable(forget)]

    def done(problem: int) -> None:
        for forget in forgets:
            forget(problems[problem])
        if on_done is not None:
            on_done(problem)

    return done
