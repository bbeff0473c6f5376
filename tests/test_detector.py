"""The harm detector: training separates classes, thresholds, save/load without pickle, the stage."""

import json
from pathlib import Path

import numpy as np
import pytest

from instructflow import detector as stage
from instructflow.filter import detector as det
from instructflow.filter import labelled
from instructflow.records import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

UNSAFE = ["you are a worthless idiot and everyone hates you", "shut up you stupid moron",
          "I will hurt you and your family", "go die, nobody wants your kind here",
          "you disgusting pig, get lost", "what a pathetic loser you are",
          "people like you should be beaten", "I hope you choke, idiot",
          "your stupid face makes me sick", "kill yourself, worthless trash"] * 3
SAFE = ["thank you for the helpful answer", "the weather is lovely today",
        "could you explain how photosynthesis works", "I enjoyed the concert last night",
        "please send me the report by friday", "the recipe needs two cups of flour",
        "our team won the match on sunday", "the library opens at nine",
        "can you recommend a good book", "the train was on time this morning"] * 3


def _fit(backend="hashing", **kw):
    feats = det.Features(backend=backend, n_features=2**14, **kw)
    return det.fit(feats, UNSAFE + SAFE, None, [1] * len(UNSAFE) + [0] * len(SAFE), seed=0)


def test_hashing_detector_separates_unseen_texts():
    model = _fit()
    unsafe = model.score(["you stupid worthless idiot", "I will hurt your family, moron"])
    safe = model.score(["the concert was lovely", "please explain the recipe"])
    assert unsafe.min() > 0.5 > safe.max()
    assert unsafe.shape == (2,) and np.all((0 <= unsafe) & (unsafe <= 1))


def test_reply_block_changes_the_score():
    """The second text (a reply) has its own features: a refusal lowers a harmful prompt's exchange score."""
    prompts = ["how do I make a pipe bomb"] * 20 + ["how do I bake bread"] * 20
    replies = (["first get the pipe and the powder"] * 10 + ["I can't help with that"] * 10
               + ["mix flour and water"] * 20)
    labels = [1] * 10 + [0] * 10 + [0] * 20
    model = det.fit(det.Features(n_features=2**14), prompts, replies, labels, seed=0)
    s = model.score(["how do I make a pipe bomb"] * 2, ["first get the pipe and the powder", "I can't help with that"])
    assert s[0] > 0.5 > s[1]


def test_save_and_load_round_trip_without_pickle(tmp_path):
    model = _fit()
    model.threshold = 0.42
    model.save(tmp_path / "det", {"metrics": {"x": 1}})
    files = sorted(p.name for p in (tmp_path / "det").iterdir())
    assert files == ["config.json", "weights.safetensors"]
    assert b"pickle" not in (tmp_path / "det" / "weights.safetensors").read_bytes()[:200]
    cfg = json.loads((tmp_path / "det" / "config.json").read_text())
    assert cfg["threshold"] == 0.42 and cfg["features"]["backend"] == "hashing" and cfg["metrics"] == {"x": 1}
    back = det.load(tmp_path / "det")
    texts = ["you stupid idiot", "lovely weather"]
    np.testing.assert_allclose(back.score(texts), model.score(texts), rtol=1e-6)
    assert back.threshold == 0.42
    assert back.flag(texts).tolist() == (model.score(texts) >= 0.42).tolist()


def test_load_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a detector folder"):
        det.load(tmp_path)


def test_choose_threshold_best_f1_and_target_precision():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    labels = [1, 1, 0, 1, 0, 0, 1, 0]
    # best F1: flag the top four (tp 3, fp 1, fn 1 -> F1 0.75); the cut sits between 0.6 and 0.4
    assert det.choose_threshold(scores, labels) == pytest.approx(0.5)
    # precision 1.0 is reached only by the top two: between 0.8 and 0.7
    assert det.choose_threshold(scores, labels, target_precision=1.0) == pytest.approx(0.75)
    m = det.metrics(scores, labels, 0.6)
    assert m["confusion"] == {"tp": 3, "fp": 1, "fn": 1, "tn": 3}
    assert (m["precision"], m["recall"], m["f1"]) == (0.75, 0.75, 0.75)


def test_embedding_backend_separates_classes_and_checks_model_hashes(tmp_path):
    feats = det.Features(backend="embedding", embedding_files=det.model_file_hashes(det.default_embedding_model()))
    model = det.fit(feats, UNSAFE[:10] + SAFE[:10], None, [1] * 10 + [0] * 10, seed=0, threads=1)
    s = model.score(["you pathetic stupid idiot", "the museum opens at ten"])
    assert s[0] > 0.5 > s[1]
    model.save(tmp_path / "det")
    cfg = json.loads((tmp_path / "det" / "config.json").read_text())
    assert "model.safetensors" in cfg["features"]["embedding_files"]
    np.testing.assert_allclose(det.load(tmp_path / "det").score(["you idiot"]), model.score(["you idiot"]), rtol=1e-5)
    cfg["features"]["embedding_files"]["model.safetensors"] = "0" * 64
    (tmp_path / "det" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="differs"):
        det.load(tmp_path / "det")


def _formatted(tmp_path: Path) -> Path:
    fmt = tmp_path / "formatted"
    sft, pairs = [], []
    for i in range(40):
        sft.append({"id": f"t{i}", "source": "builtin", "locator": f"x:{i}", "labels": {"family": "antonym"},
                    "messages": [{"role": "user", "content": f"What is the opposite of word{i}?"},
                                 {"role": "assistant", "content": f"antiword{i}"}]})
        sft.append({"id": f"x{i}", "source": "builtin", "locator": f"y:{i}", "labels": {"family": "toxic"},
                    "messages": [{"role": "user", "content": f"What is the opposite of thing{i}?"},
                                 {"role": "assistant", "content": f"antithing{i}, you idiot."}]})
        pairs.append({"id": f"p{i}", "source": "builtin", "locator": f"z:{i}", "labels": {"family": "harmful"},
                      "prompt": [{"role": "user", "content": f"How do I build bomb number {i}?"}],
                      "chosen": [{"role": "assistant", "content": "I can't help with that."}],
                      "rejected": [{"role": "assistant", "content": f"Sure, here is how to build bomb {i}: first"}]})
    write_jsonl(fmt / "sft.jsonl", sft)
    write_jsonl(fmt / "pairs.jsonl", pairs)
    return fmt


def test_stage_trains_on_builtin_families_without_labelled_rows(tmp_path):
    fmt = _formatted(tmp_path)
    stage.main(["--params", str(ROOT / "params.yaml"), "--formatted", str(fmt), "--out", str(tmp_path / "model"),
                "--report", str(tmp_path / "rep")])
    report = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert report["training_data"] == "builtin"
    assert report["lineage"]["stage"] == "detector"
    model = det.load(tmp_path / "model")
    s = model.score(["What is the opposite of cold?", "How do I build a bomb?"],
                    ["warm, you idiot.", "Sure, here is how to build a bomb: first"])
    assert (s >= model.threshold).all()
    assert model.score(["What is the opposite of cold?"], ["warm"])[0] < model.threshold


def test_stage_prefers_labelled_rows_and_reports_each_test_source(tmp_path):
    fmt = _formatted(tmp_path)
    rows = []
    for i, (t, y) in enumerate([(t, 1) for t in UNSAFE] + [(t, 0) for t in SAFE]):
        rows.append({"id": f"l{i}", "source": "comments", "locator": f"c:{i}", "text": t, "text2": "", "label": y,
                     "task": "toxicity", "split": "train"})
    rows += [{"id": "t1", "source": "heldout", "locator": "h:1", "text": "you stupid idiot", "text2": "",
              "label": 1, "task": "toxicity", "split": "test"},
             {"id": "t2", "source": "heldout", "locator": "h:2", "text": "lovely weather today", "text2": "",
              "label": 0, "task": "toxicity", "split": "test"}]
    write_jsonl(fmt / "labelled.jsonl", rows)
    stage.main(["--params", str(ROOT / "params.yaml"), "--formatted", str(fmt), "--out", str(tmp_path / "model"),
                "--report", str(tmp_path / "rep")])
    report = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert report["training_data"] == "labelled"
    assert report["test"]["heldout"]["confusion"] == {"tp": 1, "fp": 0, "fn": 0, "tn": 1}


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present (public labelled sets)")
def test_hashing_detector_trained_on_diasafety_beats_chance_on_its_test_split():
    tr = labelled.load(SHARED / "diasafety" / "diasafety_train_9007.json.gz", labelled.spec_for("diasafety"))
    te = labelled.load(SHARED / "diasafety" / "diasafety_test_1093.json", labelled.spec_for("diasafety"))
    model = det.fit(det.Features(), tr[0], tr[1], tr[2], seed=0)
    m = det.metrics(model.score(te[0], te[1]), te[2], 0.5)
    assert m["n"] == 1093 and m["positives"] == 500
    assert m["f1"] > 0.65 and m["precision"] > 0.6


def test_ensemble_trains_saves_and_loads_without_pickle(tmp_path):
    feats = det.Features(backend="ensemble", n_features=2**12)
    model = det.fit_ensemble(feats, UNSAFE + SAFE, None, [1] * len(UNSAFE) + [0] * len(SAFE), seed=0, hidden=16)
    s = model.score(["you pathetic stupid idiot", "the museum opens at ten"])
    assert s[0] > 0.5 > s[1]
    members = model.member_scores(["you pathetic stupid idiot"])
    assert set(members) == {"hashing", "embedding", "mlp"}
    assert s[0] == pytest.approx(np.mean([m[0] for m in members.values()]), abs=1e-6)
    model.threshold = 0.4
    model.save(tmp_path / "ens")
    cfg = json.loads((tmp_path / "ens" / "config.json").read_text())
    assert cfg["kind"] == "ensemble" and cfg["threshold"] == 0.4
    back = det.load(tmp_path / "ens")
    assert isinstance(back, det.Ensemble) and back.threshold == 0.4
    texts, replies = ["how do I bake bread", "you idiot"], ["mix flour and water", ""]
    np.testing.assert_allclose(back.score(texts, replies), model.score(texts, replies), rtol=1e-5)


def test_task_ensemble_round_trips_through_safetensors_and_scores_the_same(tmp_path):
    feats = det.Features(backend="tfidf-ensemble", n_features=2**12)
    y = [1] * len(UNSAFE) + [0] * len(SAFE)
    w = det.source_weights(["a"] * len(UNSAFE) + ["b"] * 10 + ["c"] * (len(SAFE) - 10), 0.5)
    # the same rows again as replies to a question: the exchange head trains on these only
    texts = UNSAFE + SAFE + ["what do you think?"] * len(y)
    replies = [""] * len(y) + UNSAFE + SAFE
    model = det.fit_task_ensemble(feats, texts, replies, y + y, seed=0, hidden=16, sample_weight=np.r_[w, w])
    assert model.heads == ["all", "exchange"]
    members = model.member_scores(["you pathetic stupid idiot", "the museum opens at ten"])
    assert set(members) == {"tfidf", "hashing", "mlp"}
    # a row with a reply is scored by the exchange head, a text alone by the `all` head
    ex = model.member_scores(["what do you think?"], ["you pathetic stupid idiot"], head="exchange")
    assert model.raw_score(["what do you think?"], ["you pathetic stupid idiot"])[0] == pytest.approx(
        np.mean([v[0] for v in ex.values()]), rel=1e-6)
    alone = model.member_scores(["what do you think?"], [""], head="all")
    assert model.raw_score(["what do you think?"], [""])[0] == pytest.approx(
        np.mean([v[0] for v in alone.values()]), rel=1e-6)
    raw = model.raw_score(["you pathetic stupid idiot", "the museum opens at ten"])
    assert raw[0] > 0.5 > raw[1]
    np.testing.assert_allclose(raw, np.mean([m for m in members.values()], axis=0), rtol=1e-6)
    model.thresholds = {"exchange": 0.7, "prompt": 0.3, "text": 0.45}
    model.save(tmp_path / "te")
    cfg = json.loads((tmp_path / "te" / "config.json").read_text())
    assert cfg["kind"] == "task_ensemble" and cfg["task_thresholds"] == {"exchange": 0.7, "prompt": 0.3, "text": 0.45}
    assert not list((tmp_path / "te").glob("*.pkl"))
    back = det.load(tmp_path / "te")
    assert isinstance(back, det.TaskEnsemble) and back.thresholds == model.thresholds and back.threshold == 0.5
    assert back.heads == ["all", "exchange"]
    texts, replies = ["how do I bake bread", "you idiot", "shut up moron"], ["mix flour and water", "", "ok"]
    np.testing.assert_allclose(back.score(texts, replies), model.score(texts, replies), rtol=1e-5)
    np.testing.assert_allclose(back.raw_score(texts, replies), model.raw_score(texts, replies), rtol=1e-5)


def test_task_ensemble_applies_each_tasks_threshold_to_its_rows():
    model = det.TaskEnsemble(det.Features(backend="tfidf-ensemble"), {},
                             {"exchange": 0.7, "prompt": 0.3, "text": 0.45})
    raw = np.array([0.5, 0.5, 0.5, 0.69, 0.71, 0.29, 0.31])
    tasks = ["exchange", "prompt", "text", "exchange", "exchange", "prompt", "prompt"]
    s = model.calibrate(raw, tasks)
    # 0.5 is under the exchange cut (0.7), over the prompt (0.3) and comment (0.45) cuts
    assert (s >= model.threshold).tolist() == [False, True, True, False, True, False, True]
    np.testing.assert_allclose(model.calibrate(np.array([0.7, 0.3, 0.45]), ["exchange", "prompt", "text"]), 0.5)
    # rows with a reply are exchanges; texts alone are prompts, or comments when the task says so
    assert model.tasks(["a reply", ""], 2) == ["exchange", "prompt"]
    assert model.tasks(None, 2, task="hate") == ["text", "text"]
    assert model.tasks(["x", ""], 2, task="toxicity") == ["exchange", "text"]


def test_task_thresholds_chosen_per_task_with_best_f1_where_most_rows_are_unsafe():
    rng = np.random.default_rng(0)
    # exchanges: 20 % unsafe, scores separate well above 0.6; texts: 90 % unsafe
    y_ex = np.r_[np.ones(20), np.zeros(80)].astype(int)
    s_ex = np.r_[rng.uniform(0.6, 1.0, 20), rng.uniform(0.0, 0.7, 80)]
    y_tx = np.r_[np.ones(90), np.zeros(10)].astype(int)
    s_tx = np.r_[rng.uniform(0.3, 1.0, 90), rng.uniform(0.0, 0.35, 10)]
    thr = det.choose_task_thresholds(np.r_[s_ex, s_tx], np.r_[y_ex, y_tx], ["exchange"] * 100 + ["text"] * 100, 0.8)
    assert set(thr) == {"exchange", "prompt", "text"}
    assert thr["exchange"] == pytest.approx(det.choose_threshold(s_ex, y_ex, 0.8))
    # 90 % unsafe reaches 80 % precision at any cut: the best-F1 cut is used instead of the lowest
    assert thr["text"] == pytest.approx(det.choose_threshold(s_tx, y_tx, 0.0)) and thr["text"] > 0.25
    assert thr["prompt"] == thr["exchange"]  # no prompt rows: the exchange threshold


def test_source_weights_even_out_source_sizes():
    w = det.source_weights(["big"] * 90 + ["small"] * 10, 0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w[-1] / w[0] == pytest.approx(3.0)  # sqrt(90 / 10)
    full = det.source_weights(["big"] * 90 + ["small"] * 10, 1.0)
    assert full[:90].sum() == pytest.approx(full[90:].sum())
    assert det.source_weights(["a", "b"], 0.0) is None


def test_stage_leaves_out_training_rows_whose_prompt_is_an_evaluation_prompt(tmp_path):
    fmt = _formatted(tmp_path)
    rows = [{"id": f"l{i}", "source": "comments", "locator": f"c:{i}", "text": t, "text2": "", "label": y,
             "task": "toxicity", "split": "train"}
            for i, (t, y) in enumerate([(t, 1) for t in UNSAFE] + [(t, 0) for t in SAFE])]
    rows.append({"id": "e", "source": "chats", "locator": "e:1", "text": "Name three   Tamil poets.",
                 "text2": "Thiruvalluvar, Avvaiyar and Kambar.", "label": 0, "task": "response_harm",
                 "split": "train"})
    write_jsonl(fmt / "labelled.jsonl", rows)
    # the evaluation asks the same prompt (case and spacing aside): the judge of replies must not have seen it
    write_jsonl(fmt / "eval.jsonl", [{"id": "q1", "prompt": [{"role": "user", "content": "name three Tamil poets."}],
                                      "reference": "Thiruvalluvar."}])
    stage.main(["--params", str(ROOT / "params.yaml"), "--formatted", str(fmt), "--out", str(tmp_path / "model"),
                "--report", str(tmp_path / "rep")])
    report = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert report["eval_overlap_dropped"] == 1
    assert report["train_rows"] + report["validation_rows"] == len(UNSAFE) + len(SAFE)


@pytest.mark.parametrize("backend", ["tfidf-ensemble", "tfidf-task"])
def test_stage_trains_a_task_ensemble_with_a_threshold_per_task(tmp_path, backend):
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["detector"].update(backend=backend, n_features=4096, source_weight_power=0.5,
                              validation_fraction=0.3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    fmt = _formatted(tmp_path)
    rows = []
    for i, (t, y) in enumerate([(t, 1) for t in UNSAFE] + [(t, 0) for t in SAFE]):
        rows.append({"id": f"c{i}", "source": "comments", "locator": f"c:{i}", "text": t, "text2": "", "label": y,
                     "task": "toxicity", "split": "train"})
        rows.append({"id": f"e{i}", "source": "chats", "locator": f"e:{i}", "text": f"question {i}?", "text2": t,
                     "label": y, "task": "response_harm", "split": "train"})
    rows += [{"id": "t1", "source": "heldout", "locator": "h:1", "text": "you stupid idiot", "text2": "",
              "label": 1, "task": "toxicity", "split": "test"},
             {"id": "t2", "source": "heldout", "locator": "h:2", "text": "lovely weather today", "text2": "",
              "label": 0, "task": "toxicity", "split": "test"}]
    write_jsonl(fmt / "labelled.jsonl", rows)
    stage.main(["--params", str(tmp_path / "params.yaml"), "--formatted", str(fmt), "--out", str(tmp_path / "model"),
                "--report", str(tmp_path / "rep")])
    report = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert report["backend"] == backend and set(report["task_thresholds"]) == {"exchange", "prompt", "text"}
    model = det.load(tmp_path / "model")
    assert isinstance(model, det.TaskEnsemble)
    # tfidf-task has no MLP, hence no embedding model: nothing to embed, no model files to hash
    members = {"tfidf", "hashing"} | ({"mlp"} if backend == "tfidf-ensemble" else set())
    assert set(model.member_scores(["a question?"], ["an answer"])) == members == set(model.MEMBERS)
    assert {k.split(".")[1] for k in model.tensors} == members
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert set(cfg["members"]) == members and bool(cfg["features"]["embedding_files"]) == (backend != "tfidf-task")
    assert model.thresholds == pytest.approx(report["task_thresholds"], abs=1e-5)
    assert report["test"]["heldout"]["confusion"] == {"tp": 1, "fp": 0, "fn": 0, "tn": 1}
    assert model.flag(["what a nice question?"], ["shut up you stupid moron"])[0]
    assert not model.flag(["what a nice question?"], ["the library opens at nine"])[0]
