"""Exact and near-duplicate detection (MinHash LSH) and n-gram decontamination."""

from instructflow.filter import decontam, dedup

LONG = ("The quick brown fox jumps over the lazy dog near the river bank while the farmer watches from "
        "his old wooden porch and drinks a cup of strong black coffee before the rain starts")


def test_normalize_folds_case_width_punctuation_and_space():
    assert dedup.normalize("Ｈｅｌｌｏ,   WORLD!!\n") == "hello world"


def test_exact_and_near_duplicates_are_found_and_distinct_texts_kept():
    d = dedup.Deduper(threshold=0.8, shingle=3, seed=1)
    near = LONG.replace("strong", "hot")            # one word changed in 33
    other = "A completely different sentence about baking sourdough bread with rye flour and patience at home."
    res = d.check(["a", "b", "c", "d", "e"], [LONG, LONG.upper() + "!", near, other, "short text"])
    assert res[0] is None and res[3] is None and res[4] is None
    assert res[1] == ("exact", "a")
    assert res[2] == ("near", "a")
    # later batches are checked against everything before
    assert d.check(["f"], [other.lower()]) == [("exact", "d")]


def test_templated_short_texts_with_different_content_are_not_near_duplicates():
    d = dedup.Deduper(threshold=0.85, shingle=5, seed=1)
    texts = [f"What is the opposite of {w}? {a}" for w, a in
             [("hot", "cold"), ("big", "small"), ("up", "down"), ("wet", "dry")]]
    assert d.check([str(i) for i in range(4)], texts) == [None] * 4


def test_near_dedup_can_be_switched_off():
    d = dedup.Deduper(near=False)
    assert d.check(["a", "b"], [LONG, LONG.replace("strong", "hot")]) == [None, None]


def test_decontam_ngram_overlap_and_short_prompts():
    idx = decontam.Index({"e1": LONG, "e2": "Opposite of up?"}, n=8, threshold=0.8)
    assert idx.match("Intro. " + LONG + " Outro.")[0] == "e1"
    half = " ".join(LONG.split()[:16])
    assert idx.match(half) is None                                  # under 80 % of the prompt's 8-grams
    assert decontam.Index({"e1": LONG}, n=8, threshold=0.3).match(half)[0] == "e1"
    # a short eval prompt matches only the whole training prompt
    assert idx.match("opposite of UP", prompt="opposite of UP")[0] == "e2"
    assert idx.match("What is the opposite of up? down", prompt="What is the opposite of up?") is None


def test_suite_prompts_from_params(tmp_path):
    (tmp_path / "data/sources").mkdir(parents=True)
    (tmp_path / "data/sources/s.jsonl").write_text('{"question": "Is the sky green?"}\n{"question": "Name a planet."}\n')
    params = {"evaluate": {"suites": [{"name": "mine", "path": "data/sources/s.jsonl", "prompt": "question",
                                       "kind": "instruction", "limit": 1}]}}
    assert decontam.suite_prompts(params, tmp_path) == {"suite:mine:0": "Is the sky green?",
                                                        "suite:mine:1": "Name a planet."}
    assert decontam.suite_prompts({}, tmp_path) == {}
    # the same reader as evaluation: prompts nested by category (red-instruct's layout) too
    (tmp_path / "data/sources/nested.json").write_text('{"crime": {"theft": ["How do I pick a lock?"]}}')
    params = {"evaluate": {"suites": [{"name": "nested", "path": "data/sources/nested.json", "prompt": "prompt",
                                       "kind": "harmful"}]}}
    assert decontam.suite_prompts(params, tmp_path) == {"suite:nested:0": "How do I pick a lock?"}
