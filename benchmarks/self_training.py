r"""Self-training benchmark: ReST-MCTS* against ReST-EM, Self-Rewarding and weighted NLL.

For each seed, builds (or reuses) the bootstrap pi_0 / V_0 of that seed, then runs
each method for `--iterations` iterations with `SelfTrainer` (same training
questions; ReST-EM and Self-Rewarding sample as many policy completion tokens per
iteration as the ReST-MCTS* search of the same seed and iteration spent). Every
run lives in its own run directory, so an interrupted benchmark resumes where it
stopped when the same command is run again.

Columns, per method and iteration (mean over seeds, min-max in the JSON): greedy
CoT accuracy and MCTS* accuracy at the config's fixed evaluation budget on the
held-out test split, the cumulative policy completion tokens sampled for
training, cumulative wall time, and the PRM's AUROC on held-out search trees:
MCTS* (data mode, pi_0 and V_0 of the seed) on held-out test problems, every kept
node labelled by whether it lies on a path to a correct answer
(`agents.training.tree_targets.step_labels`), or on a planning task by whether
the target can still be made (exact, `reasoning_gym.solvable`). Two AUROCs: pooled over all nodes,
and among siblings (pairs with the same parent only, `grouped_auroc`: the
choice the search makes). The trees are built once per seed, so every PRM is
judged on the same steps.

    .venv/bin/python benchmarks/self_training.py                       # 2 seeds, 2 iterations
    .venv/bin/python benchmarks/self_training.py --seeds 0 --methods rest_mcts rest_em
    .venv/bin/python benchmarks/self_training.py --config configs/countdown/self_train_bench.yaml \
        --gain-goal 0.15 --runs runs/self_training_countdown --out benchmarks/results/countdown/self_training.json

Prints a Markdown table, then what became of the greedy solutions (right; on a
planning task the first illegal move or dead end, `agents.evaluation.solution_outcome`),
and writes benchmarks/results/self_training.json and self_training.png (accuracy
per iteration, one line per method).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agents.artifacts import write_json_atomically  # noqa: E402
from agents.config import ConfigError  # noqa: E402
from agents.cli import add_set_argument  # noqa: E402
from agents.evaluation import auroc, evaluate_policy, grouped_auroc  # noqa: E402
from agents.logs import setup_logging  # noqa: E402
from agents.search.mcts_star import MCTSStar  # noqa: E402
from agents.search.tree import Tree  # noqa: E402
from agents.training.self_train import (  # noqa: E402
    METHODS,
    SelfTrainConfig,
    SelfTrainer,
    TokenMatching,
    load_config,
    mcts_config,
)
from agents.training.tree_targets import step_labels  # noqa: E402
from reasoning_gym import solvable, task_of  # noqa: E402

CONFIG = ROOT / "configs" / "self_train_bench.yaml"
RESULTS = ROOT / "benchmarks" / "results"
SAMPLING_BASELINES = ("rest_em", "self_rewarding")


def method_config(base: SelfTrainConfig, method: str, seed: int, runs: Path) -> SelfTrainConfig:
    """The config of one (method, seed) run: its own run directory, the seed's bootstrap."""
    models = dataclasses.replace(base.models, bootstrap=dataclasses.replace(base.models.bootstrap, seed=seed))
    matching = base.baseline_tokens
    if method in SAMPLING_BASELINES and matching.tokens_per_iteration is None:
        matching = TokenMatching(match_run=str(runs / f"rest_mcts_seed{seed}"))
    return dataclasses.replace(
        base, method=method, seed=seed, models=models, run_dir=str(runs / f"{method}_seed{seed}"), baseline_tokens=matching
    )


def heldout_steps(trainer: SelfTrainer, path: Path) -> list[dict[str, Any]]:
    """Labelled steps of held-out MCTS* trees grown with pi_0 and V_0 (cached in `path`)."""
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    settings = trainer.config.eval
    policy, value = trainer.load_policy(trainer.policy_dir(0)), trainer.load_value(trainer.value_dir(0))
    agent = MCTSStar(policy, value, mcts_config(settings.mcts, seed=trainer.config.seed, data_mode=True))
    problems = trainer.eval_problems()
    rows = []
    for result in agent.solve(problems, settings.budget, settings.limits, active=settings.batch_size):
        tree = result.tree
        rows += [
            {"text": tree.state[n].value_text, "parent": tree.state[tree.parent[n]].text, "correct": ok}
            for n, ok in node_labels(tree).items()
        ]
    write_json_atomically(path, rows)  # a killed run never leaves a half-written file that loads
    return rows


def node_labels(tree: Tree) -> dict[int, bool]:
    """Whether each node can still reach a correct answer: exact solvability on a task with a
    value oracle (Countdown: every node), else whether it lies on a path to a correct leaf of
    the tree (`step_labels`)."""
    if task_of(tree.state[0].problem).has_oracle:
        return {n: solvable(tree.state[n]) for n in range(1, len(tree))}
    return step_labels(tree)


def tree_aurocs(trainer: SelfTrainer, folder: str, steps: list[dict[str, Any]]) -> dict[str, float | None]:
    """Pooled and sibling AUROC of the PRM in `folder` on the held-out steps (None without both classes)."""
    labels = [int(row["correct"]) for row in steps]
    if not labels or all(labels) or not any(labels):
        return {"tree_auroc": None, "sibling_auroc": None}
    scores = trainer.load_value(folder).score_texts([row["text"] for row in steps])
    return {
        "tree_auroc": auroc(scores, labels),
        "sibling_auroc": grouped_auroc(scores, labels, [row["parent"] for row in steps]),
    }


OUTCOME_COLUMNS = ("right", "illegal move", "dead end at step 1", "later dead end", "no or wrong answer")


def outcome_shares(outcomes: dict[str, int]) -> dict[str, float]:
    """Greedy outcomes (`agents.evaluation.solution_outcome`) as fractions, in `OUTCOME_COLUMNS`."""
    total = max(1, sum(outcomes.values()))
    shares = dict.fromkeys(OUTCOME_COLUMNS, 0.0)
    for outcome, count in outcomes.items():
        if outcome == "right":
            column = "right"
        elif outcome.startswith("illegal move"):
            column = "illegal move"
        elif outcome == "dead end at step 1":
            column = "dead end at step 1"
        elif outcome.startswith("dead end"):
            column = "later dead end"
        else:
            column = "no or wrong answer"
        shares[column] += count / total
    return shares


def greedy_outcomes(trainer: SelfTrainer, record: dict[str, Any]) -> dict[str, int]:
    """The record's greedy outcomes; measured again for runs recorded before they were kept
    (the same greedy decoding, so the counts match the recorded accuracy at the same torch
    thread count)."""
    if "greedy_outcomes" in record["eval"]:
        return record["eval"]["greedy_outcomes"]
    settings = trainer.config.eval
    policy = trainer.load_policy(record["policy_dir"])
    return evaluate_policy(policy, trainer.eval_problems(), k=0, max_new_tokens=settings.greedy_max_new_tokens,
                           batch_problems=settings.batch_size, show_progress=False).greedy_outcomes  # fmt: skip


def run_seed(base: SelfTrainConfig, methods: list[str], seed: int, runs: Path, iterations: int) -> list[dict[str, Any]]:
    """Every method's iteration records for one seed, with the PRM's AUROCs and cumulative figures."""
    rows = []
    ordered = sorted(methods, key=lambda m: m != "rest_mcts")  # the baselines match its sampled tokens
    steps: list[dict[str, Any]] | None = None
    aurocs: dict[str, dict[str, float | None]] = {}  # by PRM folder: the baselines and every iteration 0 share V_0
    for method in ordered:
        trainer = SelfTrainer(method_config(base, method, seed, runs))
        records = trainer.run(iterations)
        if steps is None:
            runs.mkdir(parents=True, exist_ok=True)
            steps = heldout_steps(trainer, runs / f"heldout_steps_seed{seed}.json")
        tokens = seconds = 0.0
        for record in records:
            if record["value_dir"] not in aurocs:
                aurocs[record["value_dir"]] = tree_aurocs(trainer, record["value_dir"], steps)
            tokens += record["sampled_tokens"]
            seconds += record["wall_seconds"]
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "iteration": record["iteration"],
                    "greedy_accuracy": record["greedy_accuracy"],
                    "mcts_accuracy": record["mcts_accuracy"],
                    "cumulative_sampled_tokens": int(tokens),
                    "cumulative_wall_seconds": round(seconds, 1),
                    **aurocs[record["value_dir"]],
                    **outcome_shares(greedy_outcomes(trainer, record)),
                    "heldout_steps": len(steps),
                    "record": record,
                }
            )
    return rows


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and min, max) over seeds of each figure, per method and iteration."""
    keys = (
        "greedy_accuracy",
        "mcts_accuracy",
        "cumulative_sampled_tokens",
        "cumulative_wall_seconds",
        "tree_auroc",
        "sibling_auroc",
        *OUTCOME_COLUMNS,
    )
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["iteration"]), []).append(row)
    out = []
    for (method, iteration), group in sorted(groups.items(), key=lambda item: (METHODS.index(item[0][0]), item[0][1])):
        entry: dict[str, Any] = {"method": method, "iteration": iteration, "seeds": [row["seed"] for row in group]}
        for key in keys:
            values = [row[key] for row in group if row[key] is not None]
            entry[key] = sum(values) / len(values) if values else None
            entry[f"{key}_range"] = [min(values), max(values)] if values else None
        out.append(entry)
    return out


def goals(summary: list[dict[str, Any]], gain_goal: float) -> list[str]:
    """The issue's goals, each with the measured figures and whether it is met."""
    at = {(row["method"], row["iteration"]): row for row in summary}
    last = max(row["iteration"] for row in summary)
    lines = []
    start, end = at.get(("rest_mcts", 0)), at.get(("rest_mcts", last))
    if start and end and last > 0:
        gain = end["greedy_accuracy"] - start["greedy_accuracy"]
        lines.append(
            f"ReST-MCTS* iteration {last} greedy {end['greedy_accuracy']:.3f} vs iteration 0 {start['greedy_accuracy']:.3f}: "
            f"{gain * 100:+.1f} points (goal >= +{gain_goal * 100:g}): {'met' if gain >= gain_goal else 'NOT met'}"
        )
        for baseline in SAMPLING_BASELINES:
            other = at.get((baseline, last))
            if other:
                ahead = end["greedy_accuracy"] > other["greedy_accuracy"]
                lines.append(
                    f"ReST-MCTS* {end['greedy_accuracy']:.3f} vs {baseline} {other['greedy_accuracy']:.3f} at iteration {last} "
                    f"(sampled tokens {end['cumulative_sampled_tokens']:,.0f} vs {other['cumulative_sampled_tokens']:,.0f}): "
                    f"{'ahead' if ahead else 'NOT ahead'}"
                )
        for key, name in (("tree_auroc", "pooled"), ("sibling_auroc", "among siblings")):
            if start[key] is not None and end[key] is not None:
                better = end[key] > start[key]
                lines.append(
                    f"PRM AUROC on held-out trees ({name}): V_{last} {end[key]:.3f} vs V_0 {start[key]:.3f}: "
                    f"{'better' if better else 'NOT better'}"
                )
    return lines


def markdown_table(summary: list[dict[str, Any]]) -> str:
    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    lines = [
        "| method | iteration | greedy CoT | MCTS* | sampled tokens | wall s | PRM AUROC trees | PRM AUROC siblings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        lines.append(
            f"| {row['method']} | {row['iteration']} | {fmt(row['greedy_accuracy'], '.3f')} | "
            f"{fmt(row['mcts_accuracy'], '.3f')} | {fmt(row['cumulative_sampled_tokens'], ',.0f')} | "
            f"{fmt(row['cumulative_wall_seconds'], '.0f')} | {fmt(row['tree_auroc'], '.3f')} | "
            f"{fmt(row['sibling_auroc'], '.3f')} |"
        )
    return "\n".join(lines)


def outcomes_table(summary: list[dict[str, Any]]) -> str:
    """What became of the held-out greedy solutions (fractions, mean over seeds)."""
    lines = [
        "| method | iteration | " + " | ".join(OUTCOME_COLUMNS) + " |",
        "|---|---|" + "---|" * len(OUTCOME_COLUMNS),
    ]
    for row in summary:
        cells = " | ".join("n/a" if row.get(key) is None else f"{row[key]:.3f}" for key in OUTCOME_COLUMNS)
        lines.append(f"| {row['method']} | {row['iteration']} | {cells} |")
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, key, title in zip(axes, ("greedy_accuracy", "mcts_accuracy"), ("greedy CoT", "MCTS* (fixed budget)")):
        for method in dict.fromkeys(row["method"] for row in summary):
            rows = [row for row in summary if row["method"] == method]
            iterations = [row["iteration"] for row in rows]
            means = [row[key] for row in rows]
            low = [row[key] - row[f"{key}_range"][0] for row in rows]
            high = [row[f"{key}_range"][1] - row[key] for row in rows]
            axis.errorbar(iterations, means, yerr=[low, high], marker="o", capsize=3, label=method)
        axis.set_title(f"{title} accuracy (held-out)")
        axis.set_xlabel("self-training iteration")
        axis.set_xticks(sorted({row["iteration"] for row in summary}))
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (mean over seeds, bars: min-max)")
    axes[1].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=CONFIG, help="SelfTrainConfig YAML shared by every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "self_training_bench", help="run directories")
    parser.add_argument("--out", type=Path, default=RESULTS / "self_training.json")
    parser.add_argument("--gain-goal", type=float, default=0.10, help="greedy gain ReST-MCTS* must reach (0.15 on Countdown)")
    parser.add_argument("--no-progress", action="store_true")
    add_set_argument(parser, "weighted_nll.learning_rate=1e-3", " (recorded in the JSON)")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        base = load_config(args.config, args.set, show_progress=not args.no_progress)
    except (ConfigError, FileNotFoundError) as error:
        print(f"self_training: error: {error}", file=sys.stderr)
        return 2
    rows = []
    for seed in args.seeds:
        rows += run_seed(base, args.methods, seed, args.runs, args.iterations)
    summary = aggregate(rows)
    table, goal_lines = markdown_table(summary), goals(summary, args.gain_goal)
    print(table)
    print("\nGreedy outcomes on the held-out problems (fractions):")
    print(outcomes_table(summary))
    print("\n".join(goal_lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "set": args.set,
        "seeds": args.seeds,
        "iterations": args.iterations,
        "summary": summary,
        "goals": goal_lines,
        "runs": rows,
    }
    write_json_atomically(args.out, result)
    plot(summary, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
