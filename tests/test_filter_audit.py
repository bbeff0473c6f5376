"""instructflow-filter-audit on tiny files: metrics, confusion matrix, JSON, nested fields, presets."""

import gzip
import json
from pathlib import Path

import pytest

from instructflow.filter import audit, labelled
from instructflow.filter import detector as det

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
UNSAFE = ["you stupid idiot", "shut up moron", "you worthless loser", "go away idiot"]
SAFE = ["lovely weather today", "thanks for the help", "the train is on time", "nice to meet you"]


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    model = det.fit(det.Features(n_features=2**12), (UNSAFE + SAFE) * 3, None, ([1] * 4 + [0] * 4) * 3, C=10.0)
    model.threshold = 0.5
    out = tmp_path_factory.mktemp("det") / "d"
    model.save(out)
    return out


def test_csv_audit_prints_metrics_and_confusion(tmp_path, detector_dir, capsys):
    rows = [("you stupid idiot", "1"), ("lovely weather today", "0"), ("thanks for the help", "1"),
            ("shut up moron", "0")]
    (tmp_path / "x.csv").write_text("comment,toxic\n" + "".join(f'"{t}",{y}\n' for t, y in rows))
    assert audit.main([str(tmp_path / "x.csv"), "--text", "comment", "--label", "toxic",
                       "--detector", str(detector_dir)]) == 0
    out = capsys.readouterr().out
    assert "precision 0.500  recall 0.500  F1 0.500" in out
    assert "threshold 0.5000" in out
    assert "actually unsafe                 1               1" in out


def test_json_output_nested_fields_and_gzip(tmp_path, detector_dir, capsys):
    doc = {"instances": [{"instance": t, "annotations": {"tox": {"majority": "yes" if y else "no"}}}
                         for t, y in [(u, 1) for u in UNSAFE] + [(s, 0) for s in SAFE]]}
    path = tmp_path / "x.json.gz"
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))
    assert audit.main([str(path), "--records", "instances", "--text", "instance", "--label",
                       "annotations.tox.majority", "--positive", "yes", "--detector", str(detector_dir),
                       "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["confusion"] == {"tp": 4, "fp": 0, "fn": 0, "tn": 4}
    assert result["f1"] == 1.0 and result["threshold"] == 0.5 and result["n"] == 8


def test_guardreasoner_preset_splits_prompt_and_response(tmp_path):
    rows = [{"instruction": "classify", "input": "Human user:\nHow do I cook rice?\n\nAI assistant:\nBoil it.\n\n",
             "output": "Answers: \nResponse: unharmful"},
            {"instruction": "classify", "input": "Human user:\nHow do I hurt him?\n\nAI assistant:\nNone\n\n",
             "output": "harmful"}]
    (tmp_path / "g.json").write_text(json.dumps(rows))
    texts, texts2, labels = labelled.load(tmp_path / "g.json", labelled.spec_for("guardreasoner"))
    assert texts == ["How do I cook rice?", "How do I hurt him?"]
    assert texts2 == ["Boil it.", ""]
    assert labels == [0, 1]


def test_bad_input_is_a_clear_error(tmp_path, detector_dir, capsys):
    (tmp_path / "x.jsonl").write_text('{"t": "a", "y": 1}\n{not json}\n')
    assert audit.main([str(tmp_path / "x.jsonl"), "--text", "t", "--label", "y", "--detector",
                       str(detector_dir)]) == 2
    assert "x.jsonl: line 2: not JSON" in capsys.readouterr().err
    (tmp_path / "ok.jsonl").write_text('{"t": "a", "y": 1}\n')
    assert audit.main([str(tmp_path / "ok.jsonl"), "--text", "t", "--label", "y", "--detector",
                       str(tmp_path / "nowhere")]) == 2
    assert "not a detector folder" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present (public labelled sets)")
@pytest.mark.parametrize("rel,preset,n,pos", [
    ("beavertails/beavertails_30k_test_1842.json.gz", "guardreasoner", 1842, 1056),
    ("aegis/aegis_safety_test_302.json", "guardreasoner", 302, 198),
    ("toxicchat/toxic_chat_test_2836.json.gz", "toxicchat", 2836, 359),
    ("diasafety/diasafety_test_1093.json", "diasafety", 1093, 500),
    ("dices/dices_350_expert_350.json", "dices", 350, 175),
    ("jigsaw/jigsaw_train_282.csv", "jigsaw", 282, 28),
    ("toxigen/toxigen_demonstrations_587.csv", "toxigen", 587, 317),
    ("hatecheck/hatecheck_test_suite_cases_3718.csv", "hatecheck", 3718, 2553),
])
def test_presets_read_the_shared_sets_with_their_documented_counts(rel, preset, n, pos):
    texts, texts2, labels = labelled.load(SHARED / rel, labelled.spec_for(preset))
    assert (len(labels), sum(labels)) == (n, pos)
    assert all(texts)


def test_task_option_picks_the_comment_threshold_of_a_per_task_detector(tmp_path, capsys):
    model = det.fit_task_ensemble(det.Features(backend="tfidf-ensemble", n_features=2**10), (UNSAFE + SAFE) * 3,
                                  None, ([1] * 4 + [0] * 4) * 3, seed=0, hidden=8)
    model.thresholds = {"exchange": 0.5, "prompt": 0.999, "text": 0.001}  # prompts: nothing; comments: all
    model.save(tmp_path / "te")
    f = tmp_path / "c.csv"
    f.write_text("text,label\n" + "".join(f"{t},1\n" for t in UNSAFE) + "".join(f"{t},0\n" for t in SAFE))
    flagged = {}
    for task in ("prompt", "text"):
        assert audit.main([str(f), "--text", "text", "--label", "label", "--detector", str(tmp_path / "te"),
                           "--task", task, "--json"]) == 0
        flagged[task] = json.loads(capsys.readouterr().out)["flagged_fraction"]
    assert flagged == {"prompt": 0.0, "text": 1.0}
