"""Weights & Biases tracking of the long commands: ``compare``, ``self-train``, ``bootstrap``, ``solve --log``.

Each command opens one W&B run with `start_run` and hands it what it made:

- ``compare``: the config; per budget (x-axis ``budget/multiplier``) each agent's
  accuracy, CI and tokens per problem; the summary keys ``<agent>/accuracy@<m>x``
  (the sweep's metric is ``mcts_star/accuracy@8x``); a ``results`` table with one
  row per (agent, budget, seed, problem): question, oracle answer, answer,
  correct, completion tokens and the chosen trace; the ``aggregates`` table; the
  two plots as images; the results JSON as an artifact;
- ``self-train``: the config; per iteration (the W&B step) greedy and MCTS*
  accuracy, buffer and training rows, sampled tokens and wall time; the final
  policy, PRM and episode buffer as artifacts;
- ``bootstrap``: the config; the build and training times; pi_0 and V_0 as
  artifacts by reference (they stay in the cache);
- ``solve --log``: the config and the result (answer, correct, usage, trace).

Where it goes, and whether (`resolve_mode`):

1. off, a `NoopTracker` (wandb is not even imported), when the command says so
   (``--no-wandb``, or ``wandb: false`` in a compare or self-train config), or
   when ``WANDB_MODE=disabled`` or ``WANDB_DISABLED=true``;
2. ``WANDB_MODE`` set (``online``, ``offline``, ...): as set;
3. otherwise online when ``WANDB_API_KEY`` is set, or ``WANDB_SWEEP_ID`` (a run
   started by ``wandb agent``);
4. otherwise offline: no account needed.

Files go to ``<run dir>/wandb/offline-run-<time>-<id>/`` (``run-...`` online),
where the run dir is the command's own folder: compare, the folder of ``--out``
(``runs/compare`` without it); self-train, its ``run_dir``; bootstrap, the model
cache (``--home``); solve, ``--log-dir``. ``$WANDB_DIR``, when set, wins (``wandb
agent`` sets it to its working folder). Upload an offline run later with
``wandb sync <run dir>/wandb/offline-run-*``. Project: ``$WANDB_PROJECT``, default
``rest-mcts``. If ``wandb.init`` fails (say online without a network), a warning
says so and the command goes on unlogged, except inside a sweep.

Artifacts are copied into the run, except by reference (``file://`` URIs and
checksums only) when asked (the bootstrap's cached models) or when larger than
`REFERENCE_BYTES` (a real policy).

Quiet: wandb's terminal output and console capture are off (``--verbose`` brings
the output back); one INFO line names the run folder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_PROJECT = "rest-mcts"
REFERENCE_BYTES = 64 * 2**20  # artifacts larger than this are logged by reference unless told otherwise
SWEEP_METRIC = "mcts_star/accuracy@8x"  # what configs/sweep.yaml maximises (see `log_compare`)
_TRUE = ("1", "true", "yes", "on")


def resolve_mode(environ: dict[str, str] | None = None) -> str:
    """The W&B mode the environment asks for: "disabled", "offline", "online", or ``$WANDB_MODE`` as set.

    The rule (module docstring): ``WANDB_DISABLED`` true or ``WANDB_MODE=disabled``
    -> "disabled"; ``WANDB_MODE`` set -> it; ``WANDB_API_KEY`` or ``WANDB_SWEEP_ID``
    set -> "online"; else "offline".
    """
    env = os.environ if environ is None else environ
    if env.get("WANDB_DISABLED", "").strip().lower() in _TRUE:
        return "disabled"
    mode = env.get("WANDB_MODE", "").strip().lower()
    if mode:
        return mode
    if env.get("WANDB_API_KEY") or env.get("WANDB_SWEEP_ID"):
        return "online"
    return "offline"


class NoopTracker:
    """The tracker when logging is off: every method does nothing, so commands need no special cases."""

    enabled = False
    folder: Path | None = None  # the run's folder (offline-run-... or run-...)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log a history row of scalars (at W&B step `step`, or the next one)."""

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        """Plot metric `name` (globs allowed) against `step_metric` instead of the step."""

    def log_summary(self, values: dict[str, Any]) -> None:
        """Set final values (the run summary: what a sweep optimises and the runs table shows)."""

    def log_table(self, key: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Log a table."""

    def log_image(self, key: str, path: str | Path, caption: str | None = None) -> None:
        """Log an image file (PNG)."""

    def log_artifact(
        self,
        path: str | Path,
        name: str,
        type: str,  # noqa: A002 - W&B's word
        by_reference: bool | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Log a file or folder as an artifact: copied, or by reference (``file://``) when
        `by_reference` is True, or when it is None and `path` is larger than `REFERENCE_BYTES`."""

    def finish(self, exit_code: int = 0) -> None:
        """End the run (a non-zero `exit_code` marks it failed)."""

    def __enter__(self) -> NoopTracker:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.finish(exit_code=0 if error is None else 1)


class WandbTracker(NoopTracker):
    """A live W&B run (see `start_run`)."""

    enabled = True

    def __init__(self, run: Any) -> None:
        self.run = run
        self.folder = Path(run.dir).parent  # run.dir is the run's files/ folder
        self._finished = False

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.run.log({k: v for k, v in metrics.items() if v is not None}, step=step)

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        self.run.define_metric(name, step_metric=step_metric)

    def log_summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update({k: v for k, v in values.items() if v is not None})

    def log_table(self, key: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        import wandb

        data = [list(row) for row in rows]
        self.run.log({key: wandb.Table(columns=list(columns), data=data, allow_mixed_types=True)})

    def log_image(self, key: str, path: str | Path, caption: str | None = None) -> None:
        import wandb

        self.run.log({key: wandb.Image(str(path), caption=caption)})

    def log_artifact(
        self,
        path: str | Path,
        name: str,
        type: str,  # noqa: A002
        by_reference: bool | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        import wandb

        path = Path(path).resolve()
        if not path.exists():
            logger.warning("W&B: artifact %s not logged: %s does not exist", name, path)
            return
        if by_reference is None:
            by_reference = _size(path) > REFERENCE_BYTES
        artifact = wandb.Artifact(artifact_name(name), type=type, metadata=_plain(metadata or {}))
        if by_reference:
            artifact.add_reference(f"file://{path}")
        elif path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def finish(self, exit_code: int = 0) -> None:
        if not self._finished:
            self._finished = True
            self.run.finish(exit_code=exit_code)


def start_run(
    kind: str,
    config: dict[str, Any],
    run_dir: str | Path,
    enabled: bool = True,
    verbose: bool = False,
    name: str | None = None,
) -> NoopTracker:
    """Open the W&B run of one command; a `NoopTracker` when logging is off (see `resolve_mode`).

    Args:
        kind: the command ("compare", "self-train", "bootstrap", "solve"): the run's job type and tag.
        config: the command's config as plain data (`agents.config.to_dict`).
        run_dir: the command's folder; the run goes to ``run_dir/wandb/`` (unless ``$WANDB_DIR``).
        enabled: False (``--no-wandb``, ``wandb: false``) turns logging off.
        verbose: let wandb print its usual terminal output.
        name: the run's display name (default: W&B's).

    Inside a ``wandb agent`` sweep the run joins the sweep (wandb reads the
    agent's variables). Use the result as a context manager, or call ``finish``.
    """
    mode = resolve_mode()
    if not enabled or mode == "disabled":
        return NoopTracker()
    import wandb

    directory = os.environ.get("WANDB_DIR") or str(run_dir)
    Path(directory).mkdir(parents=True, exist_ok=True)  # wandb warns (git root) when it is missing
    settings = wandb.Settings(silent=not verbose, console="auto" if verbose else "off")
    wandb.termsetup(settings, None)  # wandb's own lines: init's settings silence only the run's
    # W&B's Weave hint takes this package, `agents`, for OpenAI's Agents SDK: keep it out.
    os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
    try:
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            job_type=kind,
            tags=[kind],
            name=name,
            config=_plain(config),
            dir=directory,
            mode=mode,
            settings=settings,
        )
    except Exception as error:  # noqa: BLE001 - e.g. online with no network: the job goes on unlogged
        if os.environ.get("WANDB_SWEEP_ID"):
            raise  # a sweep run that cannot report its metric must fail
        logger.warning("W&B logging off: wandb.init failed (%s: %s)", type(error).__name__, error)
        return NoopTracker()
    wandb.termsetup(settings, None)  # again: the first init sets them up from the environment
    tracker = WandbTracker(run)
    where = f"offline; upload later: wandb sync {tracker.folder}" if mode == "offline" else run.url
    logger.info("W&B %s run %s in %s (%s)", kind, run.id, tracker.folder, where)
    return tracker


# --- compare -------------------------------------------------------------------------------

RESULT_COLUMNS = ("agent", "multiplier", "budget_tokens", "seed", "problem_id", "question", "oracle_answer",
                  "answer", "correct", "completion_tokens", "trace")  # fmt: skip
AGGREGATE_FIGURES = ("accuracy", "ci_low", "ci_high", "accuracy_seed_std", "completion_tokens", "total_tokens",
                     "flops", "wall_seconds_per_problem")  # fmt: skip


def log_compare(
    tracker: NoopTracker, result: dict[str, Any], config: Any = None, out: str | Path | None = None
) -> None:
    """Log a comparison (`agents.compare.run_comparison`'s result).

    History: one row per budget multiplier with ``<agent>/<figure>`` for every
    agent run at it (CoT at 1x), plotted against ``budget/multiplier``. Summary:
    ``<agent>/<figure>@<m>x`` and ``cot_cost``. Tables ``aggregates`` and
    ``results`` (per problem; questions from `config`'s problems when given).
    Images: the plots beside `out`, and `out` itself as a ``results`` artifact.
    """
    if not tracker.enabled:
        return
    aggregates = result["aggregates"]
    agents = sorted({row["agent"] for row in aggregates})
    tracker.define_metric("budget/multiplier")
    for agent in agents:
        tracker.define_metric(f"{agent}/*", step_metric="budget/multiplier")
    tokens = {b["multiplier"]: b["completion_tokens"] for b in result["budgets"]}
    summary: dict[str, Any] = {"cot_cost": result["cot_cost"], "problems": result["problems"]["count"]}
    for multiplier in sorted({row["multiplier"] for row in aggregates}):
        metrics: dict[str, Any] = {"budget/multiplier": multiplier, "budget/tokens": tokens.get(multiplier)}
        for row in (row for row in aggregates if row["multiplier"] == multiplier):
            for figure in AGGREGATE_FIGURES:
                metrics[f"{row['agent']}/{figure}"] = row[figure]
                summary[f"{row['agent']}/{figure}@{multiplier:g}x"] = row[figure]
        tracker.log_metrics(metrics)
    tracker.log_summary(summary)
    tracker.log_table("aggregates", ("agent", "multiplier", "budget_tokens", *AGGREGATE_FIGURES),
                      [[row["agent"], row["multiplier"], row["budget_tokens"], *(row[f] for f in AGGREGATE_FIGURES)]
                       for row in aggregates])  # fmt: skip
    tracker.log_table("results", RESULT_COLUMNS, result_rows(result, _problems_of(result, config)))
    if out is not None:
        out = Path(out)
        for key, name in (("plots/accuracy_vs_tokens", f"{out.stem}.png"),
                          ("plots/accuracy_vs_flops", f"{out.stem}_flops.png")):  # fmt: skip
            if (out.parent / name).is_file():  # the plots `agents.compare.write_outputs` wrote
                tracker.log_image(key, out.parent / name)
        tracker.log_artifact(out, f"compare-{out.parent.name}", "results", by_reference=False)


def result_rows(result: dict[str, Any], problems: dict[str, Any] | None = None) -> list[list[Any]]:
    """One `RESULT_COLUMNS` row per (run, problem); `problems` maps ids to `Problem`s (question, answer)."""
    problems = problems or {}
    ids = result["problems"]["ids"]
    rows = []
    for run in result["runs"]:
        answers = run.get("answers") or [None] * len(ids)
        tokens = run.get("problem_tokens") or [None] * len(ids)
        traces = run.get("traces") or [None] * len(ids)
        for index, problem_id in enumerate(ids):
            problem = problems.get(problem_id)
            rows.append([
                run["agent"], run["multiplier"], run["budget_tokens"], run["seed"], problem_id,
                getattr(problem, "question", None), getattr(problem, "answer", None), answers[index],
                bool(run["correct"][index]), tokens[index], traces[index],
            ])  # fmt: skip
    return rows


def _problems_of(result: dict[str, Any], config: Any) -> dict[str, Any]:
    """The compared problems by id (reloaded from the config: generation is seeded), or {} if that fails."""
    if config is None:
        return {}
    try:
        problems = config.problems.load(result["problems"].get("difficulty") or "easy")
    except Exception as error:  # noqa: BLE001 - the table keeps the ids without questions
        logger.warning("W&B: problem texts not logged: %s", error)
        return {}
    return {problem.id: problem for problem in problems}


# --- self-train ------------------------------------------------------------------------------


def self_train_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The scalars of one `SelfTrainer` iteration record, grouped for W&B panels."""
    evaluation = record.get("eval", {})
    metrics = {
        "eval/greedy_accuracy": record["greedy_accuracy"],
        "eval/mcts_accuracy": record["mcts_accuracy"],
        "eval/prm_auroc": record.get("prm_auroc"),
        "eval/greedy_tokens": evaluation.get("greedy_tokens"),
        "eval/mcts_completion_tokens": evaluation.get("mcts_usage", {}).get("policy_completion_tokens"),
        "rows/policy": record["policy_rows"],
        "rows/value": record["value_rows"],
        "rows/pairs": record["pair_rows"],
        "rows/relative": record["relative_rows"],
        "rows/policy_train": record["policy_train_rows"],
        "rows/value_train": record["value_train_rows"],
        "tokens/sampled": record["sampled_tokens"],
        "search/solved_fraction": record.get("search", {}).get("solved_fraction"),
        "time/wall_seconds": record["wall_seconds"],
        **{f"time/{stage}_seconds": seconds for stage, seconds in record.get("stage_seconds", {}).items()},
        # what became of the greedy solutions, as fractions (`agents.evaluation.solution_outcome`)
        **{f"greedy_outcomes/{outcome}": count / max(1, evaluation.get("problems", 1))
           for outcome, count in evaluation.get("greedy_outcomes", {}).items()},  # fmt: skip
    }
    return {key: value for key, value in metrics.items() if value is not None}


def log_self_train_record(tracker: NoopTracker, record: dict[str, Any]) -> None:
    """Log one iteration record at W&B step = its iteration (pass as ``SelfTrainer(on_record=...)``)."""
    if tracker.enabled:
        tracker.log_metrics(self_train_metrics(record), step=int(record["iteration"]))


def log_self_train_outputs(tracker: NoopTracker, run_dir: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """After a run: the per-iteration table, the final values, and the final models and buffer as artifacts."""
    if not tracker.enabled or not records:
        return
    columns = ("iteration", "method", "greedy_accuracy", "mcts_accuracy", "prm_auroc", "policy_train_rows",
               "value_train_rows", "sampled_tokens", "wall_seconds")  # fmt: skip
    tracker.log_table("iterations", columns, [[record.get(c) for c in columns] for record in records])
    last = records[-1]
    tracker.log_summary({"final/iteration": last["iteration"], "final/greedy_accuracy": last["greedy_accuracy"],
                         "final/mcts_accuracy": last["mcts_accuracy"]})  # fmt: skip
    run_dir = Path(run_dir)
    meta = {"iteration": last["iteration"], "method": last["method"], "run_dir": str(run_dir)}
    tracker.log_artifact(last["policy_dir"], f"{run_dir.name}-policy", "model", metadata=meta)
    tracker.log_artifact(last["value_dir"], f"{run_dir.name}-value", "model", metadata=meta)
    if (run_dir / "buffer").is_dir():
        tracker.log_artifact(run_dir / "buffer", f"{run_dir.name}-buffer", "dataset", metadata=meta)


# --- bootstrap -------------------------------------------------------------------------------


def log_bootstrap(tracker: NoopTracker, result: Any) -> None:
    """Log a `BootstrapResult`: build and training times, sizes, and both models by reference."""
    if not tracker.enabled:
        return
    summary = {}
    for role, manifest in (("policy", result.policy_manifest), ("value", result.value_manifest)):
        for key in ("parameters", "build_seconds", "train_seconds", "examples"):
            summary[f"{role}/{key}"] = manifest.get(key)
    tracker.log_metrics(summary)
    tracker.log_summary(summary)
    for folder, manifest in ((result.policy_dir, result.policy_manifest), (result.value_dir, result.value_manifest)):
        tracker.log_artifact(folder, Path(folder).name, "model", by_reference=True,
                             metadata={k: v for k, v in manifest.items() if k != "config"})  # fmt: skip


# --- solve -----------------------------------------------------------------------------------


def log_solve(tracker: NoopTracker, problem: Any, result: Any, correct: bool | None, flops: float,
              tree_html: str | Path | None = None) -> None:  # fmt: skip
    """Log one solved problem: answer, correctness, usage, and the trace as a one-row table."""
    if not tracker.enabled:
        return
    from reasoning_gym import format_step

    trace = "\n".join(format_step(number, step) for number, step in enumerate(result.trace.steps, start=1))
    usage = result.usage.to_dict()
    values = {"answer": result.answer, "correct": correct, "steps": len(result.trace.steps),
              "stop_reason": result.stop_reason, "flops": flops, **{f"usage/{k}": v for k, v in usage.items()}}  # fmt: skip
    tracker.log_metrics({k: v for k, v in values.items() if type(v) in (int, float)})  # (not bools, not text)
    tracker.log_summary(values)
    tracker.log_table("solution", ("problem_id", "question", "oracle_answer", "answer", "correct", "completion_tokens",
                                   "trace"),
                      [[problem.id, problem.question, problem.answer if correct is not None else None, result.answer,
                        correct, usage.get("policy_completion_tokens"), trace]])  # fmt: skip
    if tree_html is not None:
        tracker.log_artifact(tree_html, f"tree-{problem.id}", "tree", by_reference=False)


# --- helpers ---------------------------------------------------------------------------------


def artifact_name(name: str) -> str:
    """`name` with the characters W&B refuses in artifact names (all but letters, digits, - _ .) as '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "artifact"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def _plain(data: Any) -> Any:
    """`data` as JSON-like values (tuples as lists, paths and other objects as strings)."""
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple, set)):
        return [_plain(v) for v in data]
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    return str(data)
