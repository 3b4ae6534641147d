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
