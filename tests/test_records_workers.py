"""Worker processes in the data stages: outputs do not depend on the number of workers, and the
fast paths (orjson reads, own LSH banding, tuple n-grams, ASCII normalisation) give what the
plain ones give."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from instructflow import config, records
from instructflow import filter as flt
from instructflow import format as fmt
from instructflow import validate
from instructflow.bench_data import synthetic_records
from instructflow.filter import decontam, dedup

from test_filter import COMPLY, HARMFUL, REFUSE, TOXIC, fit_detector

ROOT = Path(__file__).resolve().parents[1]


def test_loads_reads_what_json_reads():
    lines = [b'{"a": 18446744073709551616, "b": -9223372036854775809}', b'{"x": NaN, "y": Infinity}',
             b'"\\ud800 lone"', b'[1e400, -0.0, 1.0000000000000002]', b'{"k": 1, "k": 2}',
             b'{"t": "caf\xc3\xa9 \\u2028"}', b'{"id": "12345678901234567890"}']
    for line in lines:
        got, want = records.loads(line), json.loads(line.decode())
        assert repr(got) == repr(want), line
    assert isinstance(records.loads(lines[0])["a"], int)  # not the float orjson would give


def _double(x):
    return 2 * x


def test_workers_keep_task_order_and_match_in_process():
    tasks = list(range(57))
    with records.Workers(2, _double) as pool:
        got = list(pool.map(_double, tasks, window=3))
    assert got == [2 * t for t in tasks]
    assert list(records.ordered_map(_double, tasks, 1)) == got


def test_line_chunks_cover_every_non_blank_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2}\n  \n{"a": 3}\n{"a": 4}\n{"a": 5}')
    chunks = records.line_chunks(path, 2)
    assert [n for _, n in chunks] == [2, 2, 1]
    got = [records.loads(line)["a"] for off, n in chunks for line in records.read_chunk(path, off, n)]
    assert got == [1, 2, 3, 4, 5] == [r["a"] for r in records.read_jsonl(path)]


def test_normalize_ascii_shortcut_matches_the_unicode_path():
    rng = random.Random(0)
    alphabet = "abcXYZ019 _-.,!?'\"\t\n\x0b\x0c\x1c\x1f\r:;()[]{}#@~`^&*+=/\\|<>$%"
    slow = dedup._SPACE, dedup._PUNCT
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        want = slow[0].sub(" ", slow[1].sub(" ", text.casefold())).strip()
        assert dedup.normalize(text) == want, repr(text)


def test_lsh_banding_finds_the_candidates_rensa_finds():
    """The bucket keys fold each band of the digest; a pair shares a bucket exactly when rensa's
    RMinHashLSH (one hash per band) returns it as a candidate."""
    from rensa import RMinHash, RMinHashLSH

    rng = random.Random(1)
    words = [f"w{i}" for i in range(400)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 40))) for _ in range(300)]
    texts += [" ".join(w if rng.random() > 0.08 else "zz" for w in t.split()) for t in texts[:300]]
    norms = [dedup.normalize(t) for t in texts]
    _, digests, bands = dedup.signatures(norms, 3, 128, 16, 5)
    lsh = RMinHashLSH(threshold=0.8, num_perm=128, num_bands=16)
    mins = RMinHash.from_token_sets([dedup.shingles(n, 3) for n in norms], 128, 5)
    assert np.array_equal(digests, np.array([m.digest() for m in mins], dtype=np.uint32))
    for i, m in enumerate(mins[:300]):
        lsh.insert(i, m)
    shared = 0
    for j in range(300, 600):
        ours = {i for i in range(300) if (bands[i] == bands[j]).any()}
        assert ours == set(lsh.query(mins[j])), j
        shared += bool(ours)
    assert shared > 100  # the near copies do meet their originals


def test_decontam_tuple_ngrams_give_the_string_ngram_overlap():
    long = "one two three four five six seven eight nine"
    idx = decontam.Index({"e1": long, "e2": "short one"}, n=4, threshold=0.3)
    text = "x one two three four five y"
    grams = decontam.ngrams(long.split(), 4)
    share = len(grams & decontam.ngrams(text.split(), 4)) / len(grams)  # 2 of 6 string n-grams
    assert idx.match(text) == ("e1", round(share, 4)) == ("e1", 0.3333)
    assert idx.match("x one two three y") is None
    assert idx.match("Short, one!", "Short one") == ("e2", 1.0)


# --------------------------------------------------------------------------- stages, 1 vs 2 workers
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~2.5k raw records: the bench generator's mix plus near and exact copies, PII and harmful turns."""
    d = tmp_path_factory.mktemp("corpus")
    synthetic_records(2200, 11, d / "syn.jsonl")
    rows = list(records.read_jsonl(d / "syn.jsonl"))
    rng = random.Random(2)
    pii = ["Mail ann.lee@example.org or call 415-555-0134.", "My name is John Carter, 12 Oak Street.",
           "Card 4111 1111 1111 1111."]
    extra = []
    for k in range(300):
        src = rng.choice([r for r in rows[:400] if r["error"] is None and r["kind"] == "sft"])
        msgs = [dict(m) for m in src["messages"]]
        words = msgs[-1]["content"].split()
        if k % 3 == 0:
            words[rng.randrange(len(words))] = "zzz"  # a near copy
        elif k % 3 == 1:
            words.append(rng.choice(pii))
        msgs[-1]["content"] = " ".join(words)
        extra.append(records.make_record("extra", f"x:{k}", "MIT", "messages", messages=msgs))
    for k, (p, r) in enumerate((p, r) for p in HARMFUL for r in COMPLY + REFUSE + TOXIC):  # each exchange once
        extra.append(records.make_record("extra", f"h:{k}", "MIT", "messages", messages=[
            {"role": "user", "content": p}, {"role": "assistant", "content": r}]))
    all_rows = rows + extra
    rng.shuffle(all_rows)
    records.write_jsonl(d / "raw.jsonl", all_rows)
    fit_detector().save(d / "detector")
    return d


def _stages(corpus, out, workers):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["validate"].update(chunk_size=700, workers=workers)
    params["format"]["workers"] = workers
    params["filter"].update(batch_size=400, workers=workers)
    (out / "params.yaml").parent.mkdir(parents=True, exist_ok=True)
    (out / "params.yaml").write_text(yaml.safe_dump(params))
    cfg = config.load("validate", str(out / "params.yaml"))[0]
    summary = validate.validate_file(str(corpus / "raw.jsonl"), cfg, out / "validated")
    fmt.main(["--params", str(out / "params.yaml"), "--valid", str(out / "validated/valid.jsonl"),
              "--out", str(out / "formatted"), "--report", str(out / "rep/format")])
    flt.main(["--params", str(out / "params.yaml"), "--formatted", str(out / "formatted"), "--detector",
              str(corpus / "detector"), "--out", str(out / "filtered"), "--report", str(out / "rep/filter")])
    return summary


def test_stage_outputs_do_not_depend_on_workers(corpus, tmp_path):
    one = _stages(corpus, tmp_path / "w1", 1)
    two = _stages(corpus, tmp_path / "w2", 2)
    assert one == two
    names = [f"validated/{n}.jsonl" for n in ("valid", "quarantine")]
    names += [f"formatted/{n}.jsonl" for n in ("sft", "pairs", "prompts", "labelled", "eval")]
    names += [f"filtered/{n}.jsonl" for n in ("sft", "pairs", "prompts", "removed")]
    for name in names:
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes(), name
    for stage in ("format", "filter"):
        a, b = (json.loads((tmp_path / w / f"rep/{stage}/summary.json").read_text()) for w in ("w1", "w2"))
        a.pop("lineage"), b.pop("lineage")
        assert a == b, stage
    # the corpus exercises what the main process decides: copies, PII, harmful turns
    summary = json.loads((tmp_path / "w2/rep/filter/summary.json").read_text())
    assert one["quarantined_by_rule"]["expect_column_values_to_be_null(duplicate_of)"] > 50
    assert summary["removed_by_reason"].get("duplicate", 0) > 20
    assert sum(summary["pii_redacted"].values()) > 10
    assert summary["converted_to_pairs"] + summary["removed_by_reason"].get("toxic", 0) > 5


def test_chunks_count_unicode_blank_lines_only_where_the_reader_skips_them(tmp_path):
    # Stage outputs skip a line of non-breaking spaces (text mode would); validate's raw reader keeps
    # it as a record (an error row), so its chunks must count it or a record would be lost.
    from instructflow.records import line_chunks, read_chunk

    path = tmp_path / "raw.jsonl"
    path.write_bytes(b'{"a": 1}\n\xc2\xa0\xc2\xa0\n\n{"a": 2}\n{"a": 3}\n')
    assert line_chunks(path, 2) == [(0, 2), (9 + 5 + 1 + 9, 1)]
    assert [n for _, n in line_chunks(path, 2, unicode_blanks=False)] == [2, 2]
    off, n = line_chunks(path, 2, unicode_blanks=False)[1]
    assert read_chunk(path, off, n, unicode_blanks=False) == [b'{"a": 2}\n', b'{"a": 3}\n']
    assert read_chunk(path, 0, 2, unicode_blanks=False)[1] == b"\xc2\xa0\xc2\xa0\n"
