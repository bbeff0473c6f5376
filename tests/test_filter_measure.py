"""filter.measure: the baseline held to the benign budget (the cut behind docs/filter.md's matched table)."""

import numpy as np
import pytest

from instructflow.filter import measure


@pytest.mark.parametrize("n", [1, 7, 100, 250])
def test_benign_cut_flags_at_most_the_budget_and_no_lower_cut_does(n):
    rng = np.random.default_rng(n)
    scores = np.round(rng.random(n), 2)  # rounded: ties on the boundary
    cut = measure.benign_cut(scores, 0.01)
    flagged = float(np.mean(scores >= cut))
    assert flagged <= 0.01
    # the cut is the lowest such: one step down (to the next score below it) breaks the budget
    lower = scores[scores < cut]
    if lower.size:
        assert float(np.mean(scores >= lower.max())) > 0.01


def test_benign_cut_with_a_larger_budget():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    cut = measure.benign_cut(scores, 0.2)  # two of ten rows may be flagged: cut just above the third score
    assert 0.7 < cut < 0.8 and float(np.mean(scores >= cut)) == 0.2
    assert measure.benign_cut(scores, 0.29) == cut  # a budget between two rows rounds down
    assert float(np.mean(scores >= measure.benign_cut(scores, 0.0))) == 0.0
