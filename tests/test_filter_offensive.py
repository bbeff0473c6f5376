"""The offensive-language member: alt-profanity-check's model rebuilt from safetensors, folded into
the detector's flags, the filter's judge and the audit, and refused when its files are not pinned."""

import json
from pathlib import Path

import numpy as np
import pytest

from instructflow import detector as stage
from instructflow import filter as flt
from instructflow.filter import audit, offensive
from instructflow.filter import detector as det

from test_detector import _formatted
from test_filter import BENIGN, GOOD, _chat, _run, fit_detector

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["Thank you, that was a helpful answer.", "You are a worthless idiot, shut up.", "Racist",
         "The library opens at nine.", "", "what the hell is wrong with you, moron", "cold"]
# offensive replies the detector fixture never saw (its toxic rows are "you idiot" / "stupid moron")
RUDE = ["Figure it out yourself, dumbass.", "Nobody cares, you pathetic loser."]


@pytest.fixture(scope="module")
def member_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("off") / "detector"
    fit_detector().save(out)
    offensive.export(out)
    return out


def test_rebuilt_member_scores_exactly_as_the_package_does(member_dir):
    from profanity_check import predict_prob

    got = offensive.load(member_dir).score(TEXTS)
    assert got == pytest.approx(predict_prob(TEXTS), abs=1e-12)
    assert got[1] > 0.9 and got[0] < 0.2  # and it is the trained model, not a constant


def test_member_folder_holds_no_pickle(member_dir):
    names = sorted(p.name for p in member_dir.iterdir())
    assert names == ["config.json", "offensive.json", "offensive.safetensors", "weights.safetensors"]
    cfg = json.loads((member_dir / "offensive.json").read_text())
    assert cfg["package"] == "alt-profanity-check" and cfg["version"] == "1.9.1" and len(cfg["terms"]) > 10000


def test_export_refuses_files_that_are_not_the_pinned_release(tmp_path, monkeypatch):
    monkeypatch.setitem(offensive.PINNED, "model.joblib", "0" * 64)
    with pytest.raises(offensive.OffensiveError, match=r"model\.joblib.*refusing to unpickle"):
        offensive.export(tmp_path / "d")
    assert not (tmp_path / "d" / offensive.WEIGHTS).exists()


def test_flags_only_grow_with_the_member(member_dir):
    with_member, alone = det.load(member_dir), fit_detector()
    prompts = BENIGN[:2] * 2
    replies = GOOD[:2] + RUDE
    base = alone.flag(prompts, replies)
    folded = with_member.flag(prompts, replies)
    assert not base[2:].any(), "the fixture detector misses these: the member is what finds them"
    assert folded.tolist() == [False, False, True, True]
    assert (folded >= base).all()


def test_filter_removes_an_offensive_reply_as_toxic_and_keeps_the_scores(tmp_path, member_dir):
    sft = [_chat(0, BENIGN[0], GOOD[0]), _chat(1, BENIGN[1], RUDE[0]), _chat(2, BENIGN[3], RUDE[1])]
    out, summary = _run(tmp_path, member_dir, sft)
    assert [r["id"] for r in out["sft"]] == ["r0"]
    removed = {r["id"]: r for r in out["removed"]}
    assert set(removed) == {"r1", "r2"} and {r["filter_reason"] for r in removed.values()} == {"toxic"}
    assert removed["r1"]["filter"]["scores"]["1"]["offensive"] >= 0.5
    assert summary["removed_by_reason"] == {"toxic": 2}
    # without the member the same detector keeps them
    plain = tmp_path / "plain-detector"
    fit_detector().save(plain)
    out, _ = _run(tmp_path / "plain", plain, sft)
    assert len(out["sft"]) == 3


def test_judge_reason_is_toxic_only_from_the_members_cut(member_dir):
    judge = flt.Judge(det.load(member_dir))
    rows = judge.score([BENIGN[3], BENIGN[3]], [GOOD[3], RUDE[0]])
    assert [judge.reason(r) for r in rows] == [None, "toxic"]
    assert rows[0]["offensive"] < 0.5 <= rows[1]["offensive"]


def test_audit_folds_the_member_in_and_no_offensive_turns_it_off(tmp_path, member_dir, capsys):
    rows = [{"text": t, "label": int(i >= 2)} for i, t in enumerate(GOOD[:2] + RUDE)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [str(path), "--text", "text", "--label", "label", "--detector", str(member_dir), "--json"]
    assert audit.main(args) == 0
    on = json.loads(capsys.readouterr().out)
    assert audit.main(args + ["--no-offensive"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert on["confusion"]["tp"] == 2 and on["offensive_member"]["version"] == "1.9.1"
    assert off["confusion"]["tp"] < 2 and off["offensive_member"] is None


def test_stage_saves_the_member_and_reports_what_it_adds(tmp_path):
    fmt = _formatted(tmp_path)
    stage.main(["--params", str(ROOT / "params.yaml"), "--formatted", str(fmt), "--out", str(tmp_path / "model"),
                "--report", str(tmp_path / "rep")])
    report = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert report["offensive"]["package"] == "alt-profanity-check"
    assert set(report["test_without_offensive"]) == set(report["test"])
    model = det.load(tmp_path / "model")
    assert model.offensive is not None
    assert model.flag(["What is the opposite of cold?"], [RUDE[1]]).all()
    assert np.isclose(model.offensive.threshold, 0.5)


def test_one_word_answers_are_left_to_the_detector(member_dir):
    """"dirty" (the opposite of clean) scores high on its own: one word decides an l2-normalised row."""
    member = offensive.load(member_dir)
    texts = ["dirty", "white white", "Stay away from me, you dirty idiot."]
    p, judged = member.scores(texts)
    assert p[0] >= member.threshold and p[1] >= member.threshold
    assert judged.tolist() == [False, False, True]
    assert member.flag(texts).tolist() == [False, False, True]
    rows = flt.Judge(det.load(member_dir)).score(["What is the opposite of clean?"] * 2, ["dirty", texts[2]])
    assert "offensive" not in rows[0] and rows[1]["offensive"] >= 0.5
