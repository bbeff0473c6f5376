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


# --------------------------------------------------------------------------- paired bootstrap
def test_paired_bootstrap_same_predictions_differ_by_nothing():
    rng = np.random.default_rng(0)
    y, p = rng.random(200) < 0.5, rng.random(200) < 0.5
    d = measure.paired_bootstrap(y, p, p, n=200, seed=1)
    assert d == {"f1_diff": 0.0, "ci95": [0.0, 0.0], "clearly": False}


def test_paired_bootstrap_finds_a_real_gap_and_not_a_one_row_one():
    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.5
    good = np.where(rng.random(400) < 0.9, y, ~y)  # right on 90 % of rows
    poor = np.where(rng.random(400) < 0.6, y, ~y)  # right on 60 %
    d = measure.paired_bootstrap(y, good, poor, n=500, seed=1)
    assert d["clearly"] and d["ci95"][0] > 0.15 and d["ci95"][0] < d["f1_diff"] < d["ci95"][1]
    # one more true positive out of 400 rows: a real but tiny gain that resampling cannot tell from chance
    nudged = good.copy()
    nudged[np.flatnonzero(y & ~good)[0]] = True
    e = measure.paired_bootstrap(y, nudged, good, n=500, seed=1)
    assert 0 < e["f1_diff"] < 0.01 and not e["clearly"] and e["ci95"][0] <= 0 <= e["ci95"][1]
    # the same seed, the same interval
    assert measure.paired_bootstrap(y, good, poor, n=500, seed=1) == d


def test_paired_bootstrap_on_benign_rows_compares_flagged_shares():
    y = np.zeros(1000, dtype=bool)
    few = np.zeros(1000, dtype=bool)
    few[:5] = True            # 0.5 % flagged
    many = np.zeros(1000, dtype=bool)
    many[:120] = True         # 12 %
    d = measure.paired_bootstrap(y, few, many, n=300, seed=2)
    assert d["flagged_diff"] == -0.115 and d["clearly"] and d["ci95"][1] < 0
    assert not measure.paired_bootstrap(y, many, few, n=300, seed=2)["clearly"]
    with pytest.raises(ValueError, match="equal, non-empty"):
        measure.paired_bootstrap(y, few[:10], many)


def test_versus_table_bolds_only_clear_wins():
    vs = {"resamples": 10, "cand": {"a": {"f1_diff": 0.1, "ci95": [0.05, 0.15], "clearly": True},
                                    "b": {"f1_diff": -0.01, "ci95": [-0.05, 0.03], "clearly": False},
                                    "benign": {"flagged_diff": -0.11, "ci95": [-0.13, -0.09], "clearly": True}}}
    lines = measure.versus_table(vs).splitlines()
    assert lines[2] == "| a | **+0.10 [+0.05, +0.15]** |"
    assert lines[3] == "| b | -0.01 [-0.05, +0.03] |"
    assert lines[4] == "| benign | **-11.0% [-13.0%, -9.0%]** |"
