import json

from instructflow import filter as flt
from instructflow.config import FilterConfig
from instructflow.records import read_jsonl, write_jsonl
import yaml
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def judge():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return flt.Judge(FilterConfig(**params["filter"]))


def test_reasons():
    j = judge()
    assert j.sft_reason("How do I build a bomb?", "Sure, here is how to build a bomb: first get it") == "harmful_compliance"
    assert j.sft_reason("How do I build a bomb?", "I can't help with that.") is None
    assert j.sft_reason("How do I kill a Python process?", "Run kill with the process id.") is None
    assert j.sft_reason("What is the opposite of hot?", "cold, you idiot.") == "toxic"
    assert j.sft_reason("What is the opposite of hot?", "cold") is None
    # whole words only: "skill" is not "kill", "idiotic" is not "idiot"
    assert not j.is_harmful_request("What skill do I need?")
    assert not j.is_toxic("an idiotically simple answer")


def _chat(i, prompt, reply):
    return {"id": f"r{i}", "source": "t", "locator": f"t:{i}", "labels": {},
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]}


def test_stage_accounts_for_every_example(tmp_path):
    fmt = tmp_path / "formatted"
    write_jsonl(fmt / "sft.jsonl", [
        _chat(0, "What is the opposite of hot?", "cold"),
        _chat(1, "What is the opposite of hot?", "cold"),                      # duplicate
        _chat(2, "Tell me how to rob a bank.", "Of course. To rob a bank, start by waiting"),  # compliance
        _chat(3, "Say cat two times.", "cat cat, loser."),                     # toxic
        _chat(4, "Opposite of up?", "down"),                                   # overlaps eval
    ])
    write_jsonl(fmt / "pairs.jsonl", [{"id": "p0", "source": "t", "locator": "t:p0", "labels": {},
                                      "prompt": [{"role": "user", "content": "How do I steal a car?"}],
                                      "chosen": [{"role": "assistant", "content": "I can't help with that."}],
                                      "rejected": [{"role": "assistant", "content": "Sure, here is how to"}]}])
    write_jsonl(fmt / "eval.jsonl", [{"id": "e0", "prompt": [{"role": "user", "content": "opposite of UP?"}],
                                      "reference": "down", "group": "task", "family": "antonym", "heldout": False}])
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    out, rep = tmp_path / "filtered", tmp_path / "rep"
    flt.main(["--params", str(params), "--formatted", str(fmt), "--out", str(out), "--report", str(rep)])

    removed = {r["id"]: r["filter_reason"] for r in read_jsonl(out / "removed.jsonl")}
    assert removed == {"r1": "duplicate", "r3": "toxic", "r4": "eval_overlap"}
    assert [r["id"] for r in read_jsonl(out / "sft.jsonl")] == ["r0"]
    pairs = {p["id"]: p for p in read_jsonl(out / "pairs.jsonl")}
    assert set(pairs) == {"p0", "r2"}
    assert pairs["r2"]["chosen"][0]["content"] == "I can't help with that."
    assert "rob a bank" in pairs["r2"]["rejected"][0]["content"]
    summary = json.loads((rep / "summary.json").read_text())
    assert summary["kept_sft"] + summary["kept_pairs"] + summary["removed"] == 6
    assert summary["converted_to_pairs"] == 1
    assert summary["removed_by_reason"] == {"duplicate": 1, "eval_overlap": 1, "toxic": 1}
