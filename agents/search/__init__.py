"""Search agents at an equal budget: MCTS*, beam search, Best-of-N, self-consistency, CoT.

One algorithm per file; every agent solves many problems at once in rounds
(`active` of them in play, refilled as they finish: `scheduler.py`) under a
per-problem `Budget` and returns `SearchResult`s (see `agent.py`).
"""

from agents.search.agent import SearchAgent, SearchResult, play_episode
from agents.search.beam_search import BeamSearch, BeamSearchConfig
from agents.search.best_of_n import BestOfN, BestOfNConfig
from agents.search.budget import Budget, Usage
from agents.search.cot import ChainOfThought, CoTConfig
from agents.search.mcts_star import MCTSStar, MCTSStarConfig, backup, simulate, uct
from agents.search.registry import AGENTS, make_agent
from agents.search.self_consistency import SelfConsistency, SelfConsistencyConfig
from agents.search.tree import Tree

__all__ = [
    "AGENTS",
    "BeamSearch",
    "BeamSearchConfig",
    "BestOfN",
    "BestOfNConfig",
    "Budget",
    "ChainOfThought",
    "CoTConfig",
    "MCTSStar",
    "MCTSStarConfig",
    "SearchAgent",
    "SearchResult",
    "SelfConsistency",
    "SelfConsistencyConfig",
    "Tree",
    "Usage",
    "backup",
    "make_agent",
    "play_episode",
    "simulate",
    "uct",
]
