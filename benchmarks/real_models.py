"""Real models on MATH500: MCTS* against Best-of-N, beam search and self-consistency at an equal budget.

Policy Qwen2.5-Math-1.5B-Instruct behind vLLM and a published PRM in this process
(``configs/real/``). Needs a CUDA GPU and a running vLLM server; without CUDA it
exits at once with a message (nothing in ``make test`` runs it).

    # 1. data/math500.jsonl and the vLLM server: see configs/real/compare_qwen_math_1.5b_prm_7b.yaml
    .venv/bin/python benchmarks/real_models.py --problems 50            # Qwen2.5-Math-PRM-7B (40 GB+ GPU)
    .venv/bin/python benchmarks/real_models.py --small --problems 50    # Skywork PRM 1.5B (24 GB GPU)

Runs `agents.compare` on the first ``--problems`` problems of the config; prints
the Markdown table and writes the JSON with the two plots beside it
(``search_vs_budget.png``, ``search_vs_budget_flops.png``) under
``benchmarks/results/real_models/<config>/``.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agents.compare import load_config, run_from_config  # noqa: E402
from agents.config import ConfigError  # noqa: E402
from agents.logs import setup_logging  # noqa: E402

CONFIG = ROOT / "configs" / "real" / "compare_qwen_math_1.5b_prm_7b.yaml"
SMALL_CONFIG = ROOT / "configs" / "real" / "compare_qwen_math_1.5b_skywork_1.5b.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "real_models"


def server_problem(policy: str | None) -> str | None:
    """Why the policy preset's OpenAI-compatible server cannot be used, or None (also for local policies)."""
    if policy is None or Path(policy).suffix.lower() not in (".yaml", ".yml"):
        return None
    from agents.models.presets import read_preset

    spec = read_preset(policy)
    if spec.backend != "openai":
        return None
    url = str(spec.policy.get("base_url", "http://127.0.0.1:8000/v1")).rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=5):
            return None
    except (urllib.error.URLError, OSError) as error:
        return f"the policy server at {url} does not answer ({error}); start it as {policy} describes"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help=f"CompareConfig YAML (default: {CONFIG.relative_to(ROOT)})")
    parser.add_argument("--small", action="store_true", help=f"the 24 GB pair: {SMALL_CONFIG.relative_to(ROOT)}")
    parser.add_argument("--problems", type=int, default=50, help="the first N problems of the file (default 50)")
    parser.add_argument("--out", type=Path, help="JSON output; plots go beside it "
                        "(default: benchmarks/results/real_models/<config>/search_vs_budget.json)")  # fmt: skip
    parser.add_argument("--policy", help="override models.policy (preset YAML, HF folder or Hub id)")
    parser.add_argument("--value", help="override models.value (preset YAML configs/prm/*.yaml or PRM folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    setup_logging()

    import torch

    if not torch.cuda.is_available():
        print("real_models: no CUDA device: this benchmark runs a 1.5B policy and a 1.5B-7B PRM on a GPU "
              "(see configs/real/); nothing was run", file=sys.stderr)  # fmt: skip
        return 2
    if args.problems < 1:
        print(f"real_models: error: --problems must be >= 1, got {args.problems}", file=sys.stderr)
        return 2
    config_path = args.config or (SMALL_CONFIG if args.small else CONFIG)
    out = args.out or RESULTS / config_path.stem.removeprefix("compare_") / "search_vs_budget.json"
    try:
        config = load_config(config_path)
        models = replace(config.models, policy=args.policy or config.models.policy,
                         value=args.value or config.models.value)  # fmt: skip
        config = replace(config, models=models, problems=replace(config.problems, size=args.problems))
        problem = server_problem(config.models.policy)
        if problem is not None:
            print(f"real_models: error: {problem}", file=sys.stderr)
            return 2
        run_from_config(config, out=out, progress=not args.no_progress)
    except (ConfigError, FileNotFoundError) as error:
        print(f"real_models: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
