"""Held-out evaluation of a policy (greedy, pass@k, maj@k) and of a PRM (AUROC, MAE; against
exact solvability on planning tasks)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from agents.models.base import Policy, SamplingConfig, ValueModel
from agents.models.hf_value import HFValueModel
from agents.search.traces import prefixes, solution_state
from agents.search.voting import majority
from reasoning_gym import (
    Problem,
    ReasoningState,
    Verifier,
    default_verifier,
    grade,
    grade_answer,
    solvable,
    task_of,
)


@dataclass(frozen=True)
class PolicyEvaluation:
    """Accuracy of a policy on a problem set (fractions in [0, 1]).

    `greedy_outcomes` counts what became of the greedy solutions (`solution_outcome`).
    """

    problems: int
    greedy: float
    pass_at_k: float
    maj_at_k: float
    k: int
    completion_tokens: int
    greedy_outcomes: dict[str, int] = field(default_factory=dict)


def solution_outcome(state: ReasoningState, verifier: Verifier | None = None) -> str:
    """What became of one solution: ``"right"``, or why it failed.

    Planning tasks name the first step that went wrong: ``"illegal move at step k"``
    (the task rejected it: a number not left, wrong arithmetic, a wrong list of
    numbers left) or ``"dead end at step k"`` (a legal step, a wrong final answer
    included, after which the target can no longer be made: `solvable`). The two
    call for different cures: the rules are learnt from any correct trace, while
    avoiding dead ends takes looking ahead.
    Otherwise (answer tasks, or a planning solution cut off before its end):
    ``"wrong answer"`` or ``"no answer"``.
    """
    if grade(state, verifier):
        return "right"
    task = task_of(state.problem)
    if task.has_oracle:
        for k, prefix in enumerate(prefixes(state), start=1):
            if task.illegal(prefix.problem, prefix.steps) is not None:
                return f"illegal move at step {k}"
            if not solvable(prefix):
                return f"dead end at step {k}"
    return "no answer" if state.answer is None else "wrong answer"


def evaluate_policy(
    policy: Policy,
    problems: Sequence[Problem],
    k: int = 8,
    temperature: float = 0.8,
    seed: int = 0,
    max_new_tokens: int = 320,
    batch_problems: int = 32,
    verifier: Verifier | None = None,
    show_progress: bool = True,
) -> PolicyEvaluation:
    """Greedy accuracy, pass@k (any of k samples right) and maj@k (majority vote right).

    Set k=0 to measure greedy accuracy only.
    """
    verifier = verifier or default_verifier()
    sampling = SamplingConfig(temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)
    greedy_sampling = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
    pass_right = maj_right = tokens = 0
    outcomes: Counter[str] = Counter()
    for start in tqdm(range(0, len(problems), batch_problems), desc="evaluate policy", disable=not show_progress):
        chunk = list(problems[start : start + batch_problems])
        roots = [ReasoningState(problem) for problem in chunk]
        greedy = policy.sample_solutions(roots, 1, greedy_sampling)
        tokens += greedy.total_completion_tokens
        outcomes.update(solution_outcome(solution_state(p, row[0]), verifier) for p, row in zip(chunk, greedy.texts))
        if k <= 0:
            continue
        samples = policy.sample_solutions(roots, k, sampling)
        tokens += samples.total_completion_tokens
        for problem, row in zip(chunk, samples.texts):
            states = [solution_state(problem, text) for text in row]
            pass_right += any(grade(state, verifier) for state in states)
            voted = majority([state.answer for state in states])
            maj_right += voted is not None and grade_answer(problem, voted, verifier)
    count = max(1, len(problems))
    return PolicyEvaluation(
        len(problems), outcomes["right"] / count, pass_right / count, maj_right / count, k, tokens, dict(outcomes)
    )


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (probability a positive outscores a negative; ties count half)."""
    scores_array, labels_array = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    positives, negatives = scores_array[labels_array], scores_array[~labels_array]
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("AUROC needs at least one positive and one negative example")
    wins, pairs = _ordered_pairs(positives, negatives)
    return wins / pairs


def grouped_auroc(scores: Sequence[float], labels: Sequence[int], groups: Sequence[Hashable]) -> float | None:
    """AUROC over positive-negative pairs within the same group only (None if no group has both).

    With groups = the parent node, this is the sibling AUROC of a PRM on search
    trees: how often it ranks a child on a path to a correct answer above a
    sibling that is not, which is the choice tree search makes. The pooled AUROC
    also compares nodes at different depths, where a PRM whose values rise with
    depth (as the quality-value targets do) loses pairs that search never faces.
    """
    by_group: dict[Hashable, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for score, label, group in zip(scores, labels, groups, strict=True):
        by_group[group][0 if label else 1].append(score)
    wins = pairs = 0.0
    for positives, negatives in by_group.values():
        if positives and negatives:
            group_wins, group_pairs = _ordered_pairs(np.asarray(positives), np.asarray(negatives))
            wins, pairs = wins + group_wins, pairs + group_pairs
    return wins / pairs if pairs else None


def _ordered_pairs(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, float]:
    """(positive-negative pairs ordered correctly, ties counting half; all pairs)."""
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float(greater + 0.5 * ties), float(len(positives) * len(negatives))


@dataclass(frozen=True)
class ValueEvaluation:
    """How well a PRM separates correct from corrupted next steps, and fits the targets."""

    samples: int
    auroc: float
    mae: float


def evaluate_value_model(value_model: HFValueModel, problems: Sequence[Problem], seed: int = 0) -> ValueEvaluation:
    """AUROC (correct prefixes vs. corrupted next steps) and MAE to the quality-value targets."""
    from agents.training.bootstrap_data import value_samples  # data builders live with training

    rng = random.Random(seed)
    texts, targets, labels = [], [], []
    for problem in problems:
        samples = value_samples(problem, rng)
        correct = len(problem.steps)  # value_samples lists the K correct prefixes first
        for index, (text, target) in enumerate(samples):
            texts.append(text)
            targets.append(target)
            labels.append(int(index < correct))
    predicted = value_model.score_texts(texts)
    mae = float(np.mean(np.abs(np.asarray(predicted) - np.asarray(targets))))
    return ValueEvaluation(len(texts), auroc(predicted, labels), mae)


@dataclass(frozen=True)
class OracleValueEvaluation:
    """How well a value model ranks states by exact solvability (planning tasks).

    Attributes:
        states: distinct states scored (every prefix of the policy's samples).
        solvable_share: fraction of them from which the target can still be made.
        auroc: pooled AUROC against solvability (None when every state is of one kind).
        sibling_auroc: AUROC over pairs with the same parent state (the choice
            tree search makes); None when no parent has both kinds of children.
        by_depth: {steps taken: AUROC among states of that depth (None if one-sided)}.
        calibration: reliability bins, each ``{"low", "high", "count",
            "mean_value", "solvable"}``: the mean predicted value and the fraction
            solvable of the states whose value falls in [low, high).
    """

    states: int
    solvable_share: float
    auroc: float | None
    sibling_auroc: float | None
    by_depth: dict[int, float | None]
    calibration: list[dict[str, float]]


def evaluate_value_against_oracle(
    value_model: ValueModel,
    policy: Policy,
    problems: Sequence[Problem],
    samples: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    max_new_tokens: int = 160,
    bins: int = 10,
    show_progress: bool = True,
) -> OracleValueEvaluation:
    """Score every state of `policy`'s `samples` solutions per problem and compare with `solvable`.

    The states are the policy's own (wrong moves and illegal steps included), as
    the issue of "how good is this PRM for search" needs: the states search meets.
    """
    sampling = SamplingConfig(temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)
    states: dict[str, tuple[ReasoningState, str]] = {}
    for start in tqdm(range(0, len(problems), 32), desc="sample states", disable=not show_progress):
        chunk = list(problems[start : start + 32])
        generation = policy.sample_solutions([ReasoningState(p) for p in chunk], samples, sampling)
        for problem, texts in zip(chunk, generation.texts):
            for text in texts:
                trace = solution_state(problem, text)
                for state in prefixes(trace):
                    states.setdefault(state.text, (state, ReasoningState(problem, state.steps[:-1]).text))
    ordered = list(states.values())
    values = value_model.score([state for state, _ in ordered]).values
    labels = [int(solvable(state)) for state, _ in ordered]
    depths = [len(state.steps) for state, _ in ordered]
    by_depth: dict[int, float | None] = {}
    for depth in sorted(set(depths)):
        chosen = [k for k, d in enumerate(depths) if d == depth]
        kinds = {labels[k] for k in chosen}
        by_depth[depth] = auroc([values[k] for k in chosen], [labels[k] for k in chosen]) if len(kinds) == 2 else None
    edges = np.linspace(0.0, 1.0, bins + 1)
    calibration = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = [k for k, v in enumerate(values) if low <= v < high or (high == 1.0 and v == 1.0)]
        if inside:
            calibration.append({
                "low": float(low), "high": float(high), "count": len(inside),
                "mean_value": float(np.mean([values[k] for k in inside])),
                "solvable": float(np.mean([labels[k] for k in inside])),
            })
    return OracleValueEvaluation(
        states=len(ordered),
        solvable_share=float(np.mean(labels)) if labels else 0.0,
        auroc=auroc(values, labels) if len(set(labels)) == 2 else None,
        sibling_auroc=grouped_auroc(values, labels, [parent for _, parent in ordered]),
        by_depth=by_depth,
        calibration=calibration,
    )


@dataclass(frozen=True)
class FirstMoveBoards:
    """How well a value model ranks first-move boards by exact solvability, on training
    puzzles and on held-out ones, split by whether the board occurs in training.

    A board is what the PRM reads (``ReasoningState.value_text``: the numbers left
    and the target), so a held-out puzzle's first move can lead to a board some
    training puzzle also reaches. Where ``seen`` is high and ``unseen`` near 0.5,
    the PRM recalls boards and does not compute them; where ``train`` itself is
    low, it has not even fit the boards it was trained on.

    Attributes:
        train, held_out, seen, unseen: AUROC against solvability (None if one-sided)
            on first-move states of training puzzles, of held-out puzzles, and of
            held-out puzzles whose board does / does not occur among the training
            puzzles' first-move boards.
        states: ``{"train", "held_out", "seen", "unseen"}`` -> states scored.
    """

    train: float | None
    held_out: float | None
    seen: float | None
    unseen: float | None
    states: dict[str, int]


def evaluate_first_move_boards(
    value_model: ValueModel,
    train_problems: Sequence[Problem],
    held_out_problems: Sequence[Problem],
    max_train_states: int = 3000,
    seed: int = 0,
) -> FirstMoveBoards:
    """Score every legal first move of each problem (planning tasks; a seeded sample of
    at most `max_train_states` of the training ones) and compare with `solvable`."""
    from agents.training.planning_data import legal_states  # the training data's own enumeration

    def first_moves(problems: Sequence[Problem]) -> list[ReasoningState]:
        return [state for problem in problems for state in legal_states(problem) if len(state.steps) == 1]

    train = first_moves(train_problems)
    known = {state.value_text for state in train}
    if len(train) > max_train_states:
        train = random.Random(seed).sample(train, max_train_states)
    held_out = first_moves(held_out_problems)
    train_values = value_model.score(train).values if train else []
    held_out_values = value_model.score(held_out).values if held_out else []
    seen = [state.value_text in known for state in held_out]

    def ranked(states: Sequence[ReasoningState], values: Sequence[float]) -> float | None:
        labels = [int(solvable(state)) for state in states]
        return auroc(values, labels) if len(set(labels)) == 2 else None

    def part(wanted: bool) -> tuple[list[ReasoningState], list[float]]:
        kept = [k for k, was_seen in enumerate(seen) if was_seen == wanted]
        return [held_out[k] for k in kept], [held_out_values[k] for k in kept]

    return FirstMoveBoards(
        train=ranked(train, train_values),
        held_out=ranked(held_out, held_out_values),
        seen=ranked(*part(True)),
        unseen=ranked(*part(False)),
        states={"train": len(train), "held_out": len(held_out), "seen": sum(seen), "unseen": len(seen) - sum(seen)},
    )
