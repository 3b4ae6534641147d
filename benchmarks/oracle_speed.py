r"""How fast is the exact value oracle? States labelled per second by `reasoning_gym.solvable`.

For each level, random states are drawn the way D_V0 and the value-quality
benchmark meet them: a puzzle of the level's training split, then a random
number of random legal moves (0 up to one fewer than the numbers: the last states the answer),
rendered as the task writes them. Each state is labelled by
`reasoning_gym.solvable(state)` (replay the steps, then the memoised solver on
the numbers left) twice: first with the solver's caches emptied ("cold": every
board solved from scratch, its sub-boards memoised on the way), then again
("warm": every board a cache hit, so the time is replaying the text). The states
are labelled in one pass per level; a level stops early after ``--max-seconds``.
The time to generate the level's puzzles is reported too: the generator emits
only solvable puzzles, so it solves each one (and most of the run's time goes to
the 5- and 6-number levels' puzzles).

    .venv/bin/python benchmarks/oracle_speed.py        # about 5 minutes

Prints a table and writes benchmarks/results/countdown/oracle_speed.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agents.artifacts import write_json_atomically  # noqa: E402
from reasoning_gym import Problem, ReasoningState, make_source, solvable  # noqa: E402
from reasoning_gym.sources.puzzles import COUNTDOWN_PRESETS, solution_steps  # noqa: E402
from reasoning_gym.tasks import solver  # noqa: E402
from reasoning_gym.tasks.countdown import puzzle_of  # noqa: E402

LEVELS = (*COUNTDOWN_PRESETS, "game24")
OUT = ROOT / "benchmarks" / "results" / "countdown" / "oracle_speed.json"


def level_puzzles(level: str, puzzles: int, seed: int) -> list[Problem]:
    """Up to `puzzles` training puzzles of `level` (Game of 24 has 1,111 in its training split)."""
    source = ("game24", {}) if level == "game24" else ("countdown", {"difficulty": level})
    return list(make_source(source[0], split="train", size=puzzles, seed=seed, **source[1]))


def random_states(problems: list[Problem], per_puzzle: int, seed: int) -> list[ReasoningState]:
    """`per_puzzle` states after random legal moves for each of the countdown `problems`."""
    rng = random.Random(seed)
    states = []
    for problem in problems:
        puzzle = puzzle_of(problem)
        for _ in range(per_puzzle):
            numbers, moves = solver.normalize(puzzle.numbers), []
            for _ in range(rng.randrange(len(puzzle.numbers))):
                move = rng.choice(solver.legal_moves(numbers, puzzle.rules))
                moves.append(move)
                numbers = solver.after(numbers, move)
            states.append(ReasoningState(problem, solution_steps(puzzle, moves)))
    return states


def label(states: list[ReasoningState], max_seconds: float) -> tuple[int, int, float]:
    """(states labelled, of them solvable, seconds) in one pass, stopping after `max_seconds`."""
    start, live = time.perf_counter(), 0
    for done, state in enumerate(states, start=1):
        live += solvable(state)
        if time.perf_counter() - start > max_seconds:
            return done, live, time.perf_counter() - start
    return len(states), live, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=LEVELS)
    parser.add_argument("--puzzles", type=int, default=1000, help="training puzzles per level")
    parser.add_argument("--per-puzzle", type=int, default=10, help="random states per puzzle")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time limit of a level's cold pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    rows = []
    print("| level | numbers | puzzles | generated in s | states | solvable | cold states/s | warm states/s |")
    print("|---|---|---|---|---|---|---|---|")
    for level in args.levels:
        start = time.perf_counter()
        problems = level_puzzles(level, args.puzzles, args.seed)
        generated = time.perf_counter() - start
        states = random_states(problems, args.per_puzzle, args.seed)
        solver.solvable.cache_clear()
        solver.legal_moves.cache_clear()
        done, live, cold = label(states, args.max_seconds)
        _, _, warm = label(states[:done], float("inf"))
        row = {"level": level, "numbers": len(puzzle_of(problems[0]).numbers), "puzzles": len(problems),
               "generate_seconds": generated, "states": done, "solvable_share": live / done,
               "cold_states_per_s": done / cold, "warm_states_per_s": done / warm}  # fmt: skip
        rows.append(row)
        print(f"| {level} | {row['numbers']} | {len(problems):,} | {generated:.1f} | {done:,} | {row['solvable_share']:.2f} "
              f"| {row['cold_states_per_s']:,.0f} | {row['warm_states_per_s']:,.0f} |", flush=True)  # fmt: skip
    data = {"puzzles": args.puzzles, "per_puzzle": args.per_puzzle, "seed": args.seed,
            "max_seconds": args.max_seconds, "rows": rows}  # fmt: skip
    write_json_atomically(args.out, data)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
