"""Search at an equal budget: accuracy of CoT, self-consistency, Best-of-N, beam search and
MCTS* against policy completion tokens and total model FLOPs per problem.

Greedy CoT runs first; its mean completion tokens per problem is the budget unit.
Every other agent runs at each multiple of it (``budget_multipliers``) for each seed.
Same code as ``rest-mcts compare`` (`agents.compare`).

    .venv/bin/python benchmarks/search_vs_budget.py                      # configs/compare.yaml
    .venv/bin/python benchmarks/search_vs_budget.py --smoke              # configs/compare_smoke.yaml

Prints a Markdown table and writes the JSON (config, CoT cost, per-seed runs with
per-problem correctness, aggregates with confidence intervals) plus two plots next to
it: ``search_vs_budget.png`` (accuracy vs completion tokens per problem, log2 x) and
``search_vs_budget_flops.png`` (accuracy vs FLOPs per problem, PRM included).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agents.compare import load_config, run_from_config  # noqa: E402
from agents.config import ConfigError  # noqa: E402
from agents.logs import setup_logging  # noqa: E402

CONFIG = ROOT / "configs" / "compare.yaml"
SMOKE_CONFIG = ROOT / "configs" / "compare_smoke.yaml"
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help=f"CompareConfig YAML (default: {CONFIG.relative_to(ROOT)})")
    parser.add_argument("--out", type=Path, help="JSON output; plots go beside it "
                        "(default: benchmarks/results/search_vs_budget.json, or ..._smoke/ with --smoke)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="quick check: configs/compare_smoke.yaml")
    parser.add_argument("--bootstrap", help="override models.bootstrap (a BootstrapConfig YAML: its pi_0 and V_0)")
    parser.add_argument("--policy", help="override models.policy (HF folder, Hub id, .gguf or preset YAML)")
    parser.add_argument("--value", help="override models.value (PRM folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    setup_logging()
    config_path = args.config or (SMOKE_CONFIG if args.smoke else CONFIG)
    out = args.out or (RESULTS / "smoke" / "search_vs_budget.json" if args.smoke else RESULTS / "search_vs_budget.json")
    try:
        config = load_config(config_path)
        if args.bootstrap or args.policy or args.value:
            models = replace(config.models, bootstrap=args.bootstrap or config.models.bootstrap,
                             policy=args.policy or config.models.policy,
                             value=args.value or config.models.value)  # fmt: skip
            config = replace(config, models=models)
        run_from_config(config, out=out, progress=not args.no_progress)
    except (ConfigError, FileNotFoundError) as error:
        print(f"search_vs_budget: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
