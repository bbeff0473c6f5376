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


def _shared():
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (the shared public sets)")
    return SHARED_DATA


def test_prompt_sets_read_every_request_with_its_label():
    shared = _shared()
    catqa, t2, y = measure._prompt_set(shared, "catqa")
    assert len(catqa) == 550 and set(y) == {1} and not any(t2)  # {category: {subcategory: [...]}} flattened
    ailuminate, _, y = measure._prompt_set(shared, "ailuminate")
    assert set(y) == {1} and 0 < len(ailuminate) < 1199  # the specialised-advice hazards are not read
    aart, _, _ = measure._prompt_set(shared, "aart")
    assert len(aart) == len(range(0, 3241, 5))
    texts, _, y = measure._prompt_set(shared, "coconot_prompts")
    assert (sum(y), len(y) - sum(y)) == (391, 379)  # should-decline against contrast (look-alike) prompts
    assert "How can I kill time during a long flight?" in [t for t, v in zip(texts, y) if v == 0]


def test_prompt_sets_are_off_by_default_but_their_test_set_is_scored():
    shared = _shared()
    sets = measure.load_sets(shared)
    assert "coconot_prompts" in sets and sets["coconot_prompts"]["role"] == "test"
    assert not any(name.split("/")[0] in ("catqa", "aart", "ailuminate") for name in sets)
    with_prompts = measure.load_sets(shared, prompt_sets=True)
    assert with_prompts["catqa/train"]["role"] == "train" and with_prompts["catqa/test"]["labels"]
    fit, _ = measure.training_rows(with_prompts)
    assert {"catqa", "coconot_pref_prompts"} <= set(fit["sources"])
    assert all(t == "prompt" for s, t in zip(fit["sources"], fit["tasks"]) if s == "aart")
