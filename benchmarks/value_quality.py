r"""How good must a value model be for tree search to win? MCTS* accuracy against value quality.

On a planning task (exact state values), MCTS* runs at one budget (default 8x the
CoT cost) with value models of known quality: the exact oracle with seeded
Gaussian noise of growing standard deviation (`NoisyOracleValue`), and the
learned V_0. Each value model's quality is measured as its AUROC against exact
solvability on the states of pi_0's own samples of the same problems (pooled and
among siblings, the choice search makes). Self-Consistency and Best-of-N (V_0) at
the same budget are run once as the bars to beat. MCTS* searches as the config
says; ``--widen-by-value`` turns value-based widening (`MCTSStarConfig.widen_by_value`)
on where the config has it off (the headline config has it on).

    .venv/bin/python benchmarks/value_quality.py --noise 0 0.1 0.2 0.3 0.4 0.5   # configs/countdown/compare.yaml
    .venv/bin/python benchmarks/value_quality.py --config configs/countdown/compare_basic_balanced.yaml \
        --widen-by-value --noise 0.3 --out benchmarks/results/countdown/value_quality_basic_balanced_widen.json

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
from agents.logs import setup_logging  # noqa: E402
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
    parser.add_argument("--widen-by-value", action="store_true", help="MCTS* with value-based widening")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    setup_logging()

    config = load_config(args.config)
    progress = not args.no_progress
    models = load_models(config.models, need_value=True, progress=progress)
    problems = list(config.problems.load(models.difficulty))
    base = replace(config, budget_multipliers=(args.multiplier,), references=())
    candidates = [(f"noisy oracle sd {noise:g}", NoisyOracleValue(noise, seed=0)) for noise in args.noise]
    candidates.append(("V_0 (learned)", models.value))
    mcts_agent = dict(base.agents["mcts_star"])
    mcts_agent["widen_by_value"] = args.widen_by_value or bool(mcts_agent.get("widen_by_value", False))
    rows = []
    bar_agents = {name: base.agents[name] for name in ("cot", "self_consistency", "best_of_n")}
    bars = run_comparison(replace(base, agents=bar_agents), models.policy, models.value, progress, problems=problems)
    sc_row, bon_row = (next(row for row in bars["aggregates"] if row["agent"] == name) for name in bar_agents if name != "cot")
    for name, value in candidates:
        quality = evaluate_value_against_oracle(value, models.policy, problems[: args.quality_problems],
                                                seed=0, show_progress=progress)  # fmt: skip
        result = run_comparison(replace(base, agents={"cot": base.agents["cot"], "mcts_star": mcts_agent}),
                                models.policy, value, progress, problems=problems)  # fmt: skip
        mcts = next(row for row in result["aggregates"] if row["agent"] == "mcts_star")
        rows.append({"value": name, "auroc": quality.auroc, "sibling_auroc": quality.sibling_auroc,
                     "auroc_by_depth": quality.by_depth, "mcts_accuracy": mcts["accuracy"],
                     "mcts_ci": [mcts["ci_low"], mcts["ci_high"]], "completion_tokens": mcts["completion_tokens"]})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nMCTS*{' (widen_by_value)' if mcts_agent['widen_by_value'] else ''} at {args.multiplier:g}x the CoT cost "
          f"({len(problems)} problems x {len(config.seeds)} seeds); at the same budget Self-Consistency "
          f"{sc_row['accuracy']:.3f} [{sc_row['ci_low']:.3f}, {sc_row['ci_high']:.3f}], Best-of-N (V_0) "
          f"{bon_row['accuracy']:.3f} [{bon_row['ci_low']:.3f}, {bon_row['ci_high']:.3f}]\n")  # fmt: skip
    print("| value model | AUROC vs solvable | sibling AUROC | MCTS* accuracy | 95% CI |")
    print("|---|---|---|---|---|")
    for row in rows:
        pooled, sibling = (("n/a" if v is None else f"{v:.3f}") for v in (row["auroc"], row["sibling_auroc"]))
        print(f"| {row['value']} | {pooled} | {sibling} | {row['mcts_accuracy']:.3f} "
              f"| [{row['mcts_ci'][0]:.3f}, {row['mcts_ci'][1]:.3f}] |")  # fmt: skip
    bar = ("accuracy", "ci_low", "ci_high", "completion_tokens")
    data = {"config": str(args.config), "multiplier": args.multiplier, "problems": len(problems), "seeds": list(config.seeds),
            "widen_by_value": mcts_agent["widen_by_value"], "self_consistency": {k: sc_row[k] for k in bar},
            "best_of_n": {k: bon_row[k] for k in bar}, "rows": rows}  # fmt: skip
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
    bar_styles = (("self_consistency", "Self-Consistency", "tab:gray"), ("best_of_n", "Best-of-N (V_0)", "tab:green"))
    for key, label, color in bar_styles:
        if key in data:
            bar = data[key]
            ax.axhspan(bar["ci_low"], bar["ci_high"], color=color, alpha=0.15)
            ax.axhline(bar["accuracy"], color=color, linestyle="--", label=f"{label} (same budget)")
    ax.set_xlabel("value model AUROC among siblings (vs exact solvability)")
    ax.set_ylabel(f"MCTS* accuracy at {data['multiplier']:g}x")
    ax.set_title("How good must the value model be?" + (" (widen_by_value)" if data.get("widen_by_value") else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
