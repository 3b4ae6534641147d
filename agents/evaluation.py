"""Held-out evaluation of a policy (greedy, pass@k, maj@k) and of a PRM (AUROC, MAE)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from agents.models.base import Policy, SamplingConfig
from agents.models.hf_value import HFValueModel
from agents.search.traces import solution_state
from agents.search.voting import majority
from reasoning_gym import Problem, ReasoningState, Verifier, default_verifier, grade, grade_answer


@dataclass(frozen=True)
class PolicyEvaluation:
    """Accuracy of a policy on a problem set (fractions in [0, 1])."""

    problems: int
    greedy: float
    pass_at_k: float
    maj_at_k: float
    k: int
    completion_tokens: int


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
    greedy_right = pass_right = maj_right = tokens = 0
    for start in tqdm(range(0, len(problems), batch_problems), desc="evaluate policy", disable=not show_progress):
        chunk = list(problems[start : start + batch_problems])
        roots = [ReasoningState(problem) for problem in chunk]
        greedy = policy.sample_solutions(roots, 1, greedy_sampling)
        tokens += greedy.total_completion_tokens
        greedy_right += sum(grade(solution_state(p, row[0]), verifier) for p, row in zip(chunk, greedy.texts))
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
    return PolicyEvaluation(len(problems), greedy_right / count, pass_right / count, maj_right / count, k, tokens)


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
