"""Stage validate: each row rule quarantines exactly the row that breaks it; dataset rules stop the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructflow import ingest, validate
from instructflow.config import ValidateConfig
from instructflow.records import make_record, read_jsonl, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
CFG = ValidateConfig(min_rows=1, max_invalid_fraction=1.0, max_chars=50, max_turns=6, max_quarantine_fraction=1.0)
LICENSE = "CC0-1.0"


def sft(n: int, prompt="What is the opposite of up?", reply="down", **kw) -> dict:
    msgs = kw.pop("messages", [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}])
    return make_record("t", f"t.json#index={n}", kw.pop("license", LICENSE), "alpaca", messages=msgs, **kw)


def pref(n: int, prompt="How do I pick a lock?", chosen="I can't help with that.", rejected="Start by...") -> dict:
    return make_record("t", f"p.jsonl:line={n}", LICENSE, "preference",
                       messages=[{"role": "user", "content": prompt}], chosen=chosen, rejected=rejected)


def run(records, cfg=CFG):
    return validate.validate(records, cfg, "raw/records.jsonl")


def rule(kind: str, col: str) -> str:
    return f"expect_column_{kind}({col})"


TURN = "turn_content"
BAD = {
    "unparseable": (make_record("t", "t.json#index=9", LICENSE, "alpaca", error="record 9: missing field(s) ['output']"),
                    rule("values_to_be_null", "error")),
    "empty prompt": (sft(1, prompt=""), rule("values_to_match_regex", TURN)),
    "blank prompt": (sft(2, prompt=" \n\t "), rule("values_to_match_regex", TURN)),
    "null prompt": (sft(3, prompt=None), rule("values_to_not_be_null", TURN)),
    "numeric prompt": (sft(4, prompt=42), rule("values_to_be_of_type", TURN)),
    "long prompt": (sft(5, prompt="x" * 51), rule("value_lengths_to_be_between", TURN)),
    "empty response": (sft(6, reply=""), rule("values_to_match_regex", TURN)),
    "numeric response": (sft(7, reply=42), rule("values_to_be_of_type", TURN)),
    "list response": (sft(8, reply=["down"]), rule("values_to_be_of_type", TURN)),
    "long response": (sft(9, reply="y" * 51), rule("value_lengths_to_be_between", TURN)),
    "control character": (sft(15, reply="do\x07wn"), rule("values_to_not_match_regex", TURN)),
    "empty middle turn": (sft(16, messages=[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": " "},
                                            {"role": "user", "content": "Up?"}, {"role": "assistant", "content": "Down."}]),
                          rule("values_to_match_regex", TURN)),
    "empty rejected": (pref(1, rejected="  "), rule("values_to_match_regex", TURN)),
    "numeric rejected": (pref(2, rejected=7), rule("values_to_be_of_type", TURN)),
    "long rejected": (pref(3, rejected="z" * 51), rule("value_lengths_to_be_between", TURN)),
    "null chosen": (pref(6, chosen=None), rule("values_to_not_be_null", TURN)),
    "rejected is chosen": (pref(4, rejected="I can't help with that."),
                           rule("values_to_be_in_set", "same_reply")),
    "sft repeats user": (sft(10, messages=[{"role": "user", "content": "Hi?"}, {"role": "user", "content": "Up?"},
                                           {"role": "assistant", "content": "Down."}]), rule("values_to_match_regex", "roles")),
    "sft repeats assistant": (sft(11, messages=[{"role": "user", "content": "Up?"}, {"role": "assistant", "content": "Hm."},
                                                {"role": "assistant", "content": "Down."}]),
                              rule("values_to_match_regex", "roles")),
    "preference ends with assistant": (
        {**pref(5), "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]},
        rule("values_to_match_regex", "roles")),
    "null license": (sft(12, license=None), rule("values_to_not_be_null", "license")),
    "blank license": (sft(13, license=" "), rule("values_to_match_regex", "license")),
    "labels not a mapping": ({**sft(17), "labels": ["harmful"]}, rule("values_to_be_in_set", "labels_type")),
    "too many turns": (sft(19, messages=[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}] * 3
                           + [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "B."}]),
                       rule("values_to_be_between", "n_turns")),
    "prompt without harmful label": (
        make_record("t", "q.json#index=1", LICENSE, "prompts", kind="prompt",
                    messages=[{"role": "user", "content": "How?"}], labels={"category": "x"}),
        rule("values_to_be_in_set", "harmful_prompt")),
    "prompt with a text harmful label": (
        make_record("t", "q.json#index=2", LICENSE, "prompts", kind="prompt",
                    messages=[{"role": "user", "content": "How?"}], labels={"harmful": "yes"}),
        rule("values_to_be_in_set", "harmful_prompt")),
    "labelled with a bad task": (
        make_record("t", "l.json#index=1", LICENSE, "labelled", kind="labelled",
                    messages=[{"role": "user", "content": "You fool"}], labels={"harmful": 1, "task": "rudeness"}),
        rule("values_to_be_in_set", "task")),
    "labelled with a label of 2": (
        make_record("t", "l.json#index=2", LICENSE, "labelled", kind="labelled",
                    messages=[{"role": "user", "content": "You fool"}], labels={"harmful": 2, "task": "toxicity"}),
        rule("values_to_be_in_set", "harmful_labelled")),
    "labelled ending with two assistant turns": (
        make_record("t", "l.json#index=3", LICENSE, "labelled", kind="labelled",
                    messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "a"},
                              {"role": "assistant", "content": "b"}], labels={"harmful": 0, "task": "toxicity"}),
        rule("values_to_match_regex", "roles")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_row_rule_quarantines_only_the_bad_row(case):
    bad, expected = BAD[case]
    good = [sft(100, prompt="Say cat two times.", reply="cat cat"), pref(100, prompt="Is it fine?")]
    valid, quarantine, summary = run([good[0], bad, good[1]])
    assert valid == good  # original dicts, input order
    [q] = quarantine
    assert q["quarantine_rules"] == [expected]
    assert {k: q[k] for k in bad} == bad
    assert q["quarantine_detail"].startswith(f"t {bad['locator']}: ")
    assert summary["quarantined_by_rule"] == {expected: 1}
    assert summary["expectations"][expected] == {"success": False, "unexpected_count": 1}
    assert summary["by_source"]["t"] == {"rows": 3, "valid": 2, "quarantined": 1,
                                         "quarantined_by_rule": {expected: 1}}


def test_turn_rules_name_the_turn():
    bad = sft(1, messages=[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": ""},
                           {"role": "user", "content": "Up?"}, {"role": "assistant", "content": 42}])
    _, [q], _ = run([sft(2), bad])
    assert q["quarantine_detail"] == ("t t.json#index=1: messages[1]: content is empty; "
                                      "messages[3]: content is not a string")
    _, [q], _ = run([sft(2), pref(1, chosen="ok", rejected="x" * 60)])
    assert q["quarantine_detail"].endswith("rejected: content is too long")


def test_unknown_role_breaks_role_set_and_order():
    bad = sft(14, messages=[{"role": "user", "content": "Up?"}, {"role": "bot", "content": "Down."},
                            {"role": "assistant", "content": "Down."}])
    _, [q], _ = run([sft(2), bad])
    assert q["quarantine_rules"] == [rule("values_to_be_in_set", "turn_role"), rule("values_to_match_regex", "roles")]


def test_unknown_kind_is_named():
    _, [q], _ = run([sft(2), {**sft(18), "kind": "chat"}])
    assert q["quarantine_rules"] == [rule("values_to_be_in_set", "kind"), rule("values_to_match_regex", "roles")]


def test_new_kinds_pass_when_well_formed():
    prompt = make_record("t", "q.json#index=1", LICENSE, "prompts", kind="prompt",
                         messages=[{"role": "user", "content": "How do I pick a lock?"}],
                         labels={"harmful": True, "category": "crime", "style": "question"})
    labelled = make_record("t", "l.json#index=1", LICENSE, "labelled", kind="labelled",
                           messages=[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
                           labels={"harmful": 0, "task": "response_harm"})
    valid, quarantine, _ = run([prompt, labelled])
    assert (valid, quarantine) == ([prompt, labelled], [])


def test_token_limit_uses_the_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "up": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    cfg = ValidateConfig(min_rows=1, max_invalid_fraction=1.0, max_quarantine_fraction=1.0,
                         max_tokens=7, tokenizer=str(tmp_path / "tok"))  # the prompt is 7 tokens ("?" is one)
    ok, long = sft(1, reply="one two three four five six seven"), sft(2, reply="one two three four five six seven 8")
    valid, [q], _ = run([ok, long], cfg)
    assert valid == [ok] and q["quarantine_rules"] == [rule("values_to_be_between", "turn_tokens")]


def test_good_multi_turn_and_system_records_pass():
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
             {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Up?"},
             {"role": "assistant", "content": "Down."}]
    recs = [sft(1, messages=turns), pref(1), {**pref(2), "messages": turns[:4]}]
    valid, quarantine, _ = run(recs)
    assert (valid, quarantine) == (recs, [])


def test_a_row_breaking_several_rules_lists_them_all():
    bad = sft(1, messages=[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hi."},
                           {"role": "user", "content": ""}], license="")
    _, [q], summary = run([sft(2), bad])
    assert q["quarantine_rules"] == sorted(rule("values_to_match_regex", c) for c in ("license", "roles", TURN))
    assert q["quarantine_detail"] == ("t t.json#index=1: license is empty; role sequence is invalid for its kind; "
                                      "messages[2]: content is empty")
    assert summary["quarantined"] == 1


def test_duplicates_keep_the_first_copy():
    first = sft(1, prompt="What is the opposite of UP?", reply="down")
    copy = sft(2, prompt="  what is the opposite   of up? ", reply="Down")  # same after normalize_text
    other = sft(3, prompt="What is the opposite of up?", reply=" down!")
    p1, p2, p3 = pref(1), pref(2), pref(3, rejected="Something else entirely.")
    valid, quarantine, _ = run([first, copy, other, p1, p2, p3])
    assert valid == [first, other, p1, p3]
    assert [q["id"] for q in quarantine] == [copy["id"], p2["id"]]
    assert all(q["quarantine_rules"] == ["expect_column_values_to_be_null(duplicate_of)"] for q in quarantine)
    assert quarantine[0]["quarantine_detail"].endswith(f"duplicate of an earlier record ({first['id']})")
    assert validate.find_duplicates([first, copy, p1, p2]) == [None, first["id"], None, p1["id"]]


def test_duplicates_look_at_every_turn():
    turns = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
             {"role": "user", "content": "Up?"}, {"role": "assistant", "content": "Down."}]
    other = [dict(t) for t in turns]
    other[1]["content"] = "Hey."
    assert validate.find_duplicates([sft(1, messages=turns), sft(2, messages=other)]) == [None, None]


def test_non_string_content_does_not_collide_with_its_text():
    a, b = sft(1, reply=42), sft(2, reply="42")
    assert validate.find_duplicates([a, b]) == [None, None]


def test_repeated_id_keeps_the_first_copy():
    a = sft(1)
    b = {**sft(2, prompt="Another question?"), "id": a["id"]}
    c = sft(3, prompt="Third?")
    valid, quarantine, _ = run([a, b, c])
    assert valid == [a, c] and [q["id"] for q in quarantine] == [a["id"]]
    assert quarantine[0]["quarantine_rules"] == ["expect_column_values_to_be_in_set(id_repeat)"]
    assert quarantine[0]["locator"] == b["locator"]


def test_chunks_give_the_same_split_as_one_pass():
    """Ids and duplicates are counted over the whole file, so a repeat in another chunk is caught."""
    a = sft(1)
    records = [a, sft(2, prompt="Q2?"), sft(3, prompt="Q3?", reply=""), {**sft(4, prompt="Q4?"), "id": a["id"]},
               sft(5, prompt="q2?"), pref(1), pref(2)]
    whole = run(records)
    chunked = run(records, ValidateConfig(**{**CFG.__dict__, "chunk_size": 2}))
    assert whole[:2] == chunked[:2]
    assert whole[2]["quarantined_by_rule"] == chunked[2]["quarantined_by_rule"] == {
        "expect_column_values_to_be_in_set(id_repeat)": 1, "expect_column_values_to_be_null(duplicate_of)": 2,
        rule("values_to_match_regex", TURN): 1}


def test_data_docs_from_worker_processes_match_one_process(tmp_path):
    """Chunks validated in worker processes send their suite results back; the Data Docs built from
    them are the one-process pages, byte for byte, with a validation page per chunk and suite."""
    a = sft(1)
    records = [a, sft(2, prompt="Q2?"), sft(3, prompt="Q3?", reply=""), {**sft(4, prompt="Q4?"), "id": a["id"]},
               sft(5, prompt="q2?"), pref(1), pref(2)]
    write_jsonl(tmp_path / "raw.jsonl", records)
    pages, outs = {}, {}
    for workers in (1, 2):
        cfg = ValidateConfig(**{**CFG.__dict__, "chunk_size": 3, "workers": workers})
        out, docs = tmp_path / f"w{workers}", tmp_path / f"w{workers}-docs"
        summary = validate.validate_file(str(tmp_path / "raw.jsonl"), cfg, out, docs)
        pages[workers] = sorted((p.relative_to(docs).as_posix(), p.read_bytes()) for p in docs.rglob("*.html"))
        outs[workers] = [(out / n).read_bytes() for n in ("valid.jsonl", "quarantine.jsonl")], summary
    assert pages[1] == pages[2] and outs[1] == outs[2]
    runs = [name for name, _ in pages[2] if name.startswith("validations/")]
    assert len(runs) == 6 and sum("chunk-0002" in name for name in runs) == 2  # 3 chunks x 2 suites


def test_one_bad_source_stops_the_pipeline_naming_it():
    good = [sft(i, prompt=f"Q{i}?") for i in range(8)]
    bad = [make_record("broken", f"data/sources/b.jsonl:line={i}", LICENSE, "messages",
                       error=f"data/sources/b.jsonl line {i}: not valid JSON") for i in range(1, 4)]
    cfg = ValidateConfig(min_rows=1, max_invalid_fraction=0.9, max_quarantine_fraction=0.5)
    with pytest.raises(SystemExit) as err:
        run(good + bad + [make_record("broken", "data/sources/b.jsonl:line=9", LICENSE, "messages",
                                      messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])],
            cfg)
    msg = str(err.value)
    assert "max_quarantine_fraction failed for source 'broken'" in msg and "75% of its 4 rows" in msg
    assert "data/sources/b.jsonl (3)" in msg and "expect_column_values_to_be_null(error)" in msg


@pytest.mark.parametrize("records", [[], [sft(1), sft(2, prompt="Q2?")]], ids=["empty", "too-few"])
def test_too_few_rows_stop_the_pipeline(records):
    with pytest.raises(SystemExit) as err:
        run(records, ValidateConfig(min_rows=3))
    msg = str(err.value)
    assert msg.startswith("raw/records.jsonl:") and "expect_table_row_count_to_be_between" in msg
    assert f"{len(records)} rows" in msg


def test_schema_drift_stops_the_pipeline():
    with pytest.raises(SystemExit) as err:
        run([{**sft(1), "extra": 1}, sft(2, prompt="Q2?")])
    assert "raw/records.jsonl" in str(err.value) and "expect_table_columns_to_match_set" in str(err.value)
    assert "extra" in str(err.value)


def test_too_many_invalid_rows_stop_the_pipeline():
    records = [sft(1), sft(2, prompt=""), sft(3, prompt=" "), sft(4, reply="")]
    with pytest.raises(SystemExit) as err:
        run(records, ValidateConfig(min_rows=1, max_invalid_fraction=0.5))
    msg = str(err.value)
    assert msg.startswith("raw/records.jsonl:") and "max_invalid_fraction" in msg and "75%" in msg
    assert "expect_column_values_to_match_regex(turn_content) (3)" in msg


def test_cli_on_generated_corpus_conserves_rows_and_is_deterministic(tmp_path, capsys):
    raw = tmp_path / "raw"
    ingest.main(["--params", str(PARAMS), "--out", str(raw), "--report", str(tmp_path / "rep_ingest")])
    records = list(read_jsonl(raw / "records.jsonl"))
    summaries = []
    for run_dir in ("a", "b"):
        out, rep = tmp_path / run_dir / "validated", tmp_path / run_dir / "report"
        validate.main(["--params", str(PARAMS), "--raw", str(raw / "records.jsonl"),
                       "--out", str(out), "--report", str(rep)])
        summary = json.loads((rep / "summary.json").read_text())
        assert summary.pop("data_docs") == f"{rep.as_posix()}/datadocs/index.html"
        summaries.append(json.dumps(summary))
        for name in ("valid.jsonl", "quarantine.jsonl"):
            assert (out / name).read_bytes() == (tmp_path / "a" / "validated" / name).read_bytes()
    assert summaries[0] == summaries[1]

    valid = list(read_jsonl(out / "valid.jsonl"))
    quarantine = list(read_jsonl(out / "quarantine.jsonl"))
    assert len(valid) + len(quarantine) == len(records)
    strip = [{k: v for k, v in q.items() if not k.startswith("quarantine_")} for q in quarantine]
    assert sorted(r["id"] for r in valid + strip) == sorted(r["id"] for r in records)
    assert valid == [r for r in records if r["id"] not in {q["id"] for q in quarantine}]
    summary = json.loads(summaries[0])
    assert (summary["rows"], summary["valid"], summary["quarantined"]) == (len(records), len(valid), len(quarantine))
    by_rule = summary["quarantined_by_rule"]
    assert by_rule["expect_column_values_to_be_null(error)"] == sum(r["error"] is not None for r in records)
    assert by_rule["expect_column_values_to_be_null(duplicate_of)"] >= 12  # the generator's exact copies
    for rule_name in ("values_to_match_regex", "values_to_be_of_type", "value_lengths_to_be_between"):
        assert by_rule[f"expect_column_{rule_name}(turn_content)"] > 0
    assert sum(s["rows"] for s in summary["by_source"].values()) == len(records)
    docs = [sorted((p.relative_to(tmp_path / d), p.read_bytes()) for p in (tmp_path / d).rglob("*.html"))
            for d in ("a/report/datadocs", "b/report/datadocs")]
    assert docs[0] == docs[1] and len(docs[0]) >= 5  # index, 2 suites, 2 validation pages; byte-identical
    index = (tmp_path / "a/report/datadocs/index.html").read_text()
    assert "raw_records" in index and "raw_turns" in index
    assert summary["lineage"]["stage"] == "validate"
    assert "validate: " in capsys.readouterr().out


def test_cli_failure_writes_nothing(tmp_path):
    raw = tmp_path / "records.jsonl"
    write_jsonl(raw, [sft(1)])
    with pytest.raises(SystemExit) as err:
        validate.main(["--params", str(PARAMS), "--raw", str(raw), "--out", str(tmp_path / "v"),
                       "--report", str(tmp_path / "r")])
    assert str(raw) in str(err.value) and "min_rows" in str(err.value)
    assert not (tmp_path / "v").exists() and not (tmp_path / "r").exists()


def test_data_docs_never_show_corpus_text(tmp_path):
    """GE prints sample failing values unescaped; validate asks for none, so corpus HTML cannot run."""
    bad = [sft(i, prompt="<script>alert(1)</script>" + "x" * 60, reply="<img src=x onerror=alert(2)>")
           for i in range(3)]
    write_jsonl(tmp_path / "raw.jsonl", [*bad, sft(9)])
    summary = validate.validate_file(str(tmp_path / "raw.jsonl"), CFG, tmp_path / "out", tmp_path / "docs")
    assert summary["quarantined_by_rule"][rule("value_lengths_to_be_between", TURN)] == 3
    pages = [p.read_text() for p in (tmp_path / "docs").rglob("*.html")]
    assert len(pages) >= 5 and not any("<script>alert" in p or "onerror=" in p for p in pages)
