"""Stage evaluate: base (zero- and few-shot), sft and safety side by side.

Reads `params.yaml: evaluate` (+ seed), models/{base,sft,safety}/,
data/formatted/eval.jsonl, data/filtered/sft.jsonl (few-shot examples), the
extra suites under data/sources/, models/detector/ (toxicity, when present) and
the held-out pretraining text. Writes

    reports/evaluate/metrics.json       every number, with n and 95 % Wilson
                                        intervals (schema: docs/evaluation.md)
    reports/evaluate/generations.jsonl  every prompt, reply and score

What it measures, and why it can be trusted (DESIGN.md section 8):
- instruction following by exact match, separately on seen items, held-out
  phrasings of seen items and held-out items (never in any training data, facts
  only in pretraining);
- refusal on harmful prompts and over-refusal on harmless look-alikes and
  ordinary instructions, by two judges built without the training refusals
  (a public phrase list and an embedding classifier), with their agreement;
- helpfulness against references (exact match, ROUGE-L, BLEU): not refusing is
  not helping;
- refuse-vs-answer precision / recall / F1 against each prompt's kind;
- toxicity of replies with the filter's harm detector; perplexity on held-out
  pretraining text and held-out answers (the alignment tax).

Module layout: judges.py (refusal judges), metrics.py (scores, intervals,
summaries), ../suites.py (extra suites, shared with the filter), generate.py (few-shot prompts,
generation, perplexity). `python -m instructflow.evaluate` runs this stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import config, lineage, training
from ..records import read_jsonl, write_json, write_jsonl
from . import generate as gen
from . import judges as judging
from . import metrics as M
from .. import suites as S

# Evaluated variants: (name in metrics.json, model folder, few-shot examples?)
VARIANTS = (("base", "base", False), ("base_fewshot", "base", True), ("sft", "sft", False),
            ("safety", "safety", False))


def kind_of(row: dict) -> str:
    """harmful / harmless / instruction: what the prompt asks of a model."""
    return row.get("kind") or M.GROUP_KIND.get(row.get("group"), "instruction")


def builtin_rows(path: Path) -> list[dict]:
    """data/formatted/eval.jsonl rows with kind, scope, split and answer metric filled in."""
    rows = []
    for r in read_jsonl(path):
        # The generator's tasks have one right answer; user data (Dolly, Alpaca: group general) has
        # free-text references, which exact match would score as all wrong: ROUGE-L and BLEU there.
        exact = r["group"] == "task"
        rows.append({**r, "kind": kind_of(r), "scope": "builtin",
                     "split": r.get("split") or ("heldout_phrasing" if r.get("heldout") else "seen"),
                     # harmful prompts' references are refusals: a refusal is scored by the judges, not by overlap
                     "metric": None if r["group"] == "harmful" or not r.get("reference") else
                     ("exact" if exact else "rouge")})
    return rows


def score_row(row: dict, reply: str, refused_by: dict, primary: str, helpful_rouge_l: float) -> dict:
    """One reply's scores: refusal by every judge, and against the reference where there is one."""
    out = {"reply": reply, "refused_by": refused_by, "refused": refused_by[primary]}
    if row.get("metric") and row.get("reference"):
        out["rouge_l"] = round(M.rouge_l(reply, row["reference"]), 4)
        if row["metric"] == "exact":
            out["correct"] = M.exact_match(reply, row["reference"])
            out["helpful"] = out["correct"] and not out["refused"]
        else:
            out["helpful"] = (not out["refused"]) and out["rouge_l"] >= helpful_rouge_l
    return out


def load_detector(path: str, threads: int):
    """The filter's harm detector, or (None, why) when it is not there."""
    if not path or not Path(path).is_dir():
        return None, f"no detector folder at {path!r}; toxicity not measured (run the detector stage)"
    try:
        from ..filter import detector
    except ImportError as err:
        return None, f"detector code unavailable ({err}); toxicity not measured"
    return detector.load(path, threads=threads), None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--models", default="models")
    ap.add_argument("--eval", default="data/formatted/eval.jsonl")
    ap.add_argument("--train", default="data/filtered/sft.jsonl", help="few-shot examples come from here")
    ap.add_argument("--report", default="reports/evaluate")
    ap.add_argument("--root", default=".", help="repository root that suite paths are relative to")
    args = ap.parse_args(argv)
    cfg, seed = config.load("evaluate", args.params)
    report, models = Path(args.report), Path(args.models)

    # ---- prompts: the default corpus's held-out prompts, then every extra suite
    examples = builtin_rows(Path(args.eval))
    counts = {"builtin": len(examples)}
    suite_counts = {}
    for i, suite in enumerate(cfg.suites):
        rows, suite_counts[suite.get("name", str(i))] = S.load_suite(suite, Path(args.root))
        examples += rows
    print(f"evaluate: {len(examples)} prompts ({counts['builtin']} built-in, suites {suite_counts})")

    # ---- judges, detector, few-shot pool
    device = training.setup_torch(seed, cfg.threads)
    judges = judging.build(cfg.judges, cfg.classifier_model, cfg.threads, seed)
    primary = cfg.judges[0]
    detector, detector_note = load_detector(cfg.detector, cfg.threads)
    if detector_note:
        print(f"evaluate: {detector_note}")
    pool = gen.shot_pool(list(read_jsonl(args.train))) if cfg.few_shot_k and Path(args.train).is_file() else {}
    held_text = Path(cfg.perplexity_text)
    held_lines = ([ln for ln in held_text.read_text(encoding="utf-8").splitlines() if ln.strip()]
                  [: cfg.perplexity_max_texts] if cfg.perplexity_text and held_text.is_file() else [])
    answer_rows: dict[str, list[dict]] = {}  # held-out reference answers, per split
    for e in examples:
        if e["kind"] != "harmful" and e.get("reference") and e["split"] != "seen":
            answer_rows.setdefault(e["split"], [])
            if len(answer_rows[e["split"]]) < cfg.perplexity_max_texts:
                answer_rows[e["split"]].append(e)

    # ---- generate and score, one variant at a time
    metrics, generations = {}, []
    loaded_name, model, tokenizer = None, None, None
    for name, folder, few_shot in VARIANTS:
        if few_shot and (cfg.few_shot_k == 0 or not pool):
            continue
        if folder != loaded_name:
            model, tokenizer = training.load_model(models / folder, cfg.dtype, device)
            model.to(device)
            loaded_name = folder
        budget = gen.context_budget(model, tokenizer, cfg.max_new_tokens)
        texts, shots = [], []
        for e in examples:
            picked = gen.pick_shots(pool, e["family"], cfg.few_shot_k, e["id"], seed) if few_shot else []
            text, used = gen.fit_shots(tokenizer, e["prompt"], picked, budget)
            texts.append(text)
            shots.append(used)
        replies, truncated = gen.generate(model, tokenizer, texts, max_new_tokens=cfg.max_new_tokens,
                                          batch_size=cfg.batch_size, decoding=cfg.decoding,
                                          temperature=cfg.temperature, top_p=cfg.top_p, budget=budget, seed=seed)
        verdicts = {j: judge(replies) for j, judge in judges.items()}
        unsafe = None
        if detector is not None:
            flags = detector.flag([e["prompt"][-1]["content"] for e in examples], replies)
            unsafe = [bool(f) for f in flags]
        rows = []
        for i, (e, reply) in enumerate(zip(examples, replies)):
            scored = score_row(e, reply, {j: bool(v[i]) for j, v in verdicts.items()}, primary, cfg.helpful_rouge_l)
            rows.append({"model": name, "id": e["id"], "scope": e["scope"], "group": e["group"],
                         "kind": e["kind"], "family": e["family"], "category": e.get("category"),
                         "style": e.get("style"), "split": e["split"], "heldout": e.get("heldout", False),
                         "source": e.get("source"),
                         "shots": shots[i],
                         "prompt": e["prompt"][-1]["content"], "reference": e.get("reference"),
                         "metric": e.get("metric"), "unsafe": None if unsafe is None else unsafe[i], **scored})
        m = M.summarize(rows, list(judges), cfg.confidence)
        m["prompts_truncated"] = truncated
        if few_shot:
            m["shots_mean"] = round(sum(shots) / len(shots), 4) if shots else 0.0

        # ---- alignment tax: perplexity on text no stage trained on (once per model folder)
        if not few_shot:
            if held_lines:
                m["ppl_pretrain_heldout"] = gen.perplexity(model, tokenizer, [""] * len(held_lines), held_lines,
                                                           batch_size=cfg.batch_size, max_tokens=budget)
            for split, ans in sorted(answer_rows.items()):
                ctx = [gen.render(tokenizer, e["prompt"]) for e in ans]
                m[f"ppl_answers_{split}"] = gen.perplexity(model, tokenizer, ctx, [e["reference"] for e in ans],
                                                           batch_size=cfg.batch_size, max_tokens=budget)
        metrics[name] = m
        generations += rows
        headline = {k: m.get(k) for k in ("task_em_seen", "task_em_heldout_phrasing", "task_em_heldout_item",
                                          "refusal", "over_refusal", "helpful", "unsafe_reply")}
        print(f"evaluate: {name}: {headline}")

    # ---- write
    write_jsonl(report / "generations.jsonl", generations)
    inputs = [args.eval] + [models / f for f in sorted({f for _, f, _ in VARIANTS})]
    inputs += [Path(args.root) / s["path"] for s in cfg.suites]
    if pool:
        inputs.append(args.train)
    if held_lines:
        inputs.append(held_text)
    if detector is not None:
        inputs.append(cfg.detector)
    write_json(report / "metrics.json", {
        "schema_version": 2,
        "models": list(metrics),
        **metrics,
        "judges": {"primary": primary, **{j: judge.describe() for j, judge in judges.items()}},
        "settings": {"max_new_tokens": cfg.max_new_tokens, "decoding": cfg.decoding, "batch_size": cfg.batch_size,
                     "few_shot_k": cfg.few_shot_k, "confidence": cfg.confidence,
                     "helpful_rouge_l": cfg.helpful_rouge_l,
                     **({"temperature": cfg.temperature, "top_p": cfg.top_p} if cfg.decoding == "sample" else {})},
        "prompts": {"builtin": counts["builtin"], "suites": suite_counts},
        "toxicity": {"detector": cfg.detector if detector is not None else None,
                     "threshold": round(detector.threshold, 6) if detector is not None else None,
                     "note": detector_note},
        "lineage": lineage.stamp("evaluate", inputs, cfg, seed),
    })


__all__ = ["main"]
