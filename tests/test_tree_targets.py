"""Value targets, traces, pairs and relative correctness from hand-built MCTS* trees (numbers by hand)."""

from __future__ import annotations

import pytest
from scripted import ScriptedPolicy, ScriptedPRM

from agents.search import Budget, MCTSStar, MCTSStarConfig, Tree
from agents.training.tree_targets import (
    correct_distances,
    label_tree,
    label_trees,
    node_values,
    relative_correctness,
    step_labels,
)
from agents.training.value_targets import wrong_step_value
from reasoning_gym import Problem, ReasoningState, render_state

TOY = Problem("toy", "What is 2 + 3 * 4?", "14")
RIGHT, WRONG = "The answer is 14", "The answer is 12"


def new_tree() -> Tree:
    return Tree.new(ReasoningState(TOY))


def grow(tree: Tree, parent: int, step: str, terminal: bool | None = None, visits: int = 0) -> int:
    """Add `step` under `parent`; answer steps are terminal unless told otherwise."""
    state = ReasoningState(TOY, tree.state[parent].steps + (step,))
    node = tree.add(parent, state, 0.5, terminal=state.answer is not None if terminal is None else terminal)
    tree.visits[node] = visits
    tree.expanded[parent] = True
    return node


def chain(tree: Tree, parent: int, steps: list[str]) -> list[int]:
    nodes = []
    for step in steps:
        parent = grow(tree, parent, step)
        nodes.append(parent)
    return nodes


def correct_path(tree: Tree, k: int) -> list[int]:
    """A correct k-step solution from the root: k - 1 computation steps, then the right answer."""
    return chain(tree, 0, [f"step {i}" for i in range(1, k)] + [RIGHT])


# --- value targets ------------------------------------------------------------------


def test_correct_four_step_path_gets_quarters():
    tree = new_tree()
    nodes = correct_path(tree, 4)
    tree.grade_answers()
    assert correct_distances(tree)[0] == 4
    values = node_values(tree)
    assert list(values) == nodes
    assert [values[n] for n in nodes] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    rows = label_tree(tree).values
    assert [row["target"] for row in rows] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rows[1]["text"] == render_state(TOY.question, ("step 1", "step 2"))
    assert {row["problem_id"] for row in rows} == {"toy"} and [row["node"] for row in rows] == nodes


def test_wrong_child_gets_negative_branch_of_its_branch_point():
    tree = new_tree()
    path = correct_path(tree, 6)  # values 1/6 .. 6/6; node k has distance 6 - k
    branch = path[3]  # v = 4/6, m = 2
    wrong = chain(tree, branch, ["7 * 7 = 50", "50 - 1 = 49", "The answer is 49"])
    wrong_answer = grow(tree, path[4], WRONG)  # under v = 5/6, m = 1
    tree.grade_answers()
    values = node_values(tree)
    v, m = 4 / 6, 2
    assert values[wrong[0]] == pytest.approx(max(0.0, v - (1 - v) / m)) == pytest.approx(0.5)
    assert values[wrong[0]] == pytest.approx(wrong_step_value(v, m))
    # below a wrong node the inherited distance stays m - 1 = 1: subtract (1 - v) / m again
    assert values[wrong[1]] == pytest.approx(0.5 - 0.5 / 2) == pytest.approx(0.25)
    assert values[wrong[2]] == 0.0  # max(0.25 - 0.75 / 2, 0)
    assert values[wrong_answer] == pytest.approx(wrong_step_value(5 / 6, 1)) == pytest.approx(4 / 6)
    assert [values[n] for n in path] == pytest.approx([k / 6 for k in range(1, 7)])


def test_step_labels_mark_paths_to_a_correct_leaf():
    tree = new_tree()
    path = correct_path(tree, 3)
    wrong = chain(tree, path[0], ["7 * 7 = 50", WRONG])
    open_leaf = grow(tree, path[1], "open step")  # no ending below: not labelled
    hidden = grow(tree, path[2], "after the answer")  # below a correct leaf: not labelled
    tree.grade_answers()
    labels = step_labels(tree)
    assert labels == {path[0]: True, path[1]: True, path[2]: True, wrong[0]: False, wrong[1]: False}
    assert open_leaf not in labels and hidden not in labels


def test_tree_without_a_correct_leaf_gives_no_value_samples():
    tree = new_tree()
    a = grow(tree, 0, "2 + 3 = 5", visits=1)
    grow(tree, a, "The answer is 5", visits=1)
    grow(tree, 0, WRONG, visits=1)
    tree.grade_answers()
    targets = label_tree(tree)
    assert targets.values == [] and targets.policy == [] and targets.pairs == []
    assert node_values(tree) == {}
    assert [row["score"] for row in targets.relative] == [0.0, 0.0, 0.0]  # nothing beats anything


def test_dangling_non_terminal_nodes_are_dropped():
    tree = new_tree()
    path = correct_path(tree, 4)
    open_leaf = grow(tree, path[0], "open step")  # never expanded, not terminal
    frontier = grow(tree, 0, "3 * 4 = 12")
    frontier_leaf = grow(tree, frontier, "12 + 1 = 13")  # the whole branch ends in an open leaf
    truncated = grow(tree, path[1], "12 * 12 = 144", terminal=True)  # hit a limit: an incorrect ending
    tree.grade_answers()
    values = node_values(tree)
    assert set(values) == set(path) | {truncated}
    assert values[truncated] == pytest.approx(wrong_step_value(0.5, 2))
    scored = relative_correctness(tree)
    assert not {open_leaf, frontier, frontier_leaf} & set(scored)
    assert {row["node"] for row in label_tree(tree).values} == set(path) | {truncated}


def test_two_correct_leaves_at_different_depths_use_the_fewest_steps():
    tree = new_tree()
    a = grow(tree, 0, "3 * 4 = 12")
    short = grow(tree, a, RIGHT)  # 1 step from a
    long_ = chain(tree, a, ["12 + 1 = 13", "13 + 1 = 14", RIGHT])  # 3 steps from a
    tree.grade_answers()
    distance = correct_distances(tree)
    assert distance[a] == 1 and distance[0] == 2 and distance[long_[0]] == 2
    values = node_values(tree)
    assert values[a] == pytest.approx(0.5)  # m = 1, not 3 (which would give 0.25)
    assert values[short] == pytest.approx(1.0)
    # the longer correct continuation still counts as correct (r = 0), with its own m
    assert [values[n] for n in long_] == pytest.approx([0.5 + 0.5 / 3, 2 / 3 + (1 / 3) / 2, 1.0])


def test_ungraded_tree_is_refused():
    tree = new_tree()
    correct_path(tree, 2)
    with pytest.raises(ValueError, match="data_mode=True"):
        label_tree(tree)


# --- relative correctness -----------------------------------------------------------


def small_tree() -> tuple[Tree, dict[str, int]]:
    """root (4 visits): a (3 visits: a1 right 1 visit, a2 wrong 1, a3 wrong 0), b (1 visit: b1 right 1)."""
    tree = new_tree()
    tree.visits[0] = 4
    n = {"a": grow(tree, 0, "2 + 3 = 5", visits=3), "b": grow(tree, 0, "3 * 4 = 12", visits=1)}
    n["a1"] = grow(tree, n["a"], RIGHT, visits=1)
    n["a2"] = grow(tree, n["a"], WRONG, visits=1)
    n["a3"] = grow(tree, n["a"], "The answer is 5", visits=0)
    n["b1"] = grow(tree, n["b"], RIGHT, visits=1)
    tree.grade_answers()
    return tree, n


def test_relative_correctness_arithmetic():
    tree, n = small_tree()
    scores = relative_correctness(tree)
    # q(a) = 1/3, q(b) = 1; root baseline (3 * 1/3 + 1 * 1) / 4 = 1/2
    assert scores[n["a"]] == pytest.approx(1 / 3 - 1 / 2)
    assert scores[n["b"]] == pytest.approx(1 / 2)
    # under a: q = 1, 0, 0 with visits 1, 1, 0: baseline 1/2
    assert scores[n["a1"]] == pytest.approx(0.5)
    assert scores[n["a2"]] == pytest.approx(-0.5) and scores[n["a3"]] == pytest.approx(-0.5)
    assert scores[n["b1"]] == 0.0  # a lone child is its own baseline
    rows = label_tree(tree).relative
    assert [row["node"] for row in rows] == sorted(n.values())
    assert rows[0]["text"] == tree.state[n["a"]].text and rows[0]["problem_id"] == "toy"


def test_relative_correctness_weights_uniformly_when_no_sibling_was_visited():
    tree, n = small_tree()
    for key in ("a1", "a2", "a3"):
        tree.visits[n[key]] = 0
    scores = relative_correctness(tree)
    assert scores[n["a1"]] == pytest.approx(1 - 1 / 3) and scores[n["a2"]] == pytest.approx(-1 / 3)


# --- traces and pairs ---------------------------------------------------------------


def test_positive_traces_and_pairs():
    tree, n = small_tree()
    targets = label_tree(tree)
    prompt = render_state(TOY.question, ())
    assert targets.policy == [
        {"prompt": prompt, "completion": f"Step 1: 2 + 3 = 5\nStep 2: {RIGHT}\n", "problem_id": "toy"},
        {"prompt": prompt, "completion": f"Step 1: 3 * 4 = 12\nStep 2: {RIGHT}\n", "problem_id": "toy"},
    ]
    for row, node in zip(targets.policy, (n["a1"], n["b1"])):
        assert row["prompt"] + row["completion"] == tree.state[node].text
    text = {node: tree.state[node].text[len(prompt) :] for node in n.values()}
    # round-robin: (a1, a2), (b1, a3), then (a1, a3), (b1, a2)
    assert [(p["chosen"], p["rejected"]) for p in targets.pairs] == [
        (text[n["a1"]], text[n["a2"]]),
        (text[n["b1"]], text[n["a3"]]),
        (text[n["a1"]], text[n["a3"]]),
        (text[n["b1"]], text[n["a2"]]),
    ]
    assert all(p["prompt"] == prompt and p["problem_id"] == "toy" for p in targets.pairs)
    assert len(label_tree(tree, max_pairs=2).pairs) == 2
    both = label_trees([tree, small_tree()[0]])
    assert len(both.policy) == 4 and len(both.pairs) == 8 and len(both.values) == 2 * len(targets.values)


# --- a real MCTS* tree ---------------------------------------------------------------


def test_labels_a_data_mode_mcts_tree():
    a, b, c = "2 + 3 = 5", "3 * 4 = 12", "2 * 4 = 8"
    b1, b2, b3 = "2 + 12 = 14", "12 - 2 = 10", "12 + 2 = 15"
    steps = {(): [a, b, c], (b,): [b1, b2, b3], (b, b1): [RIGHT, "14 - 0 = 14", WRONG]}
    values = {
        (a,): 0.3, (b,): 0.7, (c,): 0.2,
        (b, b1): 0.8, (b, b2): 0.4, (b, b3): 0.1,
        (b, b1, RIGHT): 0.95, (b, b1, "14 - 0 = 14"): 0.5, (b, b1, WRONG): 0.3,
    }  # fmt: skip
    config = MCTSStarConfig(
        iterations=4, data_mode=True, exploration=0.5, unvisited_bonus=0.0, roll_forward_steps=0, max_new_tokens=5
    )
    tree = MCTSStar(ScriptedPolicy(steps), ScriptedPRM(values), config).solve([TOY], Budget())[0].tree
    by_steps = {tree.state[node].steps: node for node in range(len(tree))}
    targets = label_tree(tree)
    # kept: the path b, b1, RIGHT and the wrong answer; a, c, b2, b3 and below "14 - 0 = 14" are open leaves
    got = {tree.state[row["node"]].steps: row["target"] for row in targets.values}
    assert got == pytest.approx(
        {(b,): 1 / 3, (b, b1): 2 / 3, (b, b1, RIGHT): 1.0, (b, b1, WRONG): wrong_step_value(2 / 3, 1)}
    )
    assert targets.policy == [
        {"prompt": render_state(TOY.question, ()), "completion": f"Step 1: {b}\nStep 2: {b1}\nStep 3: {RIGHT}\n",
         "problem_id": "toy"}
    ]  # fmt: skip
    assert len(targets.pairs) == 1 and targets.pairs[0]["rejected"].endswith(f"Step 3: {WRONG}\n")
    scores = {tree.state[row["node"]].steps: row["score"] for row in targets.relative}
    assert set(scores) == {(b,), (b, b1), (b, b1, RIGHT), (b, b1, WRONG)}
    assert scores[(b,)] == 0.0 and scores[(b, b1)] == 0.0  # the only finished branch at their level
    # RIGHT was visited once (iteration 4 passed over it to expand "14 - 0 = 14"), WRONG never:
    # the baseline is q(RIGHT) = 1
    assert tree.visits[by_steps[(b, b1, RIGHT)]] == 1 and tree.visits[by_steps[(b, b1, WRONG)]] == 0
    assert tree.expanded[by_steps[(b, b1, "14 - 0 = 14")]]
    assert scores[(b, b1, RIGHT)] == 0.0 and scores[(b, b1, WRONG)] == -1.0
