"""Ranking metrics of a PRM: pooled AUROC and AUROC among siblings."""

from __future__ import annotations

import pytest

from agents.evaluation import auroc, grouped_auroc


def test_auroc_counts_ordered_pairs_and_half_ties():
    assert auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.7, 0.2], [1, 0, 1, 0]) == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    with pytest.raises(ValueError, match="positive and one negative"):
        auroc([0.3, 0.4], [1, 1])


def test_grouped_auroc_compares_only_within_a_group():
    # deep nodes score higher than shallow ones: the pooled AUROC loses the
    # cross-depth pair, yet within each parent the right child always wins
    scores = [0.2, 0.1, 0.9, 0.8]
    labels = [1, 0, 1, 0]
    groups = ["shallow", "shallow", "deep", "deep"]
    assert auroc(scores, labels) == pytest.approx(0.75)
    assert grouped_auroc(scores, labels, groups) == 1.0
    assert grouped_auroc([0.2, 0.9, 0.3], [1, 0, 1], ["a", "a", "b"]) == 0.0  # group b has no negative
    assert grouped_auroc([0.2, 0.9], [1, 0], ["a", "b"]) is None
    with pytest.raises(ValueError):
        grouped_auroc([0.2, 0.9], [1, 0], ["a"])


def test_first_move_boards_tell_recall_from_computation():
    """A PRM that knows exactly the training puzzles' boards and says 0.5 elsewhere: perfect on
    training boards and on held-out boards it saw, chance on the others; the exact oracle: 1 everywhere."""
    from agents.evaluation import evaluate_first_move_boards
    from agents.models.base import Scores
    from agents.models.oracle import OracleValue
    from agents.training.planning_data import legal_states
    from reasoning_gym import make_source, solvable

    train = make_source("countdown", split="train", size=60, seed=0).problems
    held_out = make_source("countdown", split="test", size=40, seed=0).problems
    known = {s.value_text: float(solvable(s)) for p in train for s in legal_states(p) if len(s.steps) == 1}

    class Recall:
        num_parameters = 0

        def score(self, states):
            return Scores([known.get(s.value_text, 0.5) for s in states], [0] * len(states))

    recall = evaluate_first_move_boards(Recall(), train, held_out, max_train_states=100)
    assert recall.train == recall.seen == 1.0 and recall.unseen == 0.5
    assert recall.states["train"] == 100 and recall.states["seen"] + recall.states["unseen"] == recall.states["held_out"]
    assert recall.states["seen"] > 0 and recall.states["unseen"] > 0
    assert 0.5 < recall.held_out < 1.0
    exact = evaluate_first_move_boards(OracleValue(), train, held_out)
    assert exact.train == exact.held_out == exact.seen == exact.unseen == 1.0
    assert exact.states["train"] == sum(len(s.steps) == 1 for p in train for s in legal_states(p))  # under the cap: all


def test_solution_outcome_names_the_first_step_that_went_wrong():
    """Planning tasks: the first illegal move, or the first legal move after which the target is
    out of reach; answer tasks: right, wrong or no answer."""
    import random

    from agents.evaluation import solution_outcome
    from agents.search.traces import solution_state
    from reasoning_gym import Problem
    from reasoning_gym.sources.puzzles import puzzle_problem
    from reasoning_gym.tasks.countdown import Puzzle
    from reasoning_gym.tasks.expression import GAME24_RULES

    p24 = puzzle_problem(Puzzle((4, 4, 10, 13), 24, GAME24_RULES), "p", random.Random(0))

    def outcome(text: str) -> str:
        return solution_outcome(solution_state(p24, text))

    assert outcome("Step 1: 13 - 10 = 3\nStep 2: 4 + 4 = 8\nStep 3: 8 * 3 = 24\n") == "right"
    assert outcome("Step 1: 13 - 9 = 4\n") == "illegal move at step 1"  # no 9 in the puzzle
    assert outcome("Step 1: 4 + 4 = 8\nStep 2: 13 - 10 = 4\n") == "illegal move at step 2"  # 13 - 10 is 3
    assert outcome("Step 1: 4 * 4 = 16\n") == "dead end at step 1"  # 10 13 16 cannot make 24
    assert outcome("Step 1: 13 - 10 = 3\nStep 2: 4 - 3 = 1\n") == "dead end at step 2"  # 1 4 cannot
    assert outcome("Step 1: 13 - 10 = 3\nStep 2: 4 + 4 = 8\nStep 3: 8 + 3 = 11\n") == "dead end at step 3"
    assert outcome("Step 1: 4 + 4 = 8\nStep 2: 13 - 10 = 3\n") == "no answer"  # cut off on the way

    word = Problem(id="w", question="What is 2 + 3?", answer="5")
    assert solution_outcome(solution_state(word, "Step 1: 2 + 3 = 5\nStep 2: The answer is 5\n")) == "right"
    assert solution_outcome(solution_state(word, "Step 1: The answer is 6\n")) == "wrong answer"
    assert solution_outcome(solution_state(word, "Step 1: 2 + 3 = 5\n")) == "no answer"
