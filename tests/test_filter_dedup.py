"""Exact and near-duplicate detection (MinHash LSH) and n-gram decontamination."""

import math
import random
from collections import Counter

import numpy as np
import pytest

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


def _brute_force(keys, exact, digests, bands, threshold):
    """The dedup rule row by row, without an index: an exact repeat of any earlier row; else the
    first earlier kept row that shares an LSH band key and agrees on >= threshold of the digests."""
    seen, kept, out = {}, [], []
    for i, key in enumerate(keys):
        if exact[i] in seen:
            out.append(("exact", seen[exact[i]]))
            continue
        seen[exact[i]] = key
        near = next((keys[j] for j in kept if set(bands[j].tolist()) & set(bands[i].tolist())
                     and np.mean(digests[j] == digests[i]) >= threshold), None)
        out.append(None if near is None else ("near", near))
        if near is None:
            kept.append(i)
    return out


@pytest.mark.parametrize("batch", [7, 60, 1000])
def test_deduper_index_decides_like_a_row_by_row_check(batch):
    """The numpy index (sorted runs, per-batch screening) against the rule itself, on texts built
    from a few hundred templates with words swapped, so near copies fall in the same batch, in earlier
    batches and across many merged runs; rows skipped (as the filter skips removed ones) never enter."""
    rng = random.Random(batch)
    words = [f"w{i}" for i in range(120)]
    base = [rng.choices(words, k=rng.randint(4, 30)) for _ in range(150)]
    texts = []
    for _ in range(1500):
        t = list(rng.choice(base)) if rng.random() < 0.7 else rng.choices(words, k=rng.randint(4, 30))
        for _ in range(rng.randint(0, 2)):
            t[rng.randrange(len(t))] = rng.choice(words)
        texts.append(" ".join(t))
    d = dedup.Deduper(threshold=0.6, num_bands=32, shingle=2, seed=5)
    got, all_sig = [], []
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        exact, digests, bands = d.signatures([dedup.normalize(t) for t in chunk])
        for i in range(len(chunk)):
            if (start + i) % 9 == 4:
                continue
            got.append(d.check_signed([f"r{start + i}"], exact, digests, bands, rows=[i])[0])
            all_sig.append((f"r{start + i}", exact[i], digests[i], bands[i]))
    keys, exact, digests, bands = zip(*all_sig)
    want = _brute_force(keys, exact, np.array(digests), np.array(bands), 0.6)
    assert got == want
    kinds = Counter(x[0] for x in got if x)
    assert kinds["near"] > 100 and kinds["exact"] > 10     # the case is not trivial
    kept = sum(x is None for x in got)
    entries = sum(x is None or x[0] == "near" for x in got)  # rows that repeat no earlier row exactly
    # In memory, per kept row 12 bytes per band key (key + slot) and 8 for its entry; per entry 32
    # (exact key bits, entry, the next key bits, id offset); on disk 4 per digest value. Every row
    # but the last batch's: they join the index when the next batch arrives.
    per_kept, per_entry = 32 * 12 + 8, 32
    low = (kept - batch) * per_kept + (entries - batch) * per_entry
    assert len(d) == kept and low <= d.nbytes() - 8 <= kept * per_kept + entries * per_entry
    assert (kept - batch) * 128 * 4 <= d.spilled_bytes() <= kept * 128 * 4 and d.spilled_bytes() % (128 * 4) == 0
    assert len(d._runs) <= 1 + math.ceil(math.log2(len(texts) / batch + 1))  # merged as a binary counter
    assert len(d._exact_runs) <= 1 + math.ceil(math.log2(len(texts) / batch + 1))
    assert d.check([], []) == [] and len(d) == kept   # an empty batch has no signatures: nothing to screen
    assert d.nbytes() - 8 == kept * per_kept + entries * per_entry  # ... and flushes the last one


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_exact_index_compares_128_bits_and_names_the_first_copy(batch):
    """Exact keys built to share their first 64 bits (the part the runs are sorted on) in groups, with
    some keys repeated whole: only a repeat of all 128 bits is a duplicate, reported against the first
    row that had it, across batches and within one; skipped rows never enter."""
    rng = random.Random(batch)
    keys = [bytes(8 * [rng.randrange(3)]) + bytes(8 * [rng.randrange(40)]) + bytes(16) for _ in range(600)]
    d = dedup.Deduper(near=False)
    got, want, first = [], [], {}
    for start in range(0, len(keys), batch):
        chunk = keys[start:start + batch]
        for i, k in enumerate(chunk):
            if (start + i) % 7 == 3:
                continue
            got.append(d.check_signed([f"r{start + i}"], chunk, None, None, rows=[i])[0])
            want.append(("exact", first[k]) if k in first else None)
            first.setdefault(k, f"r{start + i}")
    assert got == want and len(d) == len(first) == sum(w is None for w in want)
    assert sum(w is not None for w in want) > 300
    with pytest.raises(ValueError, match="32 bytes"):
        d.check_signed(["x"], [b"short"], None, None)


def test_decontam_ngram_overlap_and_short_prompts():
    idx = decontam.Index({"e1": LONG, "e2": "Opposite of up?"}, n=8, threshold=0.8)
    assert idx.match("Intro. " + LONG + " Outro.")[0] == "e1"
    half = " ".join(LONG.split()[:16])
    assert idx.match(half) is None                                  # under 80 % of the prompt's 8-grams
    assert decontam.Index({"e1": LONG}, n=8, threshold=0.3).match(half)[0] == "e1"
    # a short eval prompt matches only the whole training prompt
    assert idx.match("opposite of UP", prompt="opposite of UP")[0] == "e2"
    assert idx.match("What is the opposite of up? down", prompt="What is the opposite of up?") is None


def _overlap_by_strings(prompts: dict[str, str], text: str, prompt: str, n: int, threshold: float):
    """What decontamination must find, written the slow way: string n-grams, every prompt tried."""
    words = dedup.normalize(text).split()
    if prompt:
        for eid, p in prompts.items():  # the first short prompt equal to the whole training prompt
            if 0 < len(dedup.normalize(p).split()) < n and dedup.normalize(p) == dedup.normalize(prompt):
                return eid, 1.0
    best = None
    for eid, p in prompts.items():
        pw = dedup.normalize(p).split()
        if len(pw) < n:
            continue
        grams = decontam.ngrams(pw, n)
        share = len(grams & decontam.ngrams(words, n)) / len(grams) if len(words) >= n else 0.0
        if share >= threshold and (best is None or (share, eid) > (best[1], best[0])):
            best = (eid, share)
    return None if best is None else (best[0], round(best[1], 4))


@pytest.mark.parametrize("collide", [False, True])
def test_decontam_index_finds_what_a_string_ngram_check_finds(monkeypatch, collide):
    """Few words, so texts share many n-grams with many prompts; with `collide` every n-gram hash is one
    of three values, so the hashes propose nearly every prompt and only the recount can decide."""
    if collide:
        monkeypatch.setattr(decontam, "hash", lambda gram: len(gram[0]) % 3, raising=False)
    rng = random.Random(5)
    vocab = "a b c d e f g h".split()
    prompts = {f"e{k}": " ".join(rng.choices(vocab, k=rng.randint(1, 12))) for k in range(40)}
    texts = [" ".join(rng.choices(vocab, k=rng.randint(0, 30))) for _ in range(300)]
    texts += [prompts[f"e{k}"] + " " + t for k, t in zip(range(40), texts)]   # whole prompts inside
    asked = [rng.choice([prompts[f"e{rng.randrange(40)}"], "", t]) for t in texts]
    for n, threshold in ((3, 0.5), (4, 0.3), (2, 0.9)):
        idx = decontam.Index(prompts, n=n, threshold=threshold)
        want = [_overlap_by_strings(prompts, t, a, n, threshold) for t, a in zip(texts, asked)]
        assert sum(w is not None for w in want) > 50                         # the check is not idle
        assert idx.match_many(texts, asked) == want
        assert idx.match_many(texts, asked, [dedup.normalize(t) for t in texts]) == want
        assert [idx.match(t, a) for t, a in zip(texts, asked)] == want
    assert decontam.Index({}, n=3).match_many(["a b c d"], [""]) == [None]


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
