"""Stage detector: train the harm detector the filter (and evaluation) use.

Reads `params.yaml: detector` (+ seed) and data/formatted/. Writes:
    models/detector/config.json          backend, feature settings, embedding model + file hashes,
                                         threshold, metrics, lineage
    models/detector/weights.safetensors  weights (coefficients, intercepts, MLP layers, idf; no pickle)
    models/detector/offensive.*          the offensive-language member (`detector.offensive`): the
                                         alt-profanity-check model as JSON + safetensors
    reports/detector/metrics.json        precision / recall / F1 per labelled test source (a DVC metric)

Training rows come from data/formatted/labelled.jsonl (ingest `labelled` sources:
prompt, optional response, label 0/1, split): the `train` rows, optionally only
the sources named in `detector.sources`, fit the model; a hash-chosen slice of
them (`validation_fraction`) picks the threshold (for `tfidf-ensemble`, one per
task: exchanges, prompts, comments, each on its own validation rows); the `test`
rows are scored per source, with their source's task, and never touch training
or the threshold. A training row whose prompt is an evaluation prompt
(data/formatted/eval.jsonl, and the rows of `evaluate.suites`) is left out and
counted (`eval_overlap_dropped`): the evaluation scores replies with this detector.

Without labelled rows (the default pipeline, no ../shared) the labels come from
the built-in corpus's families: harmful compliance and toxic answers are unsafe
(1); task answers, look-alike answers and refusals are safe (0), as
exchanges and as replies on their own; harmful requests on their own are
unsafe prompts and task or look-alike requests safe ones. Preference pairs add their chosen (safe) and, for harmful prompts, their
rejected (unsafe) replies. A hash-chosen test part of those rows is held back.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from . import config, lineage
from .filter import detector as det
from .records import hash_fraction, normalize_text, prompt_of, read_jsonl, write_json

UNSAFE_FAMILIES = ("harmful_compliance", "toxic")
HARMFUL_PROMPT_FAMILIES = ("harmful", "harmful_compliance")


def evaluation_prompts(formatted: Path, params_file: str) -> set[str]:
    """Normalised prompts of every evaluation row: the held-out slice and the extra suites."""
    from .filter import decontam

    path = formatted / "eval.jsonl"
    prompts = {prompt_of(e["prompt"]) for e in read_jsonl(path)} if path.is_file() else set()
    prompts |= set(decontam.suite_prompts(config.read_params(params_file)).values())
    return {normalize_text(p) for p in prompts if p}


def labelled_rows(path: Path) -> list[dict]:
    """Rows of data/formatted/labelled.jsonl ([] when the file is absent or empty)."""
    return list(read_jsonl(path)) if path.is_file() else []


def builtin_rows(formatted: Path) -> list[dict]:
    """Labelled rows derived from the built-in corpus's families (see the module docstring)."""
    rows = []

    def add(text: str, text2: str, label: int, family: str) -> None:
        # Repeats are kept: a reply seen 500 times (a refusal) should weigh like 500 rows.
        if not text:
            return
        split = "test" if hash_fraction(text + "\x00" + text2 + "\x00test") < 0.15 else "train"
        rows.append({"text": text, "text2": text2, "label": label, "source": f"builtin:{family}",
                     "task": "response_harm" if text2 else "prompt_harm", "split": split})

    for ex in read_jsonl(formatted / "sft.jsonl"):
        family = (ex.get("labels") or {}).get("family")
        msgs = ex["messages"]
        if not family or not msgs or msgs[-1].get("role") != "assistant":
            continue
        prompt, reply = prompt_of(msgs), msgs[-1]["content"]
        add(prompt, reply, int(family in UNSAFE_FAMILIES), family)
        add(prompt, "", int(family in HARMFUL_PROMPT_FAMILIES), family)
        add(reply, "", int(family in UNSAFE_FAMILIES), family)  # the reply on its own
    pairs = formatted / "pairs.jsonl"
    for pair in read_jsonl(pairs) if pairs.is_file() else []:
        family = (pair.get("labels") or {}).get("family")
        if not family:
            continue
        prompt = prompt_of(pair["prompt"])
        chosen, rejected = pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]
        add(prompt, chosen, 0, family)
        add(prompt, rejected, int(family == "harmful"), family)
        add(prompt, "", int(family in HARMFUL_PROMPT_FAMILIES), family)
        add(chosen, "", 0, family)
        add(rejected, "", int(family == "harmful"), family)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--formatted", default="data/formatted")
    ap.add_argument("--out", default="models/detector")
    ap.add_argument("--report", default="reports/detector")
    args = ap.parse_args(argv)
    cfg, seed = config.load("detector", args.params)
    formatted = Path(args.formatted)
    started = time.perf_counter()

    # ---- training rows: labelled sources, else the built-in corpus's families
    rows = labelled_rows(formatted / "labelled.jsonl")
    if cfg.sources:
        unknown = sorted(set(cfg.sources) - {r["source"] for r in rows})
        if unknown:
            raise SystemExit(f"detector: params `detector.sources` names {unknown}, which have no rows in "
                             f"{formatted / 'labelled.jsonl'}; declare them as ingest `labelled` sources")
    train = [r for r in rows if r.get("split") == "train" and (not cfg.sources or r["source"] in cfg.sources)]
    data = "labelled"
    if not train:
        rows, data = builtin_rows(formatted), "builtin"
        train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r.get("split") in ("test", "eval")]
    # A labelled set can share prompts with the evaluation (Dolly's safety-related rows and its
    # closed-QA rows are both drawn from dolly-15k): those rows never train the judge of replies.
    evaluated = evaluation_prompts(formatted, args.params)
    overlap = [r for r in train if normalize_text(r["text"]) in evaluated]
    if overlap:
        train = [r for r in train if normalize_text(r["text"]) not in evaluated]
        print(f"detector: {len(overlap)} training row(s) whose prompt is an evaluation prompt left out")
    in_val = [hash_fraction(r["text"] + "\x00" + (r.get("text2") or "") + "\x01val") < cfg.validation_fraction
              for r in train]
    val = [r for r, v in zip(train, in_val) if v]
    fit = [r for r, v in zip(train, in_val) if not v]
    print(f"detector: {len(fit)} training rows ({sum(r['label'] for r in fit)} unsafe) from {data} data, "
          f"{len(val)} validation, {len(test)} test", flush=True)
    if not fit or len({r["label"] for r in fit}) < 2:
        raise SystemExit(f"detector: the training rows ({data}) need both safe and unsafe examples; "
                         f"got {len(fit)} rows with labels {sorted({r['label'] for r in fit})}")

    # ---- fit and choose the threshold
    feats = det.Features(backend=cfg.backend, n_features=cfg.n_features, char_ngrams=cfg.char_ngrams,
                         embedding_model=cfg.embedding_model, max_seq_length=cfg.max_seq_length,
                         batch_size=cfg.batch_size)
    if feats.uses_embedding:  # the embedding model's files are part of the detector's identity
        feats.embedding_files = det.model_file_hashes(cfg.embedding_model or det.default_embedding_model())
    xs = ([r["text"] for r in fit], [r.get("text2") or "" for r in fit], [r["label"] for r in fit])
    tasked = cfg.backend in ("tfidf-ensemble", "tfidf-task")
    if tasked:
        model = det.fit_task_ensemble(feats, *xs, C=cfg.C, seed=seed, threads=cfg.threads,
                                      sample_weight=det.source_weights([r["source"] for r in fit],
                                                                       cfg.source_weight_power),
                                      exchange_head=cfg.exchange_head)
    else:
        model = (det.fit_ensemble if cfg.backend == "ensemble" else det.fit)(feats, *xs, C=cfg.C, seed=seed,
                                                                           threads=cfg.threads)
    vx = ([r["text"] for r in val], [r.get("text2") or "" for r in val])
    val_scores = (model.raw_score(*vx) if tasked else model.score(*vx)) if val else None
    if tasked:
        # one threshold per task, each on its validation rows; a fixed `threshold` applies to all
        if cfg.threshold > 0:
            model.thresholds = {t: cfg.threshold for t in det.TASKS}
        elif val:
            model.thresholds = det.choose_task_thresholds(
                val_scores, [r["label"] for r in val],
                [det.task_of(r.get("text2") or "", r.get("task", "")) for r in val], cfg.target_precision)
        val_scores = model.calibrate(val_scores, [det.task_of(r.get("text2") or "", r.get("task", ""))
                                                  for r in val]) if val else None
    elif cfg.threshold > 0:
        model.threshold = cfg.threshold
    elif val and len({r["label"] for r in val}) == 2:
        model.threshold = det.choose_threshold(val_scores, [r["label"] for r in val], cfg.target_precision)
    else:
        model.threshold = 0.5

    # ---- measure on held-back rows, per source
    report = {"training_data": data, "train_rows": len(fit), "validation_rows": len(val),
              "eval_overlap_dropped": len(overlap),
              "threshold": round(model.threshold, 6), "backend": cfg.backend}
    if tasked:
        report["task_thresholds"] = {k: round(v, 6) for k, v in model.thresholds.items()}
    if val:
        report["validation"] = det.metrics(val_scores, [r["label"] for r in val], model.threshold)
    by_source = defaultdict(list)
    for r in test:
        by_source[r["source"]].append(r)
    # ---- the offensive-language member (filter/offensive.py): a model trained on real comments,
    # saved beside the detector's weights; it can only add flags (a reply it calls offensive is toxic)
    if cfg.offensive:
        from .filter import offensive

        offensive.export(args.out, cfg.offensive_threshold, cfg.offensive_min_words)
        model.offensive = offensive.load(args.out)
        report["offensive"] = model.offensive.meta
    report["test"], alone = {}, {}
    for source, rs in sorted(by_source.items()):
        t1, t2 = [r["text"] for r in rs], [r.get("text2") or "" for r in rs]
        # a tasked detector scores a source's texts as what the source declares (prompt or comment)
        s = model.score(t1, t2, task=rs[0].get("task", "")) if tasked else model.score(t1, t2)
        labels = [r["label"] for r in rs]
        report["test"][source] = det.metrics(det.with_offensive(model, s, t1, t2), labels, model.threshold)
        alone[source] = det.metrics(s, labels, model.threshold)
    if cfg.offensive:  # what the member adds, set by set
        report["test_without_offensive"] = alone
    report["lineage"] = lineage.stamp("detector", [formatted], cfg, seed)
    model.save(args.out, {"training_data": data, "metrics": {k: report[k] for k in ("validation", "test")
                                                           if k in report},
                          "lineage": report["lineage"]})
    write_json(Path(args.report) / "metrics.json", report)
    for source, m in report["test"].items():
        if m["positives"] == 0:  # a benign set: what matters is how much of it would be flagged
            print(f"detector: {source}: flags {m['flagged_fraction']:.1%} of {m['n']} safe rows")
        else:
            print(f"detector: {source}: P {m['precision']:.2f} R {m['recall']:.2f} F1 {m['f1']:.2f} (n={m['n']})")
    print(f"detector: {cfg.backend} model, threshold {model.threshold:.3f}, "
          f"trained and measured in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
