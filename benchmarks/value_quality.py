"""How good must a value model be for tree search to win? MCTS* accuracy against value quality.

On a planning task (exact state values), MCTS* runs at one budget (default 8x the
CoT cost) with value models of known quality: the exact oracle with seeded
Gaussian noise of growing standard deviation (`NoisyOracleValue`), and the
learned V_0. Each value model's quality is measured as its AUROC against exact
solvability on the states of pi_0's own samples of the same problems (pooled and
among siblings, the choice search makes). Self-Consistency at the same budget is
run once as the bar to beat.

    .venv/bin/python benchmarks/value_quality.py                 # configs/countdown/compare.yaml

Prints a table and writes benchmarks/results/countdown/value_quality.json and a
PNG of MCTS* accuracy against sibling AUROC.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agents.artifacts import write_json_atomically  # noqa: E402
from agents.compare import load_config, load_models, run_comparison  # noqa: E402
from agents.evaluation import evaluate_value_against_oracle  # noqa: E402
from agents.models.oracle import NoisyOracleValue  # noqa: E402

CONFIG = ROOT / "configs" / "countdown" / "compare.yaml"
OUT = ROOT / "benchmarks" / "results" / "countdown" / "value_quality.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=CONFIG, help="CompareConfig YAML (problems, models, agents)")
    parser.add_argument("--multiplier", type=float, default=8.0, help="budget, in multiples of the CoT cost")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5],
                        help="standard deviations of the noisy oracle")  # fmt: skip
    parser.add_argument("--quality-problems", type=int, default=100, help="problems whose pi_0 states measure AUROC")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    progress = not args.no_progress
    models = load_models(config.models, need_value=True, progress=progress)
    problems = list(config.problems.load(models.difficulty))
    base = replace(config, budget_multipliers=(args.multiplier,), references=())
    candidates = [(f"noisy oracle sd {noise:g}", NoisyOracleValue(noise, seed=0)) for noise in args.noise]
    candidates.append(("V_0 (learned)", models.value))
    rows = []
    sc = run_comparison(replace(base, agents={"cot": base.agents["cot"], "self_consistency": base.agents["self_consistency"]}),
                        models.policy, None, progress, problems=problems)  # fmt: skip
    sc_row = next(row for row in sc["aggregates"] if row["agent"] == "self_consistency")
    for name, value in candidates:
        quality = evaluate_value_against_oracle(value, models.policy, problems[: args.quality_problems],
                                                seed=0, show_progress=progress)  # fmt: skip
        result = run_comparison(replace(base, agents={"cot": base.agents["cot"], "mcts_star": base.agents["mcts_star"]}),
                                models.policy, value, progress, problems=problems)  # fmt: skip
        mcts = next(row for row in result["aggregates"] if row["agent"] == "mcts_star")
        rows.append({"value": name, "auroc": quality.auroc, "sibling_auroc": quality.sibling_auroc,
                     "auroc_by_depth": quality.by_depth, "mcts_accuracy": mcts["accuracy"],
                     "mcts_ci": [mcts["ci_low"], mcts["ci_high"]], "completion_tokens": mcts["completion_tokens"]})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nMCTS* at {args.multiplier:g}x the CoT cost ({len(problems)} problems x {len(config.seeds)} seeds); "
          f"Self-Consistency at the same budget: {sc_row['accuracy']:.3f} [{sc_row['ci_low']:.3f}, {sc_row['ci_high']:.3f}]\n")  # fmt: skip
    print("| value model | AUROC vs solvable | sibling AUROC | MCTS* accuracy | 95% CI |")
    print("|---|---|---|---|---|")
    for row in rows:
        pooled, sibling = (("n/a" if v is None else f"{v:.3f}") for v in (row["auroc"], row["sibling_auroc"]))
        print(f"| {row['value']} | {pooled} | {sibling} | {row['mcts_accuracy']:.3f} "
              f"| [{row['mcts_ci'][0]:.3f}, {row['mcts_ci'][1]:.3f}] |")  # fmt: skip
    data = {"config": str(args.config), "multiplier": args.multiplier, "problems": len(problems), "seeds": list(config.seeds),
            "self_consistency": {k: sc_row[k] for k in ("accuracy", "ci_low", "ci_high", "completion_tokens")}, "rows": rows}  # fmt: skip
    write_json_atomically(args.out, data)
    plot(data, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in data["rows"]:
        x = row["sibling_auroc"] if row["sibling_auroc"] is not None else row["auroc"]
        if x is None:
            continue
        low, high = row["mcts_ci"]
        learned = "learned" in row["value"]
        ax.errorbar([x], [row["mcts_accuracy"]], yerr=[[row["mcts_accuracy"] - low], [high - row["mcts_accuracy"]]],
                    marker="*" if learned else "o", markersize=10 if learned else 6, capsize=3,
                    color="tab:red" if learned else "tab:blue", label=row["value"] if learned else None)  # fmt: skip
    sc = data["self_consistency"]
    ax.axhspan(sc["ci_low"], sc["ci_high"], color="tab:gray", alpha=0.2)
    ax.axhline(sc["accuracy"], color="tab:gray", linestyle="--", label="Self-Consistency (same budget)")
    ax.set_xlabel("value model AUROC among siblings (vs exact solvability)")
    ax.set_ylabel(f"MCTS* accuracy at {data['multiplier']:g}x")
    ax.set_title("How good must the value model be?")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
