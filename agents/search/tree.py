"""`Tree`: a search tree as one flat record indexed by node id (after mctx's `Tree`).

Node 0 is the root. Every per-node field is a list with one entry per node, so
a node is an integer and the whole tree is plain data: easy to export, to test
and to label. The MCTS* search writes it; the value-target labeller reads it
(`parent`, `children`, `depth`, `path`, `leaves`, `correct`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from reasoning_gym import ReasoningState, Verifier, grade

ROOT = 0
NO_PARENT = -1


@dataclass
class Tree:
    """Per-node lists, all of length N (the number of nodes).

    Attributes:
        state: the partial solution at each node (root: the problem, no steps).
        parent: the parent's id; ``NO_PARENT`` for the root.
        children: ids of each node's children, in creation order.
        prm: the PRM's raw score of the node (None for the root, never scored).
        value: the search value V: the PRM score, mixed with roll-forward values
            for simulated leaves and replaced by the visit-weighted mean of the
            children's values once children are visited (root starts at 0).
        visits: visit counts n.
        terminal: no further expansion: the node states an answer, hit an episode
            limit, reached the search's value gate, or got no valid proposal.
        expanded: children were proposed for the node.
        correct: the answer checked against the oracle (`grade_answers`); None
            until checked, and for nodes that state no answer.
    """

    state: list[ReasoningState]
    parent: list[int] = field(default_factory=lambda: [NO_PARENT])
    children: list[list[int]] = field(default_factory=lambda: [[]])
    prm: list[float | None] = field(default_factory=lambda: [None])
    value: list[float] = field(default_factory=lambda: [0.0])
    visits: list[int] = field(default_factory=lambda: [0])
    terminal: list[bool] = field(default_factory=lambda: [False])
    expanded: list[bool] = field(default_factory=lambda: [False])
    correct: list[bool | None] = field(default_factory=lambda: [None])

    @classmethod
    def new(cls, root: ReasoningState) -> Tree:
        """A tree holding only `root`."""
        return cls(state=[root])

    def add(self, parent: int, state: ReasoningState, prm: float, terminal: bool) -> int:
        """Append a child of `parent` with PRM score `prm`; returns its id."""
        node = len(self.state)
        self.state.append(state)
        self.parent.append(parent)
        self.children.append([])
        self.children[parent].append(node)
        self.prm.append(prm)
        self.value.append(prm)
        self.visits.append(0)
        self.terminal.append(terminal)
        self.expanded.append(False)
        self.correct.append(None)
        return node

    def __len__(self) -> int:
        return len(self.state)

    # --- structure ---------------------------------------------------------------

    def step(self, node: int) -> str | None:
        """The step that led from the parent to `node` (None for the root)."""
        return None if node == ROOT else self.state[node].steps[-1]

    def answer(self, node: int) -> str | None:
        """The final answer `node`'s last step states, if any."""
        return self.state[node].answer

    def depth(self, node: int) -> int:
        """Steps from the root to `node`."""
        return len(self.state[node].steps) - len(self.state[ROOT].steps)

    def path(self, node: int) -> list[int]:
        """Node ids from the root down to `node`, both included."""
        path = [node]
        while self.parent[path[-1]] != NO_PARENT:
            path.append(self.parent[path[-1]])
        return path[::-1]

    def node_of(self, state: ReasoningState) -> int | None:
        """The id of the node holding `state` (e.g. a search's chosen trace), or None."""
        return next((node for node in range(len(self)) if self.state[node] == state), None)

    def leaves(self) -> list[int]:
        """Nodes without children (the root alone is a leaf of an empty tree)."""
        return [node for node in range(len(self)) if not self.children[node]]

    def open_leaves(self) -> list[int]:
        """Leaves that can still be expanded."""
        return [node for node in self.leaves() if not self.terminal[node]]

    def saturated(self, node: int) -> bool:
        """An expanded, non-terminal node whose children are all terminal."""
        return self.expanded[node] and not self.terminal[node] and all(self.terminal[c] for c in self.children[node])

    def expandable(self, widen: bool = False) -> bool:
        """Whether any node can still be expanded: an open leaf, or with `widen` a saturated node."""
        return bool(self.open_leaves()) or (widen and any(self.saturated(node) for node in range(len(self))))

    # --- oracle ------------------------------------------------------------------

    def grade_answers(self, verifier: Verifier | None = None) -> None:
        """Check every node that states an answer against the oracle (fills `correct`)."""
        for node in range(len(self)):
            if self.answer(node) is not None:
                self.correct[node] = grade(self.state[node], verifier)

    # --- export ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the problem and one record per node, in id order."""
        problem = self.state[ROOT].problem
        nodes = [
            {
                "id": node,
                "parent": self.parent[node],
                "children": list(self.children[node]),
                "depth": self.depth(node),
                "step": self.step(node),
                "prm": self.prm[node],
                "value": self.value[node],
                "visits": self.visits[node],
                "terminal": self.terminal[node],
                "answer": self.answer(node),
                "correct": self.correct[node],
            }
            for node in range(len(self))
        ]
        return {"problem_id": problem.id, "question": problem.question, "nodes": nodes}

    def to_json(self, **dumps_kwargs: Any) -> str:
        """`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), **dumps_kwargs)
