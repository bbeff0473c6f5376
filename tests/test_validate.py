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
CFG = ValidateConfig(min_rows=1, max_invalid_fraction=1.0, max_chars=50)
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


BAD = {
    "unparseable": (make_record("t", "t.json#index=9", LICENSE, "alpaca", error="record 9: missing field(s) ['output']"),
                    rule("values_to_be_null", "error")),
    "empty prompt": (sft(1, prompt=""), rule("values_to_match_regex", "prompt")),
    "blank prompt": (sft(2, prompt=" \n\t "), rule("values_to_match_regex", "prompt")),
    "null prompt": (sft(3, prompt=None), rule("values_to_not_be_null", "prompt")),
    "numeric prompt": (sft(4, prompt=42), rule("values_to_be_of_type", "prompt")),
    "long prompt": (sft(5, prompt="x" * 51), rule("value_lengths_to_be_between", "prompt")),
    "empty response": (sft(6, reply=""), rule("values_to_match_regex", "response")),
    "numeric response": (sft(7, reply=42), rule("values_to_be_of_type", "response")),
    "list response": (sft(8, reply=["down"]), rule("values_to_be_of_type", "response")),
    "long response": (sft(9, reply="y" * 51), rule("value_lengths_to_be_between", "response")),
    "empty rejected": (pref(1, rejected="  "), rule("values_to_match_regex", "rejected")),
    "numeric rejected": (pref(2, rejected=7), rule("values_to_be_of_type", "rejected")),
    "long rejected": (pref(3, rejected="z" * 51), rule("value_lengths_to_be_between", "rejected")),
    "rejected is chosen": (pref(4, rejected="I can't help with that."),
                           "expect_select_column_values_to_be_unique_within_record(response,rejected)"),
    "sft repeats user": (sft(10, messages=[{"role": "user", "content": "Hi?"}, {"role": "user", "content": "Up?"},
                                           {"role": "assistant", "content": "Down."}]), rule("values_to_match_regex", "roles")),
    "sft repeats assistant": (sft(11, messages=[{"role": "user", "content": "Up?"}, {"role": "assistant", "content": "Hm."},
                                                {"role": "assistant", "content": "Down."}]),
                              rule("values_to_match_regex", "roles")),
    "sft unknown role": (sft(14, messages=[{"role": "user", "content": "Up?"}, {"role": "bot", "content": "Down."},
                                           {"role": "assistant", "content": "Down."}]),
                         rule("values_to_match_regex", "roles")),
    "preference ends with assistant": (
        {**pref(5), "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]},
        rule("values_to_match_regex", "roles")),
    "null license": (sft(12, license=None), rule("values_to_not_be_null", "license")),
    "blank license": (sft(13, license=" "), rule("values_to_match_regex", "license")),
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
    assert q["quarantine_rules"] == sorted(rule("values_to_match_regex", c) for c in ("license", "prompt", "response", "roles"))
    assert q["quarantine_detail"] == ("t t.json#index=1: license is empty; prompt is empty; response is empty; "
                                      "role sequence is invalid for its kind")
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
    frame = validate.build_frame([first, copy, p1, p2])
    assert list(frame["duplicate_of"]) == [None, first["id"], None, p1["id"]]


def test_non_string_content_does_not_collide_with_its_text():
    a, b = sft(1, reply=42), sft(2, reply="42")
    assert validate.find_duplicates(validate.build_frame([a, b])) == [None, None]


def test_repeated_id_quarantines_every_copy():
    a = sft(1)
    b = {**sft(2, prompt="Another question?"), "id": a["id"]}
    valid, quarantine, _ = run([a, b, sft(3, prompt="Third?")])
    assert [q["quarantine_rules"] for q in quarantine] == [["expect_column_values_to_be_unique(id)"]] * 2
    assert len(valid) == 1


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
    assert "expect_column_values_to_match_regex(prompt) (2)" in msg


def test_cli_on_generated_corpus_conserves_rows_and_is_deterministic(tmp_path, capsys):
    raw = tmp_path / "raw"
    ingest.main(["--params", str(PARAMS), "--out", str(raw), "--report", str(tmp_path / "rep_ingest")])
    records = list(read_jsonl(raw / "records.jsonl"))
    summaries = []
    for run_dir in ("a", "b"):
        out, rep = tmp_path / run_dir / "validated", tmp_path / run_dir / "report"
        validate.main(["--params", str(PARAMS), "--raw", str(raw / "records.jsonl"),
                       "--out", str(out), "--report", str(rep)])
        summaries.append((rep / "summary.json").read_bytes())
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
    for rule_name in ("values_to_match_regex(prompt)", "values_to_be_of_type(response)",
                      "value_lengths_to_be_between(prompt)", "values_to_match_regex(response)"):
        assert by_rule[f"expect_column_{rule_name}"] > 0
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
