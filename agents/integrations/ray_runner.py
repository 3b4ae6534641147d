"""Search on Ray: the comparison's runs and the self-training search batches, spread over workers.

A search is split into tasks whose results depend only on the task: one
comparison run per (line, budget, seed), one self-training search batch per
(batch index, its seed). Every worker is a Ray actor that loads its own copy of
the models from the same spec as the single-process path (model folders, Hub
ids, or a preset that points at a shared OpenAI-compatible server such as
vLLM), runs the tasks it is given with the library's own functions, and returns
plain data; the driver takes the results in task order. The same seeds thus give
the same results as one process (on the same device and with the same torch
thread count: floating-point sums can differ between thread counts).

Where Ray runs (`RayConfig.address`):

- ``None`` (default): a private local instance for this run, started by
  `ray_session` and shut down (every process of it stopped) when the search
  ends. It listens on loopback only, starts no dashboard, sends no usage
  statistics and keeps its sockets and logs in a fresh short folder under the
  system temp dir (deleted afterwards) or in ``temp_dir``. Where Ray supports
  token authentication, a random token is passed to it in the environment (no
  ``~/.ray/auth_token`` file is written).
- ``"auto"`` (or ``"host:6379"``, ``"ray://host:10001"``): join a running cluster
  (``ray start --head`` on one node, ``ray start --address=HEAD:6379`` on the
  others). Every node needs this package installed (or ``runtime_env`` with
  ``py_modules``) and the models at the same path (a shared folder or a Hub id
  in each node's cache), or a shared server.

If Ray is already initialised in the process (a notebook, a test), the search
uses that instance and leaves it running.

Ray is an optional dependency (``pip install 'rest-mcts[ray]'``); it is imported
only when a search runs on it.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger(__name__)

# A local instance stays on loopback and quiet (set while it starts, restored after it stops).
LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else Ray may pick the address of the default route
    "RAY_USAGE_STATS_ENABLED": "0",
}
# Recent Ray enables token authentication on a new local instance and, without a
# token, writes one to ~/.ray/auth_token and warns. A local instance gets a random
# token in the environment instead (Ray still turns the mode on itself, which it
# must do in-process): no file, and the warning is silenced unless verbose. One
# token per process, as Ray caches the token it loaded. Left alone when the user
# set RAY_AUTH_MODE, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH.
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
_PROCESS_TOKEN = secrets.token_hex(32)
# Unix socket paths are limited to 107 characters; Ray puts them under
# temp_dir/session_<date>_<time>_<pid>/sockets/ (about 60 more characters).
MAX_TEMP_DIR_CHARS = 45


@dataclass(frozen=True)
class RayConfig:
    """Run search on Ray (the ``ray:`` key of a compare or self-train config; null: one process).

    Attributes:
        address: None starts a private local instance (see the module docstring);
            ``"auto"`` joins the cluster of this machine; or a head address
            (``"host:6379"``, ``"ray://host:10001"``).
        num_workers: workers (Ray actors), each with its own copy of the models;
            never more than there are tasks.
        cpus_per_worker: CPUs Ray reserves for each worker (also its torch threads).
        gpus_per_worker: GPUs for each worker (a fraction shares one GPU); 0: workers
            see no GPU (Ray hides them), so set it for ``models.device: cuda``.
        num_cpus: CPUs of the local instance; None: ``num_workers x cpus_per_worker``.
            Ignored when joining a cluster.
        temp_dir: the local instance's folder for sockets and logs (absolute, at
            most `MAX_TEMP_DIR_CHARS` characters), kept afterwards; None: a fresh
            folder under the system temp dir, deleted afterwards.
        runtime_env: Ray runtime environment of the job (``env_vars``,
            ``py_modules``, ...).
        verbose: forward the workers' output and Ray's INFO logs to the driver.
    """

    address: str | None = None
    num_workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    num_cpus: int | None = None
    temp_dir: str | None = None
    runtime_env: dict[str, Any] = field(default_factory=dict)
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"ray.num_workers must be >= 1, got {self.num_workers}")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ValueError("ray.cpus_per_worker must be > 0 and ray.gpus_per_worker >= 0")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"ray.num_cpus must be >= 1 or null, got {self.num_cpus}")
        if self.temp_dir is not None and len(str(Path(self.temp_dir).absolute())) > MAX_TEMP_DIR_CHARS:
            raise ValueError(
                f"ray.temp_dir {self.temp_dir!r} is too long: Ray's socket paths under it must stay below "
                f"107 characters; use an absolute path of at most {MAX_TEMP_DIR_CHARS} characters"
            )

    @property
    def local(self) -> bool:
        """True when this config starts its own local instance (no address)."""
        return self.address is None


def init_kwargs(config: RayConfig, temp_dir: str | Path | None = None) -> dict[str, Any]:
    """The keyword arguments of `ray.init` for `config` (`temp_dir`: the local instance's folder)."""
    kwargs: dict[str, Any] = {
        "log_to_driver": config.verbose,
        "logging_level": logging.INFO if config.verbose else logging.WARNING,
    }
    if config.runtime_env:
        kwargs["runtime_env"] = dict(config.runtime_env)
    if not config.local:
        return {"address": config.address, **kwargs}
    num_cpus = config.num_cpus or max(1, math.ceil(config.num_workers * config.cpus_per_worker))
    local = {
        "address": "local",  # always a new instance, never one found on the machine
        "num_cpus": num_cpus,
        "num_gpus": None if config.gpus_per_worker else 0,  # None: the GPUs Ray finds; 0: CPU workers only
        "include_dashboard": False,
        "_node_ip_address": "127.0.0.1",
    }
    if temp_dir is not None:
        local["_temp_dir"] = str(Path(temp_dir).absolute())
    return {**local, **kwargs}


@contextmanager
def ray_session(config: RayConfig) -> Iterator[dict[str, Any]]:
    """Ray, initialised for `config` for the duration of the block.

    Yields ``{"init": the ray.init kwargs}``; after the block the same dict also
    has ``"killed"``: the pids of the local instance that were still alive 10 s
    after `ray.shutdown` and had to be killed (normally none). A local instance
    thus leaves no process behind. An instance that was already initialised is
    used as it is and left running (``"init"`` is then None).
    """
    import ray

    if ray.is_initialized():
        yield {"init": None, "killed": []}
        return
    created = None
    temp_dir = None
    if config.local:
        if config.temp_dir is not None:
            temp_dir = Path(config.temp_dir).absolute()
            temp_dir.mkdir(parents=True, exist_ok=True)
        else:
            created = temp_dir = Path(tempfile.mkdtemp(prefix="rmray-"))
    kwargs = init_kwargs(config, temp_dir)
    environment = dict(LOCAL_ENV) if config.local else {}
    if config.local and not any(name in os.environ for name in _AUTH_ENV):
        environment["RAY_AUTH_TOKEN"] = _PROCESS_TOKEN
    saved = {name: os.environ.get(name) for name in (*environment, "RAY_AUTH_MODE")}
    os.environ.update(environment)
    session: dict[str, Any] = {"init": kwargs, "killed": []}
    auth_logger = logging.getLogger(_AUTH_LOGGER)
    auth_level = auth_logger.level
    try:
        if not config.verbose:
            auth_logger.setLevel(logging.ERROR)
        try:
            ray.init(**kwargs)
        finally:
            auth_logger.setLevel(auth_level)
        yield session
    finally:
        try:
            ray.shutdown()
            if temp_dir is not None:
                session["killed"] = stop_leftovers(temp_dir)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)


def processes_of(temp_dir: str | Path) -> list[Any]:
    """Live processes whose command line names `temp_dir` (a local Ray instance's raylet, GCS, agents)."""
    import psutil

    needle = str(Path(temp_dir).absolute())
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.pid != os.getpid() and any(needle in part for part in process.info["cmdline"] or ()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def stop_leftovers(temp_dir: str | Path, wait: float = 10.0) -> list[int]:
    """Wait up to `wait` s for the processes of the local instance in `temp_dir` to exit, then kill the rest.

    Returns the pids that had to be killed (normally none: `ray.shutdown` stops them).
    """
    import psutil

    deadline = time.monotonic() + wait
    while (alive := processes_of(temp_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    if alive:
        logger.warning("stopped %d Ray processes left after shutdown: %s", len(alive), [p.pid for p in alive])
    return [p.pid for p in alive]


class _Worker:
    """A Ray actor: loads its models once (``load()``) and runs tasks on them (``fn(models, shared, task)``)."""

    def __init__(self, load: Callable[[], Any], threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.models = load()

    def run(self, fn: Callable[[Any, Any, Any], Any], shared: Any, task: Any) -> Any:
        return fn(self.models, shared, task)


def map_ordered(
    config: RayConfig,
    load: Callable[[], Any],
    fn: Callable[[Any, Any, T], R],
    tasks: Sequence[T],
    shared: Any = None,
) -> Iterator[R]:
    """``fn(models, shared, task)`` for every task on Ray workers; yields the results in task order.

    Args:
        config: where and on how many workers.
        load: called once in each worker: its models (a picklable callable, e.g. a
            `functools.partial` of a module-level function).
        fn: a module-level function (workers import it by name).
        tasks: the tasks; each result may depend only on its task, `shared` and the models.
        shared: data every task reads (put into Ray's object store once).
    """
    if not tasks:
        return
    import ray
    from ray.util import ActorPool

    with ray_session(config):
        threads = max(1, int(config.cpus_per_worker))
        worker = ray.remote(num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker)(_Worker)
        actors = [worker.remote(load, threads) for _ in range(min(config.num_workers, len(tasks)))]
        try:
            shared_ref = ray.put(shared)
            pool = ActorPool(actors)
            yield from pool.map(lambda actor, task: actor.run.remote(fn, shared_ref, task), list(tasks))
        finally:
            for actor in actors:
                ray.kill(actor)


# --- the comparison (agents.compare) ------------------------------------------------------------


def _load_compare_models(models_config: Any, need_value: bool) -> tuple[Any, Any]:
    from agents.compare import load_models

    models = load_models(models_config, need_value=need_value, progress=False)
    return models.policy, models.value


def _compare_task(models: tuple[Any, Any], shared: tuple[Any, Any], run: Any) -> dict[str, Any]:
    from agents.compare import run_line

    problems, config = shared
    return run_line(models, problems, config, run)


def compare_lines(config: Any, problems: Sequence[Any], plan: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """The rows of `agents.compare.run_line` for every run of `plan`, in order, on ``config.ray``.

    Workers load ``config.models`` (`agents.compare.load_models`).
    """
    from functools import partial

    from agents.search.registry import NEEDS_VALUE

    need_value = any(run.agent in NEEDS_VALUE and not run.reference for run in plan)
    load = partial(_load_compare_models, config.models, need_value)
    yield from map_ordered(config.ray, load, _compare_task, plan, shared=(list(problems), config))


# --- self-training search (agents.training.self_train) -------------------------------------------


def _load_search_models(policy_dir: str, value_dir: str, device: str | None, prompt_format: str) -> tuple[Any, Any]:
    from agents.models.hf_policy import HFPolicy
    from agents.models.hf_value import HFValueModel

    policy = HFPolicy.from_pretrained(policy_dir, device=device, prompt_format=prompt_format)
    return policy, HFValueModel.from_pretrained(value_dir, device=device)


def _search_task(models: tuple[Any, Any], settings: Any, task: tuple[Sequence[Any], int]) -> list[tuple]:
    from agents.training.self_train import search_batch

    problems, seed = task
    return search_batch(models, settings, problems, seed)


def search_batches(
    config: RayConfig,
    policy_dir: str,
    value_dir: str,
    device: str | None,
    prompt_format: str,
    settings: Any,
    tasks: Sequence[tuple[Sequence[Any], int]],
) -> Iterator[list[tuple]]:
    """`agents.training.self_train.search_batch` for every (problems, seed) task, in order, on Ray."""
    from functools import partial

    load = partial(_load_search_models, policy_dir, value_dir, device, prompt_format)
    yield from map_ordered(config, load, _search_task, tasks, shared=settings)


__all__ = [
    "LOCAL_ENV",
    "RayConfig",
    "compare_lines",
    "init_kwargs",
    "map_ordered",
    "processes_of",
    "ray_session",
    "search_batches",
    "stop_leftovers",
]
