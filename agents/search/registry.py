"""`make_agent`: build a search agent by name from a config mapping (a YAML section, a sweep).

Names: ``"cot"``, ``"self_consistency"``, ``"best_of_n"``, ``"beam"``, ``"mcts_star"``.
Each agent's options are one dataclass; a key it does not have is a
`agents.config.ConfigError` naming the key and listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agents.config import ConfigError, from_dict
from agents.models.base import Policy, ValueModel
from agents.search.agent import SearchAgent
from agents.search.beam_search import BeamSearch, BeamSearchConfig
from agents.search.best_of_n import BestOfN, BestOfNConfig
from agents.search.cot import ChainOfThought, CoTConfig
from agents.search.mcts_star import MCTSStar, MCTSStarConfig
from agents.search.self_consistency import SelfConsistency, SelfConsistencyConfig

# name -> (config dataclass, factory(policy, value, config))
AGENTS: dict[str, tuple[type, Callable[[Policy, ValueModel | None, Any], SearchAgent]]] = {
    "cot": (CoTConfig, lambda policy, value, config: ChainOfThought(policy, config)),
    "self_consistency": (SelfConsistencyConfig, lambda policy, value, config: SelfConsistency(policy, config)),
    "best_of_n": (BestOfNConfig, BestOfN),
    "beam": (BeamSearchConfig, BeamSearch),
    "mcts_star": (MCTSStarConfig, MCTSStar),
}
NEEDS_VALUE = frozenset({"best_of_n", "beam", "mcts_star"})


def make_agent(
    name: str, policy: Policy, value: ValueModel | None = None, config: Mapping[str, Any] | None = None
) -> SearchAgent:
    """The agent `name` with its config dataclass built from `config` (defaults when None).

    Raises:
        ConfigError: unknown agent name, a key the agent's config does not have,
            an invalid value, or a missing value model for a PRM-guided agent.
    """
    if name not in AGENTS:
        raise ConfigError(f"unknown search agent {name!r}; choose one of {sorted(AGENTS)}")
    if name in NEEDS_VALUE and value is None:
        raise ConfigError(f"search agent {name!r} needs a value model (PRM)")
    config_cls, factory = AGENTS[name]
    return factory(policy, value, from_dict(config_cls, dict(config or {}), where=f"{name} config"))
