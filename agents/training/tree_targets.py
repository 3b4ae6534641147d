"""Training data from finished MCTS* trees (ReST-MCTS* data mode, DESIGN "MCTS* in one paragraph").

Input: a `Tree` from `MCTSStar` with ``MCTSStarConfig(data_mode=True)``: every
node that states an answer has been graded against the oracle
(``tree.correct[node]`` True/False). Output, per tree (`label_tree`):

- value rows ``{"text", "target", "problem_id", "node"}`` for the PRM (D_V);
- policy rows ``{"prompt", "completion", "problem_id"}``: every correct trace;
- preference pairs ``{"prompt", "chosen", "rejected", "problem_id"}`` for DPO;
- relative-correctness rows ``{"text", "score", "problem_id", "node"}`` (Li et al.).

Terms. An *ending* is a leaf that is terminal (it states an answer, hit an
episode limit, reached the end gate, or got no valid proposal) or that was
graded; a *correct leaf* is a node with ``correct[node] is True`` (a correct
answer ends the episode: anything below it is ignored). Every other ending
(wrong answer, truncation, dead end, end gate without an answer) is incorrect.
Nodes with no ending in their subtree (open leaves and the search frontier
above them) are on no finished path and are dropped from every output.

Value targets (ReST-MCTS*, Zhang et al. 2024, eq. for v_k; `quality_value`):

    m(n) = 0 if n is a correct leaf, else 1 + min over children c of m(c)
           (infinite when no correct leaf lies below n): the fewest further
           steps from n to a correct leaf in the tree;
    v(root) = 0;
    on a correct path (m(n) finite, r = 0):  v(n) = v(p) + (1 - v(p)) / (m(n) + 1)
    on a wrong branch (m(n) infinite, r = 1): v(n) = max(v(p) - (1 - v(p)) / (M(n) + 1), 0)

where p is n's parent and M(n) is the *inherited* distance: if p lies on a
correct path (p is the branch point), M(n) = m(p) - 1, the distance of the
correct sibling continuation, so v(n) = `wrong_step_value(v(p), m(p))` =
max(v(p) - (1 - v(p)) / m(p), 0); if p is itself wrong, M(n) = M(p): every node of
a wrong subtree keeps the distance m(bp) - 1 inherited at its branch point bp,
so each further wrong step subtracts (1 - v(p)) / m(bp). This follows the
reference implementation (THUDM/ReST-MCTS ``MCTS/base.py``), which gives every
node of a wrong chain its branch point's ``min_steps_to_correct``; that counter
is our m + 1, so the reference subtracts (1 - v(p)) / (m(bp) + 1), one step
milder than the project's `wrong_step_value`. Along a
correct K-step path this gives k / K; values on a wrong branch only fall. The
root is not a sample (its value is fixed at 0). A tree without a correct leaf
gives no value rows: without the oracle's answer in the tree there is no m.

Relative correctness (Li et al. 2025, arXiv 2501.01478, "Enhancing Reasoning
through Process Supervision with Monte Carlo Tree Search"): a step's score is how
much better it does than the steps it competed with at the same node. Our
reconstruction, with rewards from the oracle rather than the PRM:

    q(n)     = (correct endings below n) / (endings below n)    (n's mean reward)
    score(n) = q(n) - sum_{s in S} w_s q(s) / sum_{s in S} w_s

S is the set of n's siblings that have an ending below them, n itself included
(so the baseline is the parent's visit-weighted mean child reward, the way MCTS
backs values up, and a lone child scores 0); w_s = ``tree.visits[s]``, or 1
for all of S when none of S was visited. Every non-root node with an ending
below it gets a score, trees without a correct leaf included (all scores 0).

Policy traces and pairs: a trace is the path from the root to a graded node
(an answer node; in MCTS* always a leaf); its
prompt is the root's text and its completion the rest of the rendered state
(``"Step k: ...\\n"`` lines), so ``prompt + completion == state.text``. Positive
traces end in a correct leaf. Pairs match correct traces with traces that state
a wrong answer (``correct is False``), round-robin: round r pairs the i-th
correct trace with the ((i + r) mod W)-th wrong one, so every combination
appears once and the first pairs use as many distinct traces as possible;
`max_pairs` keeps the first ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.search.tree import NO_PARENT, ROOT, Tree
from agents.training.value_targets import quality_value

INF = math.inf


@dataclass
class TreeTargets:
    """Rows extracted from one or more trees (plain dicts, ready for `datasets.Dataset.from_list`)."""

    values: list[dict[str, Any]] = field(default_factory=list)
    policy: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    relative: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: TreeTargets) -> None:
        self.values.extend(other.values)
        self.policy.extend(other.policy)
        self.pairs.extend(other.pairs)
        self.relative.extend(other.relative)


# --- structure ---------------------------------------------------------------------


def _check_graded(tree: Tree) -> None:
    ungraded = [n for n in range(len(tree)) if tree.answer(n) is not None and tree.correct[n] is None]
    if ungraded:
        raise ValueError(
            f"tree has {len(ungraded)} answer node(s) not graded against the oracle (first: node {ungraded[0]}); "
            "run MCTS* with MCTSStarConfig(data_mode=True) or call tree.grade_answers() first"
        )


def _children(tree: Tree, node: int) -> list[int]:
    """Children that count: none below a correct leaf (a correct answer ends the episode)."""
    return [] if tree.correct[node] is True else tree.children[node]


def _bottom_up(tree: Tree) -> list[int]:
    """Nodes with every child before its parent (ids grow from parent to child, but do not rely on it)."""
    order, stack = [], [ROOT]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(_children(tree, node))
    return order[::-1]


def is_ending(tree: Tree, node: int) -> bool:
    """A finished leaf: correct, or a childless node that is terminal or was graded."""
    if tree.correct[node] is True:
        return True
    return not tree.children[node] and (tree.terminal[node] or tree.correct[node] is not None)


def ending_counts(tree: Tree) -> tuple[list[int], list[int]]:
    """(endings, correct endings) in each node's subtree, the node included."""
    endings, correct = [0] * len(tree), [0] * len(tree)
    for node in _bottom_up(tree):
        if is_ending(tree, node):
            endings[node] = 1
            correct[node] = int(tree.correct[node] is True)
        for child in _children(tree, node):
            endings[node] += endings[child]
            correct[node] += correct[child]
    return endings, correct


def correct_distances(tree: Tree) -> list[float]:
    """m(n): the fewest further steps from each node to a correct leaf (``math.inf`` if none)."""
    distance = [INF] * len(tree)
    for node in _bottom_up(tree):
        if tree.correct[node] is True:
            distance[node] = 0
        else:
            distance[node] = min((distance[c] + 1 for c in _children(tree, node)), default=INF)
    return distance


def node_values(tree: Tree) -> dict[int, float]:
    """The value target v(n) of every kept non-root node (module docstring); {} without a correct leaf."""
    distance = correct_distances(tree)
    if distance[ROOT] == INF:
        return {}
    endings, _ = ending_counts(tree)
    value: dict[int, float] = {ROOT: 0.0}
    inherited: dict[int, float] = {ROOT: distance[ROOT]}  # M(n); equals m(n) on a correct path
    stack = [ROOT]
    while stack:
        parent = stack.pop()
        for node in _children(tree, parent):
            if not endings[node]:
                continue  # on no finished path: dropped, and so is everything below it
            if distance[node] < INF:
                inherited[node] = distance[node]
                value[node] = quality_value(value[parent], int(distance[node]), wrong=False)
            else:
                inherited[node] = distance[parent] - 1 if distance[parent] < INF else inherited[parent]
                value[node] = quality_value(value[parent], int(inherited[node]), wrong=True)
            stack.append(node)
    del value[ROOT]
    return dict(sorted(value.items()))


def step_labels(tree: Tree) -> dict[int, bool]:
    """Whether each kept non-root node lies on a path to a correct leaf (r = 0) or not (r = 1).

    The binary ground truth a PRM is judged by on search trees (AUROC): every node
    with an ending below it, trees without a correct leaf included (all False).
    """
    _check_graded(tree)
    distance = correct_distances(tree)
    endings, _ = ending_counts(tree)
    return {
        n: distance[n] != INF for n in range(len(tree)) if n != ROOT and endings[n] > 0 and _reachable(tree, n)
    }


def relative_correctness(tree: Tree) -> dict[int, float]:
    """score(n) = q(n) minus the visit-weighted mean q of n's scored siblings, n included (module docstring)."""
    endings, correct = ending_counts(tree)
    scores: dict[int, float] = {}
    for parent in range(len(tree)):
        if not endings[parent]:
            continue
        scored = [c for c in _children(tree, parent) if endings[c]]
        if not scored:
            continue
        q = {c: correct[c] / endings[c] for c in scored}
        weights = {c: float(tree.visits[c]) for c in scored}
        if sum(weights.values()) == 0:
            weights = dict.fromkeys(scored, 1.0)
        baseline = sum(weights[c] * q[c] for c in scored) / sum(weights.values())
        for c in scored:
            scores[c] = q[c] - baseline
    return dict(sorted(scores.items()))


# --- rows --------------------------------------------------------------------------


def trace_completion(tree: Tree, node: int) -> str:
    """The steps from the root to `node` as ``"Step k: ...\\n"`` lines (continuing the root's numbering)."""
    return tree.state[node].text[len(tree.state[ROOT].text) :]


def _pair_order(num_chosen: int, num_rejected: int) -> Iterable[tuple[int, int]]:
    for round_ in range(num_rejected):
        for i in range(num_chosen):
            yield i, (i + round_) % num_rejected


def label_tree(tree: Tree, max_pairs: int | None = None) -> TreeTargets:
    """Value rows, positive traces, preference pairs and relative-correctness rows of one graded tree."""
    _check_graded(tree)
    root = tree.state[ROOT]
    problem_id = root.problem.id
    prompt = root.text
    out = TreeTargets()
    out.values = [
        {"text": tree.state[n].value_text, "target": v, "depth": len(tree.state[n].steps), "problem_id": problem_id,
         "node": n}  # fmt: skip
        for n, v in node_values(tree).items()
    ]
    out.relative = [
        {"text": tree.state[n].text, "score": s, "problem_id": problem_id, "node": n}
        for n, s in relative_correctness(tree).items()
    ]
    graded = [n for n in range(len(tree)) if n != ROOT and tree.correct[n] is not None and _reachable(tree, n)]
    chosen = [n for n in graded if tree.correct[n] is True]
    rejected = [n for n in graded if tree.correct[n] is False]
    out.policy = [
        {"prompt": prompt, "completion": trace_completion(tree, n), "problem_id": problem_id} for n in chosen
    ]
    pairs = _pair_order(len(chosen), len(rejected))
    for k, (i, j) in enumerate(pairs):
        if max_pairs is not None and k >= max_pairs:
            break
        out.pairs.append(
            {
                "prompt": prompt,
                "chosen": trace_completion(tree, chosen[i]),
                "rejected": trace_completion(tree, rejected[j]),
                "problem_id": problem_id,
            }
        )
    return out


def _reachable(tree: Tree, node: int) -> bool:
    """False for nodes hidden below a correct leaf."""
    parent = tree.parent[node]
    while parent != NO_PARENT:
        if tree.correct[parent] is True:
            return False
        parent = tree.parent[parent]
    return True


def label_trees(trees: Iterable[Tree], max_pairs: int | None = None) -> TreeTargets:
    """`label_tree` over many trees, rows concatenated in tree order."""
    out = TreeTargets()
    for tree in trees:
        out.extend(label_tree(tree, max_pairs=max_pairs))
    return out
