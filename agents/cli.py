"""The ``rest-mcts`` command line: bootstrap, evaluate, solve, compare, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agents.config import ConfigError, from_dict, load_yaml


def _bootstrap_config(path: str | None):
    from agents.training.bootstrap import BootstrapConfig

    if path is None:
        return BootstrapConfig()
    return from_dict(BootstrapConfig, load_yaml(path), where=str(path))


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Build (or reuse) pi_0 and V_0 and print where they are."""
    from agents.training.bootstrap import bootstrap

    config = _bootstrap_config(args.config)
    result = bootstrap(config, home=Path(args.home) if args.home else None)
    for name, folder, manifest in (
        ("policy pi_0", result.policy_dir, result.policy_manifest),
        ("PRM V_0", result.value_dir, result.value_manifest),
    ):
        print(f"{name}: {folder}  ({manifest['parameters']:,} parameters, built in {manifest['build_seconds']} s)")
    if args.evaluate:
        return _print_evaluation(result, config, args.problems)
    return 0


def _print_evaluation(result, config, problems: int) -> int:
    from agents.evaluation import evaluate_policy, evaluate_value_model
    from reasoning_gym import make_source

    policy, value = result.load()
    test = make_source("synthetic", split="test", size=problems, seed=config.seed, difficulty=config.difficulty)
    report = evaluate_policy(policy, test.problems, k=8)
    quality = evaluate_value_model(value, test.problems, seed=config.seed)
    print(
        json.dumps(
            {
                "difficulty": config.difficulty,
                "problems": report.problems,
                "greedy": report.greedy,
                "pass@8": report.pass_at_k,
                "maj@8": report.maj_at_k,
                "prm_auroc": quality.auroc,
                "prm_mae": quality.mae,
            },
            indent=2,
        )
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the offline default: bootstrap, then evaluate the models."""
    from agents.training.bootstrap import bootstrap

    config = _bootstrap_config(args.config)
    result = bootstrap(config)
    return _print_evaluation(result, config, args.problems)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rest-mcts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    boot = commands.add_parser("bootstrap", help="train (or reuse) the offline policy pi_0 and PRM V_0")
    boot.add_argument("--config", help="YAML file with BootstrapConfig fields (default: built-in defaults)")
    boot.add_argument("--home", help="cache folder (default: $REST_MCTS_HOME or ~/.cache/rest-mcts)")
    boot.add_argument("--evaluate", action="store_true", help="also report greedy, pass@8, maj@8 and PRM AUROC")
    boot.add_argument("--problems", type=int, default=200, help="held-out test problems for --evaluate")
    boot.set_defaults(handler=cmd_bootstrap)

    demo = commands.add_parser("demo", help="run the main job on the offline default")
    demo.add_argument("--config", help="YAML file with BootstrapConfig fields")
    demo.add_argument("--problems", type=int, default=100, help="held-out test problems to evaluate")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, FileNotFoundError) as error:
        print(f"rest-mcts: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
