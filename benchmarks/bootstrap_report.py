r"""Bootstrap report: pi_0 / V_0 quality and speed over several seeds.

For each seed: build (or reuse) pi_0 and V_0 with `rest-mcts bootstrap`'s config,
then measure on held-out test problems of the config's source greedy accuracy,
pass@k and maj@k per difficulty level, the PRM's quality, and policy generation
speed at batch 1 and 32 with the dynamic and the static KV cache. Word problems:
k = 8 (temperature 0.8), PRM AUROC on correct vs. corrupted next steps and MAE to
the quality-value targets. Planning tasks: k = 16 (temperature 1.0), PRM AUROC
against exact solvability on the states of pi_0's own samples (pooled, among
siblings, per depth), and on every first-move board of the training puzzles and of
the held-out ones, split by whether a training puzzle reaches the same board
(`agents.evaluation.evaluate_first_move_boards`: recall against computation).

    .venv/bin/python benchmarks/bootstrap_report.py --seeds 0 1 2
    .venv/bin/python benchmarks/bootstrap_report.py --config configs/countdown/bootstrap.yaml \
        --seeds 0 --problems 300 --out benchmarks/results/countdown/bootstrap.json

Prints a table and writes benchmarks/results/bootstrap.json (planning tasks: also a
reliability diagram of V_0 beside it, ``.png``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from agents.config import from_dict, load_yaml
from agents.artifacts import write_json_atomically
from agents.evaluation import (
    evaluate_first_move_boards,
    evaluate_policy,
    evaluate_value_against_oracle,
    evaluate_value_model,
)
from agents.logs import setup_logging
from agents.training.bootstrap import BootstrapConfig, bootstrap, cached_result, training_problems
from reasoning_gym import get_task, make_source
from reasoning_gym.sources.base import source_kwargs

RESULTS = Path(__file__).parent / "results"


def cell(value: float | None) -> str:
    """A metric for a table cell: three decimals, or n/a when it could not be measured."""
    return "n/a" if value is None else f"{value:.3f}"


def generation_speed(policy, batch: int, cache: str | None, new_tokens: int = 64, repeats: int = 2) -> float:
    """Tokens per second generating exactly `new_tokens` per row from short prompts."""
    prompt = "Problem: Tom has 3 apples. He buys 4 more. How many apples does Tom have?\nSolution:\n"
    inputs = policy.tokenizer([prompt] * batch, return_tensors="pt", padding=True).to(policy.model.device)
    extra = {"cache_implementation": cache} if cache else {}
    with torch.inference_mode():
        policy.model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False, **extra)  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            policy.model.generate(
                **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                pad_token_id=policy.tokenizer.pad_token_id, **extra,
            )
    return batch * new_tokens * repeats / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--problems", type=int, default=500, help="test problems per difficulty level")
    parser.add_argument("--levels", nargs="+", default=None, help="difficulty levels (default: the config's, medium, hard)")
    parser.add_argument("--config", help="YAML with BootstrapConfig fields")
    parser.add_argument("--out", default=str(RESULTS / "bootstrap.json"))
    args = parser.parse_args(argv)
    setup_logging()

    base = from_dict(BootstrapConfig, load_yaml(args.config), args.config) if args.config else BootstrapConfig()
    planning = get_task(base.task).has_oracle
    default_levels = [base.difficulty] if planning else [base.difficulty, "medium", "hard"]
    levels = args.levels or list(dict.fromkeys(default_levels))
    k, temperature = (16, 1.0) if planning else (8, 0.8)

    def test_problems(seed: int, level):
        kwargs = source_kwargs(base.source, split="test", size=args.problems, seed=1000 + seed, difficulty=level)
        return make_source(base.source, **kwargs).problems

    rows = []
    for seed in args.seeds:
        config = dataclasses.replace(base, seed=seed)
        cached = cached_result(config) is not None  # then this run's wall time is loading only
        started = time.time()
        result = bootstrap(config)
        wall = time.time() - started
        policy, value = result.load()
        row = {
            "seed": seed,
            "policy_parameters": result.policy_manifest["parameters"],
            "value_parameters": result.value_manifest["parameters"],
            "policy_build_seconds": result.policy_manifest["build_seconds"],
            "value_build_seconds": result.value_manifest["build_seconds"],
            "bootstrap_wall_seconds_this_run": round(wall, 1),
            "reused_cached_models": cached,
            "levels": {},
        }
        for level in levels:
            report = evaluate_policy(policy, test_problems(seed, level), k=k, temperature=temperature, seed=seed,
                                     max_new_tokens=160 if planning else 320, show_progress=False)  # fmt: skip
            row["levels"][level] = {"greedy": report.greedy, "pass@k": report.pass_at_k, "maj@k": report.maj_at_k, "k": k,
                                    "greedy_outcomes": report.greedy_outcomes}  # fmt: skip
        if planning:
            quality = evaluate_value_against_oracle(value, policy, test_problems(seed, config.difficulty)[:150],
                                                    seed=seed, show_progress=False)  # fmt: skip
            row.update(prm_auroc=quality.auroc, prm_sibling_auroc=quality.sibling_auroc,
                       prm_auroc_by_depth=quality.by_depth, prm_calibration=quality.calibration,
                       prm_states=quality.states, prm_mae=None)  # fmt: skip
            boards = evaluate_first_move_boards(value, training_problems(config).problems,
                                                test_problems(seed, config.difficulty), seed=seed)  # fmt: skip
            row["first_move_boards"] = dataclasses.asdict(boards)
        else:
            quality = evaluate_value_model(value, test_problems(seed, config.difficulty), seed=seed)
            row["prm_auroc"], row["prm_mae"] = quality.auroc, quality.mae
        row["tokens_per_second"] = {
            f"batch{batch}_{cache or 'dynamic'}": round(generation_speed(policy, batch, cache))
            for batch in (1, 32)
            for cache in (None, "static")
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    second = "sibling" if planning else "MAE"
    print(f"\n{'seed':>4} {'level':>8} {'greedy':>7} {f'pass@{k}':>7} {f'maj@{k}':>7}   PRM AUROC {second:>7}   build s (pi/V)")
    for row in rows:
        extra = row["prm_sibling_auroc"] if planning else row["prm_mae"]
        for level, m in row["levels"].items():
            print(
                f"{row['seed']:>4} {level:>8} {m['greedy']:>7.3f} {m['pass@k']:>7.3f} {m['maj@k']:>7.3f}"
                f"   {cell(row['prm_auroc']):>9} {cell(extra):>7}"
                f"   {row['policy_build_seconds']}/{row['value_build_seconds']}"
            )
    print("\ntokens/s:", {k: v for k, v in rows[-1]["tokens_per_second"].items()})
    if planning:
        print("\nfirst-move boards, V_0 AUROC: training puzzles / held-out (seen in training, unseen)")
        for row in rows:
            b = row["first_move_boards"]
            cells = [cell(b[name]) for name in ("train", "held_out", "seen", "unseen")]
            print(f"{row['seed']:>4}  {cells[0]} / {cells[1]} ({cells[2]} on {b['states']['seen']}, "
                  f"{cells[3]} on {b['states']['unseen']})")  # fmt: skip
    out = Path(args.out)
    write_json_atomically(out, {"config": dataclasses.asdict(base), "problems": args.problems, "rows": rows})
    print(f"wrote {out}")
    if planning:
        plot_calibration(rows, out.with_suffix(".png"))
        print(f"wrote {out.with_suffix('.png')}")
    return 0


def plot_calibration(rows: list[dict], path: Path) -> None:
    """A reliability diagram of each seed's V_0: mean value against the fraction of
    states that can still reach the target, per value bin (marker area ~ states)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="tab:gray", linestyle="--", label="calibrated")
    for row in rows:
        bins = [b for b in row.get("prm_calibration") or () if b["count"]]
        if not bins:
            continue
        (line,) = ax.plot([b["mean_value"] for b in bins], [b["solvable"] for b in bins], marker="o", markersize=3,
                          label=f"seed {row['seed']} (AUROC {cell(row['prm_auroc'])}, {row['prm_states']} states)")  # fmt: skip
        ax.scatter([b["mean_value"] for b in bins], [b["solvable"] for b in bins], color=line.get_color(),
                   s=[20 + 200 * b["count"] / row["prm_states"] for b in bins], alpha=0.3)  # fmt: skip
    ax.set_xlabel("V_0 value (bin mean)")
    ax.set_ylabel("fraction of states that can still reach the target")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("V_0 reliability on pi_0's own states")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
