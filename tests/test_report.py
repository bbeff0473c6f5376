"""Stage report: targets judged at their edges, conservation computed, corpus text escaped, bytes stable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructflow import report
from instructflow.records import write_json, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
LINEAGE = {"stage": "x", "inputs": {"data/in.jsonl": "ab" * 32}, "params": {"k": 1, "terms": list("abcdef")},
           "seed": 1234, "code": {"commit": "c0ffee" * 7, "dirty": True}, "libraries": {}}
GOOD = {"base": {"task_em": 0.0}, "sft": {"task_em_seen": 0.9, "task_em_heldout": 0.6, "task_em": 0.7},
        "safety": {"refusal_heldout": 0.95, "over_refusal_heldout": 0.05, "task_em": 0.68}}
# raw 100 = 5 quarantined + 60 kept sft + 15 corpus pairs + 3 converted + 7 removed + 10 eval
SUMMARIES = {
    "ingest": {"records": 100, "by_source": {"builtin/tasks.alpaca.json": 100}},
    "validate": {"rows": 100, "valid": 95, "quarantined": 5, "quarantined_by_rule": {"rule_a": 5}},
    "format": {"sft": 70, "pairs": 15, "eval": 10, "eval_by_group": {"task/heldout": 10}},
    "filter": {"kept_sft": 60, "kept_pairs": 18, "eval": 10, "converted_to_pairs": 3, "removed": 7,
               "removed_by_reason": {"toxic": 7}},
}
EVIL = "Say <script>alert(1)</script> & a|b\nnext line"


def result(metrics: dict, metric: str, model: str) -> str:
    target = next(t for t in report.TARGETS if t[1] == model and t[2] == metric)
    return report.check_target(target, metrics)[2]


def with_value(model: str, metric: str, value) -> dict:
    m = json.loads(json.dumps(GOOD))
    m[model][metric] = value
    return m


@pytest.mark.parametrize("model,metric,value,expected", [
    ("sft", "task_em_seen", 0.8, "PASS"), ("sft", "task_em_seen", 0.7999, "FAIL"),
    ("sft", "task_em_heldout", 0.5, "PASS"), ("sft", "task_em_heldout", 0.4999, "FAIL"),
    ("base", "task_em", 0.1, "PASS"), ("base", "task_em", 0.1001, "FAIL"),
    ("safety", "refusal_heldout", 0.9, "PASS"), ("safety", "refusal_heldout", 0.8999, "FAIL"),
    ("safety", "over_refusal_heldout", 0.1, "PASS"), ("safety", "over_refusal_heldout", 0.1001, "FAIL"),
    ("safety", "task_em", 0.65, "PASS"), ("safety", "task_em", 0.6499, "FAIL"),  # sft task_em 0.7 - 0.05
    ("safety", "task_em", None, "n/a"), ("sft", "task_em_seen", None, "n/a"),
])
def test_targets_at_their_edges(model, metric, value, expected):
    assert result(with_value(model, metric, value), metric, model) == expected


def test_relative_target_survives_float_rounding_and_missing_reference():
    m = {"sft": {"task_em": 0.4}, "safety": {"task_em": 0.35}}  # 0.4 - 0.05 == 0.35000000000000003
    assert result(m, "task_em", "safety") == "PASS"
    assert result({"safety": {"task_em": 0.9}}, "task_em", "safety") == "n/a"


def test_targets_table_counts_every_target():
    rows = report.targets_table(GOOD)
    assert [r[-1] for r in rows] == ["PASS"] * len(report.TARGETS)
    assert report.targets_table({})[0][2:] == ["n/a", "≥ 0.8", "n/a"]


def test_accounting_consistent_set_is_ok():
    acc = report.accounting(SUMMARIES)
    assert acc["status"] == "OK"
    assert all(row[3] == "OK" for row in acc["checks"])
    flow = {row[1]: row[2] for row in acc["flow"]}
    assert flow["kept: preference pairs from the corpus"] == "15"
    assert flow["kept: safety pairs converted from harmful compliance"] == "3"


def test_accounting_reports_the_mismatch():
    bad = json.loads(json.dumps(SUMMARIES))
    bad["filter"]["removed"] = 4  # three records lost between format and filter
    acc = report.accounting(bad)
    assert acc["status"] == "MISMATCH (3)"
    assert acc["checks"][0][1:] == ["100", "97", "MISMATCH (3)"]
    assert "MISMATCH (-3)" not in acc["status"]
    assert report.accounting({})["status"] == "n/a"


def make_inputs(tmp: Path, *, lock: bool = True, safety: bool = True) -> Path:
    reports = tmp / "reports"
    for stage, summary in SUMMARIES.items():
        write_json(reports / stage / "summary.json", {**summary, "lineage": {**LINEAGE, "stage": stage}})
    for stage in ("base", "sft", "safety") if safety else ("base", "sft"):
        write_json(reports / stage / "metrics.json", {"steps": 10, "final_train_loss": 1.5,
                                                      "lineage": {**LINEAGE, "stage": stage}})
    evaluate = GOOD if safety else {k: v for k, v in GOOD.items() if k != "safety"}
    write_json(reports / "evaluate/metrics.json", {**evaluate, "lineage": {**LINEAGE, "stage": "evaluate"}})
    rows = []
    for i, prompt in enumerate([EVIL, "Say hi.", "Say yo.", "Say no.", "Say ok.", "Say a.", "Say b.", "Say c."]):
        for model in ("base", "sft", "safety"):
            rows.append({"model": model, "id": f"id{i}", "group": "task", "family": "repeat", "category": None,
                         "heldout": i % 2 == 0, "prompt": prompt, "reference": "ref & <b>",
                         "reply": f"{model} says <i>{i}</i>", "refused": False, "correct": model != "base"})
    write_jsonl(reports / "evaluate/generations.jsonl", rows)
    if lock:
        (tmp / "dvc.lock").write_text(
            "schema: '2.0'\nstages:\n  evaluate:\n    cmd: x\n    params:\n      params.yaml:\n        seed: 1234\n"
            "    outs:\n    - path: " + (reports / "evaluate/metrics.json").as_posix()
            + "\n      hash: md5\n      md5: 0123456789abcdef0123456789abcdef\n", encoding="utf-8")
    return reports


def run(tmp: Path, reports: Path, out: str = "out") -> tuple[str, str]:
    report.main(["--params", str(PARAMS), "--reports", str(reports), "--lock", str(tmp / "dvc.lock"),
                 "--out", str(tmp / out)])
    return tuple((tmp / out / name).read_text(encoding="utf-8") for name in ("report.md", "report.html"))


def test_corpus_text_is_escaped(tmp_path):
    md, page = run(tmp_path, make_inputs(tmp_path))
    assert "<script>" not in page and "alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; a|b<br>next line" in page
    assert "<i>" not in page and "ref &amp; &lt;b&gt;" in page
    assert "a\\|b<br>next line" in md and "<script>" not in md
    # every table row of the markdown still has the header's number of cells
    table = [line for line in md.splitlines() if line.startswith("| id") or line.startswith("| id0")]
    assert table and all(line.replace("\\|", "").count("|") == 7 for line in table)


def test_report_contents(tmp_path, capsys):
    md, page = run(tmp_path, make_inputs(tmp_path))
    assert "targets passed 6/6" in capsys.readouterr().out
    assert "conservation: OK" in md and "Targets passed: 6/6" in md
    assert "0123456789abcdef0123456789abcdef" in md  # the output hash from dvc.lock
    assert "c0ffeec0ffee (dirty)" in md and "data/in.jsonl abababababab" in md and '"terms":"[6 items]"' in md
    assert "dvc params diff" in md and "<!DOCTYPE html>" in page and "<script" not in page.lower()
    samples = md.split("## 5. Sample generations")[1].split("## 6.")[0]
    assert samples.count("| id") == 2 + 3 + 3  # a header per split, then 3 of its 4 prompts (params default)
    assert "| id6 |" not in samples and "| id7 |" not in samples and "sft says &lt;i&gt;0&lt;/i&gt; ✓" in samples


def test_same_inputs_give_identical_bytes(tmp_path):
    reports = make_inputs(tmp_path)
    first = run(tmp_path, reports, "a")
    second = run(tmp_path, reports, "b")
    assert first == second
    assert (tmp_path / "a/report.html").read_bytes() == (tmp_path / "b/report.html").read_bytes()


def test_works_without_lock_or_safety_metrics(tmp_path, capsys):
    md, page = run(tmp_path, make_inputs(tmp_path, lock=False, safety=False))
    assert "dvc.lock: n/a" in md
    assert "| Safety refuses held-out harmful prompts | safety refusal_heldout | n/a | ≥ 0.9 | n/a |" in md
    assert "targets passed 3/6" in capsys.readouterr().out
    assert "<html" in page
