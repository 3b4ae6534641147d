"""PPO choosing among K proposed steps, against random and PRM-greedy choice (the SB3 wrapper).

pi_0 proposes K candidate next steps and V_0 scores them at every turn
(`agents.integrations.sb3_env.CandidateChoiceEnv`); a chooser picks one. PPO
(stable-baselines3, ``MlpPolicy`` on the candidate features) is trained for
``--timesteps`` environment steps on training-split problems, one run per seed,
then evaluated on held-out test problems beside two baselines on the very same
candidates:

- ``random``: a valid candidate, uniformly;
- ``prm_greedy``: the candidate V_0 scores highest (what greedy value-guided search does);
- ``ppo``: the trained PPO policy, deterministic;
- ``oracle``: a reference ceiling, not a baseline (planning tasks only): a candidate
  from which the target can still be reached (exact values, fewest steps left),
  else PRM-greedy. It shows how much any chooser could gain at this K.

Every chooser of one seed replays problem i with the same environment seed, so the
first turn's candidates are identical across choosers. Accuracy comes with a 95%
percentile bootstrap interval over problems, each resampled problem keeping all its
seeds (`agents.compare.confidence_interval`). Each finished seed is kept under
``--checkpoints`` (runs/ppo_choice/), so an interrupted run resumes seed by seed.

    .venv/bin/python benchmarks/ppo_choice.py                            # full run, see README
    .venv/bin/python benchmarks/ppo_choice.py --timesteps 64 --problems 5 --seeds 0 --out /tmp/ppo.json

Models: pi_0 and V_0 of ``--config`` (built by the bootstrap if not cached), or with
``--tiny-random`` untrained tiny models (a smoke test of the plumbing, no accuracy).
Prints a Markdown table and writes JSON to benchmarks/results/countdown/ppo_choice.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from stable_baselines3 import PPO  # noqa: E402

from agents.artifacts import fingerprint, write_json_atomically  # noqa: E402
from agents.compare import confidence_interval  # noqa: E402
from agents.config import from_dict, load_yaml  # noqa: E402
from agents.integrations.sb3_env import (  # noqa: E402
    CANDIDATE_FEATURES,
    CandidateChoiceConfig,
    CandidateChoiceEnv,
    split_observation,
)
from agents.logs import setup_logging  # noqa: E402
from agents.models.base import Policy, ValueModel  # noqa: E402
from agents.training.bootstrap import BootstrapConfig, bootstrap  # noqa: E402
from reasoning_gym import ReasoningMathEnv, get_task, make_source, steps_to_solve  # noqa: E402
from reasoning_gym.sources.base import source_kwargs  # noqa: E402

CONFIG = ROOT / "configs" / "countdown" / "bootstrap.yaml"
OUT = ROOT / "benchmarks" / "results" / "countdown" / "ppo_choice.json"
CHECKPOINTS = ROOT / "runs" / "ppo_choice"  # one JSON per finished seed (git-ignored)
PRM, VALID = CANDIDATE_FEATURES.index("prm"), CANDIDATE_FEATURES.index("valid")


@dataclass(frozen=True)
class PPOChoiceConfig:
    """Everything the benchmark varies, in one place (written to the JSON).

    Attributes:
        bootstrap: YAML of the `BootstrapConfig` whose pi_0 and V_0 are used.
        level: difficulty of the problems (None: the bootstrap's).
        timesteps: PPO environment steps per seed.
        train_problems: training-split problems PPO episodes are drawn from.
        problems: held-out test problems (split "test", generator seed 0).
        seeds: one PPO run, and one evaluation pass of every chooser, per seed.
        k, temperature, max_new_tokens: candidates per turn and how pi_0 samples them.
        max_steps: the episode's step limit (2 moves answer a 3-number Countdown puzzle).
        n_steps, batch_size, learning_rate, ent_coef, gamma: PPO's; gamma 1 since the
            only reward comes at the end of a short episode.
        tiny_random: untrained tiny models instead of the bootstrap's (plumbing only).
    """

    bootstrap: str = str(CONFIG.relative_to(ROOT))
    level: str | None = None
    timesteps: int = 20_000
    train_problems: int = 1000
    problems: int = 200
    seeds: tuple[int, ...] = (0, 1, 2)
    k: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 16
    max_steps: int = 6
    n_steps: int = 256
    batch_size: int = 64
    learning_rate: float = 3e-4
    ent_coef: float = 0.01
    gamma: float = 1.0
    tiny_random: bool = False


Chooser = Callable[[CandidateChoiceEnv, np.ndarray], int]


def random_chooser(seed: int) -> Chooser:
    rng = np.random.default_rng(seed)

    def choose(env: CandidateChoiceEnv, observation: np.ndarray) -> int:
        valid = np.flatnonzero(split_observation(observation, env.config.k)[0][:, VALID])
        return int(rng.choice(valid)) if len(valid) else 0

    return choose


def prm_greedy(env: CandidateChoiceEnv, observation: np.ndarray) -> int:
    slots = split_observation(observation, env.config.k)[0]
    return int(np.argmax(np.where(slots[:, VALID] > 0, slots[:, PRM], -np.inf)))


def oracle_choice(env: CandidateChoiceEnv, observation: np.ndarray) -> int:
    distances = [steps_to_solve(candidate.state) for candidate in env.candidates]
    reachable = [(d, slot) for slot, d in enumerate(distances) if d is not None]
    return min(reachable)[1] if reachable else prm_greedy(env, observation)


def ppo_chooser(model: PPO) -> Chooser:
    def choose(env: CandidateChoiceEnv, observation: np.ndarray) -> int:
        return int(model.predict(observation, deterministic=True)[0])

    return choose


def load_models(config: PPOChoiceConfig, base: BootstrapConfig) -> tuple[Policy, ValueModel, dict[str, Any]]:
    """pi_0 and V_0 of the bootstrap (built when not cached), or untrained tiny models."""
    if config.tiny_random:
        import torch

        from agents.models.hf_policy import HFPolicy, HFPolicyConfig
        from agents.models.hf_value import HFValueModel
        from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model, build_value_model

        tiny = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)
        tokenizer = build_char_tokenizer()
        torch.manual_seed(0)
        policy = HFPolicy(build_policy_model(tiny, tokenizer), tokenizer, HFPolicyConfig(prompt_format="plain"))
        value = HFValueModel(build_value_model(tiny, tokenizer), tokenizer)
        return policy, value, {"kind": "tiny-random", "policy_parameters": policy.num_parameters}
    result = bootstrap(base)
    policy, value = result.load()
    return policy, value, {
        "kind": "bootstrap",
        "policy_dir": str(result.policy_dir),
        "value_dir": str(result.value_dir),
        "policy_parameters": result.policy_manifest["parameters"],
        "value_parameters": result.value_manifest["parameters"],
    }


def evaluate(env: CandidateChoiceEnv, choose: Chooser, seed: int, greedy_agreement: bool = False) -> dict[str, Any]:
    """Play every problem of `env`'s source once; per-problem outcomes and costs.

    Problem i is reset with seed ``1_000_003 * (seed + 1) + i`` (never a training
    seed), the same for every chooser of this seed.
    """
    for model in (env.policy, env.value):
        if hasattr(model, "clear_cache"):
            model.clear_cache()  # warm caches would make later choosers' tokens look free
    rows, agree, turns = [], 0, 0
    for index in range(len(env.text_env.problems)):
        observation, info = env.reset(seed=1_000_003 * (seed + 1) + index, options={"index": index})
        done, reward = False, 0.0
        while not done:
            action, greedy = choose(env, observation), prm_greedy(env, observation)
            observation, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if greedy_agreement and info.get("chosen") is not None:
                agree += info["chosen"] == greedy  # the slot played: a padded slot plays the best one
                turns += 1
        usage = info["usage"]
        rows.append({
            "problem_id": info["problem_id"], "correct": int(reward), "steps": len(info["steps"]),
            "completion_tokens": usage["policy_completion_tokens"], "prm_tokens": usage["prm_tokens"],
            "total_tokens": usage["total_tokens"],
        })  # fmt: skip
    return {"rows": rows, "greedy_agreement": agree / turns if turns else None}


def make_env(
    config: PPOChoiceConfig, base: BootstrapConfig, split: str, size: int, policy: Policy, value: ValueModel
) -> CandidateChoiceEnv:
    """The wrapper over `size` problems of `split` at the benchmark's level (generator seed 0)."""
    level = config.level or base.difficulty
    kwargs = source_kwargs(base.source, split=split, size=size, seed=0, difficulty=level)
    text_env = ReasoningMathEnv(make_source(base.source, **kwargs), max_steps=config.max_steps)
    choice = CandidateChoiceConfig(k=config.k, temperature=config.temperature, max_new_tokens=config.max_new_tokens)
    return CandidateChoiceEnv(text_env, policy, value, choice)


def run_seed(
    config: PPOChoiceConfig, seed: int, train_env: CandidateChoiceEnv, test_env: CandidateChoiceEnv, progress: bool
) -> dict[str, Any]:
    """Train PPO with `seed`, then play the test problems with every chooser: {"training", "outcomes"}."""
    started = time.time()
    n_steps = min(config.n_steps, config.timesteps)
    model = PPO(
        "MlpPolicy", train_env, n_steps=n_steps, batch_size=min(config.batch_size, n_steps),
        learning_rate=config.learning_rate, ent_coef=config.ent_coef, gamma=config.gamma,
        seed=seed, device="cpu", verbose=0,
    )  # fmt: skip
    model.learn(config.timesteps, progress_bar=progress)
    episodes = list(model.ep_info_buffer)  # the last (up to 100) training episodes
    training = {
        "seed": seed, "timesteps": model.num_timesteps, "seconds": round(time.time() - started, 1),
        "last_episodes_mean_reward": float(np.mean([e["r"] for e in episodes])) if episodes else None,
    }  # fmt: skip
    choosers: dict[str, Chooser] = {"random": random_chooser(seed), "prm_greedy": prm_greedy, "ppo": ppo_chooser(model)}
    if get_task(test_env.text_env.problems[0].task).has_oracle:
        choosers["oracle"] = oracle_choice
    outcomes = {}
    for name, choose in choosers.items():
        started = time.time()
        outcomes[name] = evaluate(test_env, choose, seed, greedy_agreement=name == "ppo")
        outcomes[name]["seconds"] = round(time.time() - started, 1)
    return {"training": training, "outcomes": outcomes}


def run(config: PPOChoiceConfig, progress: bool = True, checkpoints: Path | None = None) -> dict[str, Any]:
    """Train PPO per seed, evaluate every chooser; `progress` shows SB3's bar over each PPO run.

    With `checkpoints`, each finished seed is written there (keyed by the config without
    its seed list and by the model folders) and a rerun reuses it, so a long run resumes
    seed by seed; delete the folder to run every seed again after changing the code.
    """
    path = Path(config.bootstrap) if Path(config.bootstrap).exists() else ROOT / config.bootstrap
    base = from_dict(BootstrapConfig, load_yaml(path), config.bootstrap)
    policy, value, models = load_models(config, base)
    train_env = make_env(config, base, "train", config.train_problems, policy, value)
    test_env = make_env(config, base, "test", config.problems, policy, value)
    key = fingerprint({**dataclasses.asdict(config), "seeds": None, "models": models})  # rebuilt models: a new key
    outcomes: dict[str, dict[int, dict[str, Any]]] = {}
    training = []
    for seed in config.seeds:
        saved = checkpoints / f"seed{seed}-{key}.json" if checkpoints else None
        if saved is not None and saved.is_file():
            done = json.loads(saved.read_text(encoding="utf-8"))
            print(f"seed {seed}: reusing {saved}", flush=True)
        else:
            done = run_seed(config, seed, train_env, test_env, progress)
            if saved is not None:
                write_json_atomically(saved, done)
        training.append(done["training"])
        for name, result in done["outcomes"].items():
            outcomes.setdefault(name, {})[seed] = result
        print(f"seed {seed}: trained {training[-1]['seconds']} s; "
              + ", ".join(f"{name} {np.mean([r['correct'] for r in by_seed[seed]['rows']]):.3f}"
                          for name, by_seed in outcomes.items()), flush=True)  # fmt: skip
    aggregates = []
    for name, by_seed in outcomes.items():
        correct = np.array([[row["correct"] for row in by_seed[seed]["rows"]] for seed in config.seeds]).T
        mean, low, high = confidence_interval(correct, "bootstrap", 0.95, 2000)
        rows = [row for seed in config.seeds for row in by_seed[seed]["rows"]]
        aggregates.append({
            "chooser": name, "accuracy": mean, "ci_low": low, "ci_high": high,
            "accuracy_by_seed": {seed: float(correct[:, i].mean()) for i, seed in enumerate(config.seeds)},
            **{f"{figure}_per_problem": float(np.mean([row[figure] for row in rows]))
               for figure in ("steps", "completion_tokens", "prm_tokens", "total_tokens")},
            "greedy_agreement": float(np.mean([by_seed[seed]["greedy_agreement"] for seed in config.seeds]))
            if name == "ppo" else None,
        })  # fmt: skip
    return {
        "benchmark": "ppo_choice",
        "config": dataclasses.asdict(config),
        "models": models,
        "problems": {"source": base.source, "level": config.level or base.difficulty, "split": "test",
                     "count": config.problems, "ids": [p.id for p in test_env.text_env.problems]},  # fmt: skip
        "ci": {"method": "bootstrap", "level": 0.95, "resamples": 2000, "over": "problems x seeds"},
        "training": training,
        "aggregates": aggregates,
        "runs": {name: {str(seed): result for seed, result in by_seed.items()} for name, by_seed in outcomes.items()},
    }


def format_table(result: dict[str, Any]) -> str:
    config = result["config"]
    lines = [
        f"{result['problems']['count']} test problems ({result['problems']['source']} {result['problems']['level']}) "
        f"x seeds {config['seeds']}; K = {config['k']}; PPO {config['timesteps']} timesteps per seed; "
        f"models: {result['models']['kind']}",
        "",
        "| chooser | accuracy | 95% CI | completion tok/problem | PRM tok/problem | steps/problem |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["aggregates"]:
        name = "oracle (reference)" if row["chooser"] == "oracle" else row["chooser"]
        lines.append(
            f"| {name} | {row['accuracy']:.3f} | [{row['ci_low']:.3f}, {row['ci_high']:.3f}] "
            f"| {row['completion_tokens_per_problem']:.1f} | {row['prm_tokens_per_problem']:.1f} "
            f"| {row['steps_per_problem']:.2f} |"
        )
    agreement = next(row["greedy_agreement"] for row in result["aggregates"] if row["chooser"] == "ppo")
    if agreement is not None:
        lines.append(f"\nPPO picked the PRM-greedy candidate on {agreement:.1%} of its turns (mean over seeds).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = PPOChoiceConfig()
    parser.add_argument("--config", default=defaults.bootstrap, help="bootstrap YAML of pi_0 and V_0")
    parser.add_argument("--level", default=None, help="difficulty level (default: the bootstrap's)")
    parser.add_argument("--timesteps", type=int, default=defaults.timesteps, help="PPO environment steps per seed")
    parser.add_argument("--train-problems", type=int, default=defaults.train_problems)
    parser.add_argument("--problems", type=int, default=defaults.problems, help="held-out test problems")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--k", type=int, default=defaults.k, help="candidates per turn")
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--tiny-random", action="store_true", help="untrained tiny models (plumbing check only)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over PPO training")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="finished seeds, reused by a rerun")
    args = parser.parse_args(argv)
    setup_logging()
    config = dataclasses.replace(
        defaults, bootstrap=args.config, level=args.level, timesteps=args.timesteps, train_problems=args.train_problems,
        problems=args.problems, seeds=tuple(args.seeds), k=args.k, temperature=args.temperature,
        tiny_random=args.tiny_random,
    )  # fmt: skip
    started = time.time()
    result = run(config, progress=not args.no_progress, checkpoints=args.checkpoints)
    result["wall_seconds"] = round(time.time() - started, 1)
    print(format_table(result))
    write_json_atomically(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
