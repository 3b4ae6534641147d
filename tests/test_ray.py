"""Search on Ray (`agents.integrations.ray_runner`): the same results as one process, and no process left behind.

One local 2-CPU Ray instance serves the whole file: it is started by the
module fixture through `ray_session` (loopback, no dashboard, its folder under
the test's tmp path) and stopped at the end, after which no process naming its
folder may remain. The runners see Ray already initialised and use it. The
models are tiny random char-level Llamas saved to a folder, which the driver and
the workers load alike.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is the optional extra `rest-mcts[ray]` (also in `dev`)")

from agents.compare import CompareConfig, ModelsConfig, ProblemsConfig, load_models, run_comparison  # noqa: E402
from agents.config import ConfigError, from_dict  # noqa: E402
from agents.integrations.ray_runner import (  # noqa: E402
    MAX_TEMP_DIR_CHARS,
    RayConfig,
    init_kwargs,
    processes_of,
    ray_session,
)
from agents.training.self_train import SelfTrainConfig, SelfTrainer  # noqa: E402
from reasoning_gym import EpisodeLimits  # noqa: E402

AGENTS = {
    "cot": {"max_new_tokens": 12},
    "self_consistency": {"max_new_tokens": 12, "samples_per_round": 1},
    "mcts_star": {"max_new_tokens": 6, "branch": 2, "roll_forward_steps": 1, "max_retries": 0},
}
EASY = {"min_ops": 1, "max_ops": 1, "max_value": 5, "max_result": 10, "operations": ["+"]}
WALL = ("wall_seconds", "wall_seconds_per_problem")


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    """A local 2-CPU Ray instance for the module; afterwards no process of it may remain."""
    folder = tmp_path_factory.mktemp("ray")
    if len(str(folder)) > MAX_TEMP_DIR_CHARS:  # Ray's socket paths under it must stay short
        folder = Path(tempfile.mkdtemp(prefix="rmray-"))
    config = RayConfig(num_workers=2, temp_dir=str(folder))
    with ray_session(config) as session:
        kwargs = session["init"]
        assert kwargs["_node_ip_address"] == "127.0.0.1" and kwargs["include_dashboard"] is False
        assert kwargs["num_cpus"] == 2 and kwargs["address"] == "local"
        assert processes_of(folder), "the instance's processes name its folder"
        yield folder
    assert session["killed"] == [], "ray.shutdown() left processes that had to be killed"
    left = processes_of(folder)
    assert not left, [(p.pid, " ".join(p.cmdline())[:200]) for p in left]


def test_ray_config_validates_and_builds_quiet_loopback_init_arguments():
    config = from_dict(CompareConfig, {"ray": {"address": "auto", "num_workers": 3}}, where="compare.yaml")
    assert config.ray == RayConfig(address="auto", num_workers=3)
    assert from_dict(CompareConfig, {}).ray is None and SelfTrainConfig().ray is None  # off by default
    with pytest.raises(ConfigError, match="num_worker"):
        from_dict(CompareConfig, {"ray": {"num_worker": 2}}, where="compare.yaml")
    with pytest.raises(ConfigError, match="num_workers"):
        from_dict(SelfTrainConfig, {"ray": {"num_workers": 0}})
    with pytest.raises(ConfigError, match="too long"):
        from_dict(CompareConfig, {"ray": {"temp_dir": "/tmp/" + "x" * 200}})
    # Joining a cluster passes no local-instance arguments (Ray rejects num_cpus there).
    assert init_kwargs(config.ray) == {"address": "auto", "log_to_driver": False, "logging_level": 30}
    local = init_kwargs(RayConfig(num_workers=2), "/tmp/r")
    assert local["address"] == "local" and local["num_cpus"] == 2 and local["_temp_dir"] == "/tmp/r"
    assert local["include_dashboard"] is False and local["_node_ip_address"] == "127.0.0.1"


def without_wall(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in WALL} for row in rows]


def test_compare_on_ray_gives_the_single_process_results(ray_instance, model_dirs):
    policy_dir, value_dir = model_dirs
    config = CompareConfig(
        problems=ProblemsConfig(size=3),
        seeds=(0, 1),
        budget_multipliers=(1, 2),
        agents=AGENTS,
        models=ModelsConfig(policy=policy_dir, value=value_dir, device="cpu"),
        batch_size=2,  # two batches: a run's batches stay together on one worker
        limits=EpisodeLimits(max_steps=3),
        ci_resamples=200,
    )
    models = load_models(config.models, progress=False)
    local = run_comparison(config, models.policy, models.value, progress=False)
    on_ray = run_comparison(replace(config, ray=RayConfig(num_workers=2)), models.policy, models.value, progress=False)

    assert len(local["runs"]) == 1 + 2 * 2 * 2
    assert [(r["agent"], r["multiplier"], r["seed"]) for r in on_ray["runs"]] == [
        (r["agent"], r["multiplier"], r["seed"]) for r in local["runs"]
    ]
    assert without_wall(on_ray["runs"]) == without_wall(local["runs"])  # correctness per problem, tokens, FLOPs
    assert without_wall(on_ray["aggregates"]) == without_wall(local["aggregates"])  # accuracy and its CI
    for key in ("cot_cost", "budgets", "token_caps", "problems", "models"):
        assert on_ray[key] == local[key]
    assert on_ray["config"]["ray"]["num_workers"] == 2 and local["config"]["ray"] is None
    assert any(r["completion_tokens"] > 0 for r in local["runs"][1:])


def test_self_train_search_stage_on_ray_writes_the_same_trees_and_rows(ray_instance, model_dirs, tmp_path):
    data = {
        "method": "rest_mcts",
        "seed": 0,
        "show_progress": False,
        "models": {"policy": model_dirs[0], "value": model_dirs[1], "device": "cpu"},
        "train_problems": {"source": "synthetic", "split": "train", "size": 4, "seed": 1, "difficulty": EASY},
        "search": {
            "mcts": {"iterations": 3, "branch": 2, "max_new_tokens": 8, "roll_forward_steps": 0, "max_retries": 0},
            "budget": {"completion_tokens": 120},
            "limits": {"max_steps": 3},
            "batch_size": 2,  # two batches, one per worker
        },
    }
    outputs = []
    for name, ray in (("local", None), ("ray", {"num_workers": 2})):
        config = from_dict(SelfTrainConfig, {**data, "run_dir": str(tmp_path / name), "ray": ray})
        stats = SelfTrainer(config).stage_search(1)
        search = tmp_path / name / "iteration_1" / "search"
        trees = (search / "trees.jsonl").read_text(encoding="utf-8")
        targets = json.loads((search / "targets.json").read_text(encoding="utf-8"))
        stats["usage"].pop("wall_seconds", None)
        outputs.append((stats, trees, targets))
    (stats, trees, targets), (ray_stats, ray_trees, ray_targets) = outputs
    assert len(trees.splitlines()) == 4 and stats["usage"]["policy_completion_tokens"] > 0
    assert ray_trees == trees and ray_targets == targets and ray_stats == stats


def test_cli_switches_turn_ray_on():
    from agents.cli import build_parser, ray_config

    parser = build_parser()
    local = parser.parse_args(["compare", "--ray"])
    assert ray_config(local, None) == RayConfig()  # a private local instance, 2 workers
    cluster = parser.parse_args(["self-train", "--ray", "auto", "--ray-workers", "8"])
    assert ray_config(cluster, RayConfig(cpus_per_worker=2)) == RayConfig(address="auto", num_workers=8, cpus_per_worker=2)
    assert parser.parse_args(["compare"]).ray is None
