"""The ``rest-mcts`` command line: bootstrap, evaluate, solve, compare, demo, self-train."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

from agents.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict

logger = logging.getLogger(__name__)


def _bootstrap_config(path: str | None):
    from agents.training.bootstrap import BootstrapConfig

    if path is None:
        return BootstrapConfig()
    return from_dict(BootstrapConfig, load_yaml(path), where=str(path))


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Build (or reuse) pi_0 and V_0 and print where they are."""
    from agents.artifacts import rest_mcts_home
    from agents.integrations.wandb_logging import log_bootstrap, start_run
    from agents.training.bootstrap import bootstrap

    config = _bootstrap_config(args.config)
    home = Path(args.home) if args.home else None
    with start_run("bootstrap", to_dict(config), home or rest_mcts_home(), not args.no_wandb, args.verbose) as tracker:
        result = bootstrap(config, home=home)
        log_bootstrap(tracker, result)
    for name, folder, manifest in (
        ("policy pi_0", result.policy_dir, result.policy_manifest),
        ("PRM V_0", result.value_dir, result.value_manifest),
    ):
        print(f"{name}: {folder}  ({manifest['parameters']:,} parameters, built in {manifest['build_seconds']} s)")
    if args.evaluate:
        return _print_evaluation(result, config, args.problems)
    return 0


def _print_evaluation(result, config, problems: int) -> int:
    """Held-out quality of pi_0 and V_0: greedy, pass@k, maj@k, and the PRM's AUROC
    (word problems: against corrupted steps; planning tasks: against exact
    solvability on pi_0's own states, pooled, among siblings and per depth)."""
    from agents.evaluation import evaluate_policy, evaluate_value_against_oracle, evaluate_value_model
    from reasoning_gym import get_task, make_source
    from reasoning_gym.sources.base import source_kwargs

    logger.info("evaluating pi_0 and V_0 on %d held-out %s problems", problems, config.source)
    policy, value = result.load()
    kwargs = source_kwargs(config.source, split="test", size=problems, seed=config.seed, difficulty=config.difficulty)
    test = make_source(config.source, **kwargs)
    planning = get_task(test[0].task).has_oracle
    k = 16 if planning else 8
    report = evaluate_policy(policy, test.problems, k=k, temperature=1.0 if planning else 0.8)
    summary = {
        "source": config.source,
        "difficulty": config.difficulty,
        "problems": report.problems,
        "greedy": report.greedy,
        f"pass@{k}": report.pass_at_k,
        f"maj@{k}": report.maj_at_k,
    }
    if planning:
        quality = evaluate_value_against_oracle(value, policy, test.problems, seed=config.seed)
        summary.update(prm_auroc_vs_solvable=quality.auroc, prm_sibling_auroc=quality.sibling_auroc,
                       prm_auroc_by_depth=quality.by_depth, states=quality.states)  # fmt: skip
    else:
        quality = evaluate_value_model(value, test.problems, seed=config.seed)
        summary.update(prm_auroc=quality.auroc, prm_mae=quality.mae)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the offline default: bootstrap pi_0 and V_0 (cached), report their
    quality, compare the search agents at equal budgets and print the table, then run one
    short ReST-MCTS* self-training iteration and print the accuracy before and after."""
    from dataclasses import replace

    from agents.compare import load_config, run_from_config
    from agents.training.bootstrap import bootstrap
    from agents.training.self_train import SelfTrainer, format_summary
    from agents.training.self_train import load_config as load_self_train_config

    config = _bootstrap_config(args.config)
    compare_config = load_config(args.compare_config)  # fail on a bad config before any work
    if args.config and compare_config.models.bootstrap is None:  # compare the models this demo builds
        compare_config = replace(compare_config, models=replace(compare_config.models, bootstrap=args.config))
    self_train_config = load_self_train_config(args.self_train_config) if args.self_train_config else None
    result = bootstrap(config)
    _print_evaluation(result, config, args.problems)
    run_from_config(compare_config, out=args.out, progress=True)
    if self_train_config is None:
        return 0
    # One run folder per bootstrap and self-training config: a run directory is bound to the
    # models and the config it started from, so a rerun resumes and a changed one starts afresh.
    fingerprint = json.dumps([to_dict(self_train_config), result.value_dir.name], sort_keys=True, default=str)
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:10]
    run_dir = Path(self_train_config.run_dir) / f"{result.policy_dir.name}-{digest}"
    models = replace(self_train_config.models, bootstrap=config)
    records = SelfTrainer(replace(self_train_config, run_dir=str(run_dir), models=models)).run()
    print("\nSelf-training (ReST-MCTS*), held-out accuracy before (iteration 0) and after:")
    print(format_summary(records))
    print(f"records: {run_dir / 'iteration_<i>' / 'record.json'}")
    return 0


# --- solve -----------------------------------------------------------------------------------

AGENT_NAMES = ("mcts_star", "beam", "best_of_n", "self_consistency", "cot")


def _solve_problem(args: argparse.Namespace, default_difficulty: str):
    """The problem named on the command line: free text, or ``--source ... --index N``."""
    from reasoning_gym import Problem, make_source
    from reasoning_gym.sources.base import required_parameters, source_kwargs

    if (args.question is None) == (args.source is None):
        raise ConfigError("give either a question or --source (with --index), not both or neither")
    if args.question is not None:
        if not args.question.strip():
            raise ConfigError("the question is empty")
        return Problem("cli", args.question, args.answer or "unknown"), args.answer is not None
    if args.index < 0:
        raise ConfigError(f"--index must be >= 0, got {args.index}")
    try:
        kwargs = source_kwargs(args.source, size=args.index + 1, seed=args.problem_seed,
                               difficulty=args.difficulty or default_difficulty, path=args.path)  # fmt: skip
        if args.path is None and required_parameters(args.source) & {"path"}:
            raise ConfigError(f"--source {args.source} needs --path FILE")
        # Generated problems are held out (test split) unless told otherwise; files keep every record.
        kwargs["split"] = args.split or ("test" if args.path is None else None)
        problems = make_source(args.source, **kwargs)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"--source {args.source}: {error}") from None
    if args.index >= len(problems):
        raise ConfigError(f"--index {args.index} is out of range: {problems.name} has {len(problems)} problems")
    problem = problems[args.index]
    if args.answer is not None:
        from dataclasses import replace

        problem = replace(problem, answer=args.answer)
    return problem, True


def _agent_options(args: argparse.Namespace) -> dict:
    from agents.compare import agent_options
    from agents.config import to_dict

    data = load_yaml(args.config) if args.config else {}
    try:
        options = agent_options(args.agent, data)
    except ConfigError as error:
        raise ConfigError(f"{args.config}: {error}" if args.config else str(error)) from None
    options = to_dict(options)
    if args.seed is not None and "seed" in options:
        options["seed"] = args.seed
    return options


def cmd_solve(args: argparse.Namespace) -> int:
    """Solve one problem with a search agent; print the answer, the trace, usage and the tree."""
    from agents.compare import ModelsConfig, load_models
    from agents.search import Budget, make_agent
    from agents.search.registry import NEEDS_VALUE
    from reasoning_gym import EpisodeLimits, grade

    for flag, given in (("--tree-json", args.tree_json), ("--tree", args.tree)):
        if given and args.agent != "mcts_star":
            raise ConfigError(f"{flag} needs a tree search (--agent mcts_star), not {args.agent}")
    if args.budget_tokens is not None and args.budget_tokens < 1:
        raise ConfigError(f"--budget-tokens must be >= 1, got {args.budget_tokens}")
    options = _agent_options(args)  # check the config before loading models
    limits = EpisodeLimits(max_steps=args.max_steps)
    problem, graded = _solve_problem(args, _bootstrap_config(args.bootstrap_config).difficulty)
    models_config = ModelsConfig(args.bootstrap_config, args.policy, args.value, args.device)
    models = load_models(models_config, need_value=args.agent in NEEDS_VALUE, progress=True)
    agent = make_agent(args.agent, models.policy, models.value, options)
    budget = Budget(completion_tokens=args.budget_tokens)
    result = agent.solve([problem], budget, limits)[0]

    print(f"problem: {problem.id}")
    print(f"question: {problem.question}")
    cap = "no cap" if args.budget_tokens is None else f"{args.budget_tokens} completion tokens"
    print(f"agent: {args.agent}  budget: {cap}  stop: {result.stop_reason}")
    verdict = ""
    if graded:
        verdict = f"  (oracle {problem.answer}: {'correct' if grade(result.trace) else 'wrong'})"
    print(f"answer: {result.answer}{verdict}")
    print("trace:")
    from reasoning_gym import format_step

    for number, step in enumerate(result.trace.steps, start=1):
        print(f"  {format_step(number, step)}")
    if not result.trace.steps:
        print("  (no steps)")
    usage = result.usage
    flops = usage.flops(int(models.policy.num_parameters), int(getattr(models.value, "num_parameters", 0) or 0))
    print(
        f"usage: {usage.policy_completion_tokens} completion + {usage.policy_prompt_tokens} prompt + "
        f"{usage.prm_tokens} PRM = {usage.total_tokens} tokens; {usage.policy_calls} policy calls, "
        f"{usage.prm_calls} PRM calls; {flops:.3g} FLOPs; {usage.wall_seconds:.2f} s"
    )
    if usage.policy_calls == 0:
        print("note: the budget allowed no policy call; raise --budget-tokens or lower max_new_tokens in --config")
    _print_summary(result, args.agent, args.top)
    if graded and (args.tree_json or args.tree):
        result.tree.grade_answers()  # mark answer leaves correct / incorrect, as the problem's task grades them
    if args.tree_json:
        path = Path(args.tree_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.tree.to_json(indent=1), encoding="utf-8")
        print(f"tree written to {path}")
    if args.tree:
        from agents.integrations.tree_view import write_tree_html

        chosen = result.tree.node_of(result.trace)
        path = write_tree_html(result.tree, args.tree, chosen=chosen, oracle=problem.answer if graded else None)
        print(f"tree view written to {path} (open it in a browser)")
    if args.log:
        from agents.integrations.wandb_logging import log_solve, start_run

        settings = {"agent": args.agent, "options": options, "budget_tokens": args.budget_tokens,
                    "max_steps": args.max_steps, "problem": {"id": problem.id, "question": problem.question,
                    "answer": problem.answer if graded else None}, "policy": models.policy_name,
                    "value": models.value_name}  # fmt: skip
        with start_run("solve", settings, args.log_dir, verbose=args.verbose) as tracker:
            log_solve(tracker, problem, result, grade(result.trace) if graded else None, flops, args.tree)
    return 0


def _print_summary(result, agent: str, top: int) -> None:
    """A compact summary of what the search built: the tree (MCTS*), the final beams, or the votes."""
    from collections import Counter

    def short(text: str | None, width: int = 70) -> str:
        text = text or ""
        return text if len(text) <= width else text[: width - 3] + "..."

    if result.tree is not None:
        tree = result.tree
        leaves = tree.leaves()
        answered = [node for node in leaves if tree.answer(node) is not None]
        depth = max(tree.depth(node) for node in range(len(tree)))
        expanded = sum(tree.expanded)
        print(
            f"tree: {len(tree)} nodes, {expanded} expanded, depth {depth}, {len(leaves)} leaves "
            f"({len(answered)} state an answer), root visits {tree.visits[0]}"
        )
        best = sorted(leaves, key=lambda node: -tree.value[node])[:top]
        print(f"top {len(best)} leaves by value:")
        for node in best:
            chosen = " <- chosen" if tree.state[node] == result.trace else ""
            print(
                f"  node {node}: value {tree.value[node]:.3f}, visits {tree.visits[node]}, depth {tree.depth(node)}, "
                f"answer {tree.answer(node)}: {short(tree.step(node))}{chosen}"
            )
    elif agent == "beam":
        ranked = sorted(range(len(result.traces)), key=lambda k: -result.scores[k])[:top]
        print(f"beams: {len(result.traces)} final, depth {max((len(t.steps) for t in result.traces), default=0)}")
        for k in ranked:
            trace = result.traces[k]
            last = trace.steps[-1] if trace.steps else ""
            print(f"  value {result.scores[k]:.3f}, {len(trace.steps)} steps, answer {trace.answer}: {short(last)}")
    elif result.traces:
        votes = Counter(trace.answer for trace in result.traces)
        shown = ", ".join(f"{answer}: {count}" for answer, count in votes.most_common(top + 2))
        print(f"candidates: {len(result.traces)} solutions; answers (count): {shown}")


# --- compare ---------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    """Every search agent at every budget and seed: the table, and with --out the JSON and plots."""
    from dataclasses import replace

    from agents.compare import CompareConfig, run_from_config
    from agents.integrations.wandb_logging import log_compare, start_run

    data = apply_overrides(load_yaml(args.config) if args.config else {}, args.set)
    config = from_dict(CompareConfig, data, where=args.config or "compare")
    if args.policy or args.value:
        policy, value = args.policy or config.models.policy, args.value or config.models.value
        config = replace(config, models=replace(config.models, policy=policy, value=value))
    if args.ray is not None or args.ray_workers is not None:
        config = replace(config, ray=ray_config(args, config.ray))
    run_dir = Path(args.out).parent if args.out else Path("runs/compare")
    with start_run("compare", to_dict(config), run_dir, config.wandb and not args.no_wandb, args.verbose) as tracker:
        result = run_from_config(config, out=args.out, progress=not args.no_progress)
        log_compare(tracker, result, config, args.out)
    return 0


# --- self-train ------------------------------------------------------------------------------


def cmd_self_train(args: argparse.Namespace) -> int:
    """Run (or resume) ReST-MCTS* self-training or a baseline; print the per-iteration table."""
    from agents.integrations.wandb_logging import log_self_train_outputs, log_self_train_record, start_run
    from agents.training.self_train import SelfTrainer, format_summary, load_config

    overrides = {"run_dir": args.run_dir, "method": args.method, "seed": args.seed, "iterations": args.iterations}
    if args.no_progress:
        overrides["show_progress"] = False
    config = load_config(args.config, args.set, **overrides)
    if args.ray is not None or args.ray_workers is not None:
        from dataclasses import replace

        config = replace(config, ray=ray_config(args, config.ray))
    if args.no_progress:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    enabled = config.wandb and not args.no_wandb
    with start_run("self-train", to_dict(config), config.run_dir, enabled, args.verbose) as tracker:
        records = SelfTrainer(config, on_record=lambda record: log_self_train_record(tracker, record)).run()
        log_self_train_outputs(tracker, config.run_dir, records)
    print(format_summary(records))
    print(f"records: {Path(config.run_dir) / 'iteration_<i>' / 'record.json'}")
    return 0


def ray_config(args: argparse.Namespace, configured):
    """The config's `RayConfig` (or the defaults) with ``--ray [ADDRESS]``, ``--ray-workers`` and ``-v`` applied."""
    from dataclasses import replace

    from agents.integrations.ray_runner import RayConfig

    config = configured or RayConfig()
    changes: dict = {"verbose": config.verbose or bool(getattr(args, "verbose", False))}
    if args.ray is not None:
        changes["address"] = None if args.ray == "local" else args.ray
    if args.ray_workers is not None:
        changes["num_workers"] = args.ray_workers
    return replace(config, **changes)


def add_ray_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help=f"run {what} on Ray: a private local instance, or join a cluster with --ray auto "
                        "(or HEAD:6379); overrides the config's ray.address")  # fmt: skip
    parser.add_argument("--ray-workers", type=int, help="Ray workers, each with its own model copy (default: 2; implies --ray)")


def add_wandb_argument(parser: argparse.ArgumentParser, where: str) -> None:
    parser.add_argument("--no-wandb", action="store_true",
                        help=f"no Weights & Biases logging (default: on; offline, in a wandb/ folder under {where}, unless "
                        "W&B credentials are set; see agents/integrations/wandb_logging.py)")  # fmt: skip


def add_set_argument(parser: argparse.ArgumentParser, example: str, note: str = "") -> None:
    """``--set KEY=VALUE ...``: nested config overrides, read by `agents.config.apply_overrides`."""
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help=f"override config keys, e.g. --set {example}{note}")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rest-mcts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    boot = commands.add_parser("bootstrap", help="train (or reuse) the offline policy pi_0 and PRM V_0")
    boot.add_argument("--config", help="YAML file with BootstrapConfig fields (default: built-in defaults)")
    boot.add_argument("--home", help="cache folder (default: $REST_MCTS_HOME or ~/.cache/rest-mcts)")
    boot.add_argument("--evaluate", action="store_true", help="also report greedy, pass@8, maj@8 and PRM AUROC")
    boot.add_argument("--problems", type=int, default=200, help="held-out test problems for --evaluate")
    add_wandb_argument(boot, "the home folder")
    boot.set_defaults(handler=cmd_bootstrap)

    demo = commands.add_parser(
        "demo", help="run the main job on the offline default (the Countdown planning task)",
        description="Bootstrap, evaluate, compare and self-train once. The default is the planning task; "
        "the word-problem demo: --config configs/bootstrap.yaml --compare-config configs/demo.yaml "
        "--self-train-config configs/demo_self_train.yaml (or make demo-word).",
    )  # fmt: skip
    demo.add_argument("--config", default="configs/countdown/bootstrap.yaml", help="YAML file with BootstrapConfig fields")
    demo.add_argument("--problems", type=int, default=100, help="held-out test problems to evaluate pi_0 on")
    demo.add_argument("--compare-config", default="configs/countdown/demo.yaml", help="comparison config (CompareConfig YAML)")
    demo.add_argument("--out", default="runs/demo/search_vs_budget.json", help="where the table's JSON and plots go")
    demo.add_argument("--self-train-config", default="configs/countdown/demo_self_train.yaml",
                      help="SelfTrainConfig YAML of the short self-training run ('' skips it)")  # fmt: skip
    demo.set_defaults(handler=cmd_demo)

    solve = commands.add_parser(
        "solve",
        help="solve one problem with a search agent and print its answer, trace, usage and tree",
        description='rest-mcts solve "question" [--answer X], or rest-mcts solve --source synthetic --index 0. '
        "Models not given (--policy, --value) are the bootstrapped pi_0 / V_0, built on first use.",
    )
    solve.add_argument("question", nargs="?", help="the question text (or choose a problem with --source)")
    solve.add_argument("--answer", help="the oracle answer, to grade the result (overrides the source's)")
    solve.add_argument("--source", help="problem source: synthetic, gsm8k, math, scibench, reference, hf")
    solve.add_argument("--path", help="the file of a file source (gsm8k, math, scibench, reference)")
    solve.add_argument("--split", default=None, help="keep one hash split: train, validation or test (synthetic: test)")
    solve.add_argument("--index", type=int, default=0, help="which problem of the source (0-based)")
    solve.add_argument("--difficulty", help="synthetic difficulty (default: the bootstrap's)")
    solve.add_argument("--problem-seed", type=int, default=0, help="synthetic generator seed")
    solve.add_argument("--agent", default="mcts_star", choices=AGENT_NAMES, help="search agent (default: mcts_star)")
    solve.add_argument("--config", help="YAML file with the agent's config fields (e.g. MCTSStarConfig)")
    solve.add_argument("--budget-tokens", type=int, help="completion-token budget (default: no cap)")
    solve.add_argument("--seed", type=int, help="sampling seed (default: the agent config's)")
    solve.add_argument("--max-steps", type=int, default=10, help="episode step limit")
    solve.add_argument("--policy", help="policy: HF folder, Hub id, .gguf file or preset YAML (default: pi_0)")
    solve.add_argument("--value", help="value model: PRM folder, preset YAML (configs/prm/*.yaml), "
                       "oracle or noisy-oracle:SIGMA (default: V_0)")
    solve.add_argument("--bootstrap-config", help="BootstrapConfig YAML of the default models")
    solve.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    solve.add_argument("--top", type=int, default=3, help="leaves / beams / answers to show")
    solve.add_argument("--tree-json", help="write the MCTS* search tree to this JSON file")
    solve.add_argument("--tree", metavar="HTML", help="write the MCTS* search tree as a self-contained HTML page")
    solve.add_argument("--log", action="store_true", help="log the config and the result to Weights & Biases "
                       "(offline unless W&B credentials are set; see agents/integrations/wandb_logging.py)")  # fmt: skip
    solve.add_argument("--log-dir", default="runs/solve", help="where --log puts its W&B run (default: runs/solve)")
    solve.set_defaults(handler=cmd_solve)

    compare = commands.add_parser(
        "compare", help="compare the search agents at equal completion-token budgets (table, JSON, plots)"
    )
    compare.add_argument("--config", help="YAML file with CompareConfig fields (e.g. configs/compare.yaml)")
    compare.add_argument("--out", help="write the JSON here and the two plots beside it")
    compare.add_argument("--policy", help="override models.policy")
    compare.add_argument("--value", help="override models.value (PRM folder, preset YAML configs/prm/*.yaml, oracle)")
    compare.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_set_argument(compare, "agents.mcts_star.exploration=0.7 problems.size=50",
                     " (configs/sweep.yaml passes its swept values this way)")  # fmt: skip
    add_wandb_argument(compare, "the folder of --out (runs/compare without it)")
    add_ray_arguments(compare, "the (agent, budget, seed) runs")
    compare.set_defaults(handler=cmd_compare)

    self_train = commands.add_parser(
        "self-train",
        help="ReST-MCTS* self-training (or a baseline), resumable: re-run the same command to continue",
        description="Iteration 0 evaluates pi_0 / V_0; each further iteration searches, buffers, trains the "
        "policy and the PRM, and evaluates. Re-running the same command after an interruption continues "
        "from the last completed stage.",
    )
    self_train.add_argument("--config", default="configs/self_train.yaml", help="YAML file with SelfTrainConfig fields")
    self_train.add_argument("--iterations", type=int, help="self-training iterations after iteration 0 (default: the config's)")
    self_train.add_argument("--method", choices=("rest_mcts", "rest_em", "self_rewarding", "weighted_nll"),
                            help="override the config's method")  # fmt: skip
    self_train.add_argument("--run-dir", help="override the config's run_dir")
    self_train.add_argument("--seed", type=int, help="override the config's seed")
    self_train.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_set_argument(self_train, "weighted_nll.learning_rate=1e-3 value.replay=0")
    add_wandb_argument(self_train, "the run_dir")
    add_ray_arguments(self_train, "the MCTS* search stage's batches")
    self_train.set_defaults(handler=cmd_self_train)
    # --verbose before or after the command name: rest-mcts -v demo, rest-mcts demo -v.
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    for command in commands.choices.values():
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


VERBOSE_HELP = (
    "show third-party output too (transformers and datasets warnings and progress bars) "
    "and the library's DEBUG lines, e.g. the training loss at every logging step"
)


def main(argv: list[str] | None = None) -> int:
    from agents.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose)
    try:
        return args.handler(args)
    except (ConfigError, FileNotFoundError) as error:
        print(f"rest-mcts: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
