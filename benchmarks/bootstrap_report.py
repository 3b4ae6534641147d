"""Bootstrap report: pi_0 / V_0 quality and speed over several seeds.

For each seed: build (or reuse) pi_0 and V_0 with `rest-mcts bootstrap`'s config,
then measure on held-out synthetic test problems greedy accuracy, pass@8 and maj@8
per difficulty level, the PRM's AUROC (correct vs. corrupted next steps) and MAE
to the quality-value targets, and policy generation speed at batch 1 and 32 with
the dynamic and the static KV cache.

    .venv/bin/python benchmarks/bootstrap_report.py --seeds 0 1 2

Prints a table and writes benchmarks/results/bootstrap.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from agents.config import from_dict, load_yaml
from agents.evaluation import evaluate_policy, evaluate_value_model
from agents.training.bootstrap import BootstrapConfig, bootstrap, cached_result
from reasoning_gym import make_source

RESULTS = Path(__file__).parent / "results"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--problems", type=int, default=500, help="test problems per difficulty level")
    parser.add_argument("--levels", nargs="+", default=None, help="difficulty levels (default: the config's, medium, hard)")
    parser.add_argument("--config", help="YAML with BootstrapConfig fields")
    parser.add_argument("--out", default=str(RESULTS / "bootstrap.json"))
    args = parser.parse_args()

    base = from_dict(BootstrapConfig, load_yaml(args.config), args.config) if args.config else BootstrapConfig()
    levels = args.levels or list(dict.fromkeys([base.difficulty, "medium", "hard"]))
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
            test = make_source("synthetic", split="test", size=args.problems, seed=1000 + seed, difficulty=level)
            report = evaluate_policy(policy, test.problems, k=8, seed=seed, show_progress=False)
            row["levels"][level] = {"greedy": report.greedy, "pass@8": report.pass_at_k, "maj@8": report.maj_at_k}
        test = make_source("synthetic", split="test", size=args.problems, seed=1000 + seed, difficulty=config.difficulty)
        quality = evaluate_value_model(value, test.problems, seed=seed)
        row["prm_auroc"], row["prm_mae"] = quality.auroc, quality.mae
        row["tokens_per_second"] = {
            f"batch{batch}_{cache or 'dynamic'}": round(generation_speed(policy, batch, cache))
            for batch in (1, 32)
            for cache in (None, "static")
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{'seed':>4} {'level':>8} {'greedy':>7} {'pass@8':>7} {'maj@8':>7}   PRM AUROC   MAE   build s (pi/V)")
    for row in rows:
        for level, m in row["levels"].items():
            print(
                f"{row['seed']:>4} {level:>8} {m['greedy']:>7.3f} {m['pass@8']:>7.3f} {m['maj@8']:>7.3f}"
                f"   {row['prm_auroc']:>9.3f} {row['prm_mae']:>5.3f}   {row['policy_build_seconds']}/{row['value_build_seconds']}"
            )
    print("\ntokens/s:", {k: v for k, v in rows[-1]["tokens_per_second"].items()})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": dataclasses.asdict(base), "problems": args.problems, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
