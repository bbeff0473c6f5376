import json

import pytest

from conftest import SHARED_DATA
from instructflow.loaders import read_source


def test_alpaca_input_is_appended_and_provenance_kept(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "Sum these", "input": "1 2", "output": "3"},
                                {"instruction": "Hi", "output": "Hello"}]))
    recs = list(read_source(path, "alpaca", "mine", "MIT"))
    assert [r["messages"][0]["content"] for r in recs] == ["Sum these\n\n1 2", "Hi"]
    assert recs[1]["locator"] == "a.json#index=1" and recs[1]["license"] == "MIT"
    assert recs[0]["id"] != recs[1]["id"] and all(r["error"] is None for r in recs)


def test_bad_rows_become_records_with_errors(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
                    '{"messages": [\n'
                    '{"messages": []}\n'
                    '[1, 2]\n')
    recs = list(read_source(path, "messages", "mine", "MIT"))
    assert len(recs) == 4  # nothing lost
    assert recs[0]["error"] is None
    assert "line 2" in recs[1]["error"] and "not valid JSON" in recs[1]["error"] and str(path) in recs[1]["error"]
    assert "line 3" in recs[2]["error"] and "non-empty list" in recs[2]["error"]
    assert "line 4" in recs[3]["error"]


def test_alpaca_missing_output_is_named(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "Hi"}]))
    (rec,) = read_source(path, "alpaca", "mine", "MIT")
    assert "record 0" in rec["error"] and "output" in rec["error"]


def test_preference_records(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "good", "rejected": "bad"}) + "\n")
    (rec,) = read_source(path, "preference", "mine", "MIT")
    assert rec["kind"] == "preference" and rec["chosen"] == "good" and rec["messages"][0]["content"] == "q"


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        read_source(tmp_path / "x", "csv-ish", "mine", "MIT")
    with pytest.raises(FileNotFoundError, match="mine"):
        read_source(tmp_path / "missing.json", "alpaca", "mine", "MIT")


@pytest.mark.skipif(not (SHARED_DATA / "alpaca").is_dir(), reason="../shared/data not present (fresh user clone)")
def test_real_alpaca_sample_reads_every_row():
    path = SHARED_DATA / "alpaca" / "alpaca_safety_related_1904.json"
    recs = list(read_source(path, "alpaca", "alpaca-safety", "CC-BY-NC-4.0"))
    assert len(recs) == len(json.loads(path.read_text())) == 1904
    assert all(r["error"] is None for r in recs)
    assert len({r["id"] for r in recs}) == 1904
