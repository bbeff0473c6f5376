"""What the report says, as plain data: every number read from the stage outputs, judged and laid out.

Everything here is a pure function of the inputs (no clock, no randomness, sorted
iteration), so the rendered files are byte-identical when the inputs are. The
metrics schema is read generically: a metric is a number or a dict with `value`
(or `rate`), optional `low`/`high` (or `ci`), `n` and `k`; groups nest, and a
dotted path (`task.heldout_item.em`) names one metric. See docs/evaluation.md.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..lineage import file_sha256
from ..records import read_jsonl

DATA_STAGES = ("ingest", "validate", "format", "filter")
TRAIN_STAGES = ("base", "sft", "safety")
GENERATIONS = "evaluate/generations.jsonl"
DETECTOR = "detector/metrics.json"
CLASS_KEYS = ("precision", "recall")
OPS = {">=": "≥", "<=": "≤"}
MAX_CELL = 400  # characters of corpus text shown per cell
TRAIN_ORDER = ("method", "steps", "final_train_loss", "best_eval_loss", "final_eval_loss", "best_step",
               "final_reward_accuracy", "parameters", "vocab_size", "pretrain_blocks", "train_examples",
               "validation_examples", "pairs")


# --------------------------------------------------------------------------- reading
def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def stage_files(reports: Path) -> dict[str, str]:
    """Stage -> its summary or metrics file (relative to `reports`), for every stage that wrote one."""
    out = {}
    for path in sorted(reports.glob("*/*.json")):
        if path.name in ("summary.json", "metrics.json") and path.parent.name not in out:
            out[path.parent.name] = path.relative_to(reports).as_posix()
    return out


def load_inputs(reports: str | Path, lock: str | Path | None) -> dict:
    """Every input as plain data; a missing file reads as {} (or [] / None)."""
    reports = Path(reports)
    files = stage_files(reports)
    data = {"reports": reports.as_posix(), "files": files,
            "stages": {stage: read_json(reports / rel) for stage, rel in files.items()}}
    data["sha"] = {rel: file_sha256(reports / rel) for rel in [*files.values(), GENERATIONS]
                   if (reports / rel).is_file()}
    gen = reports / GENERATIONS
    data["generations"] = list(read_jsonl(gen)) if gen.is_file() else []
    data["lock"] = None
    if lock and Path(lock).is_file():
        import yaml

        data["lock"] = yaml.safe_load(Path(lock).read_text(encoding="utf-8")) or {}
    data["curves"] = {stage: read_curves(reports / stage / "live") for stage in TRAIN_STAGES}
    return data


def read_curves(live: Path) -> dict[str, list[tuple[float, float]]]:
    """dvclive's step-indexed TSVs (plots/metrics/*.tsv): metric -> [(step, value)]."""
    out = {}
    for tsv in sorted((live / "plots" / "metrics").rglob("*.tsv")):
        rows = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(rows) < 2:
            continue
        head = rows[0]
        if "step" not in head or len(head) < 2:
            continue
        s, v = head.index("step"), next(i for i, h in enumerate(head) if h not in ("step", "timestamp"))
        out[tsv.relative_to(live / "plots" / "metrics").with_suffix("").as_posix()] = \
            [(float(r[s]), float(r[v])) for r in rows[1:] if len(r) == len(head)]
    return out


# --------------------------------------------------------------------------- metrics, generically
def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def leaf(obj) -> dict | None:
    """{value, low, high, n, k} of a metric, or None when `obj` is not one."""
    if _number(obj):
        return {"value": obj}
    if isinstance(obj, dict):
        value = obj.get("value", obj.get("rate"))
        if _number(value):
            low, high = obj.get("low"), obj.get("high")
            if isinstance(obj.get("ci"), (list, tuple)) and len(obj["ci"]) == 2:
                low, high = obj["ci"]
            return {"value": value, "low": low, "high": high, "n": obj.get("n"), "k": obj.get("k")}
    return None


def flatten(obj, prefix: str = "") -> dict[str, dict]:
    """Dotted path -> leaf, for every metric under `obj` (lineage and lists skipped)."""
    out: dict[str, dict] = {}
    found = leaf(obj)
    if found is not None:
        return {prefix: found} if prefix else {}
    if isinstance(obj, dict):
        for key in sorted(obj, key=str):
            if key != "lineage":
                out.update(flatten(obj[key], f"{prefix}.{key}" if prefix else str(key)))
    return out


def model_order(names) -> list[str]:
    rank = {"base": 0, "sft": 2, "safety": 3}
    return sorted(names, key=lambda m: (rank.get(m, 1 if str(m).startswith("base") else 4), str(m)))


def normalise(model: dict) -> dict:
    """evaluate's per-model dict (flat values + `n`, `ci_lo`, `ci_hi` maps, docs/evaluation.md) as leaves
    {value, low, high, n}; nested groups (classification, judge_agreement) stay nested."""
    n, lo, hi = (model.get(k) if isinstance(model.get(k), dict) else {} for k in ("n", "ci_lo", "ci_hi"))
    out = {}
    for key, v in model.items():
        if key in ("n", "ci_lo", "ci_hi", "lineage"):
            continue
        if _number(v) and key in n:
            out[key] = {"value": v, "low": lo.get(key), "high": hi.get(key), "n": n[key]}
        else:
            out[key] = v
    return out


def eval_models(metrics: dict) -> dict[str, dict]:
    """Model -> its metrics as leaves, in the order base → base_fewshot → sft → safety.

    evaluate lists its variants under `models` and writes each at the top level (schema 2); a dict under
    `models`, or model dicts at the top without a list, are read too."""
    names = metrics.get("models")
    if isinstance(names, list):
        models = {m: metrics[m] for m in names if isinstance(metrics.get(m), dict)}
    elif isinstance(names, dict):
        models = names
    else:
        models = {k: v for k, v in metrics.items() if k not in NOT_MODELS and isinstance(v, dict)}
    return {m: normalise(models[m]) for m in model_order(models)}


NOT_MODELS = ("lineage", "settings", "judges", "suites", "prompts", "toxicity", "meta")


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (dict, list)):
        return compact(v)
    return str(v)


def fmt_leaf(lf: dict | None) -> str:
    """`0.8125 [0.7512, 0.8634] n=120`: the value, its interval and sample size when known."""
    if lf is None:
        return "n/a"
    out = fmt(lf["value"])
    if _number(lf.get("low")) and _number(lf.get("high")):
        out += f" [{fmt(float(lf['low']))}, {fmt(float(lf['high']))}]"
    if lf.get("n") is not None:
        out += f" n={lf['n']}"
    return out


def compact(obj, max_items: int = 4) -> str:
    """One-line JSON; long lists (term lists and the like) shrink to their length."""
    def shrink(o):
        if isinstance(o, dict):
            return {str(k): shrink(v) for k, v in o.items()}
        if isinstance(o, list):
            return f"[{len(o)} items]" if len(o) > max_items else [shrink(v) for v in o]
        return o
    return "n/a" if obj is None else json.dumps(shrink(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def clip(text) -> str:
    if isinstance(text, list):  # a chat: its turns, one per line
        text = "\n".join(f"{t.get('role', '?')}: {t.get('content', '')}" if isinstance(t, dict) else str(t)
                         for t in text)
    text = "n/a" if text is None else str(text)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL] + "…"


def _num(d: dict | None, key: str):
    v = (d or {}).get(key)
    return v if _number(v) else None


# --------------------------------------------------------------------------- targets
def check_target(target, models: dict) -> tuple:
    """(measured leaf, threshold, PASS | FAIL | n/a) of one config.TargetConfig."""
    measured = flatten((models or {}).get(target.model) or {}).get(target.metric)
    thr = target.value
    if target.relative is not None:
        ref = flatten((models or {}).get(target.relative.model) or {}).get(target.relative.metric)
        thr = None if ref is None else round(ref["value"] + target.relative.offset, 6)
    if measured is None or thr is None:
        return measured, thr, "n/a"
    value = measured["value"]
    return measured, thr, "PASS" if (value >= thr if target.op == ">=" else value <= thr) else "FAIL"


def targets_table(targets, models: dict) -> list[list[str]]:
    rows = []
    for t in targets:
        measured, limit, status = check_target(t, models)
        if t.relative is None:
            rule = f"{OPS[t.op]} {t.value:g}"
        else:
            r = t.relative
            rule = (f"{OPS[t.op]} {r.model} {r.metric} {'+' if r.offset >= 0 else '−'} {abs(r.offset):g}"
                    f" = {fmt(limit)}")
        rows.append([t.name, f"{t.model} {t.metric}", fmt_leaf(measured), rule, status])
    return rows


# --------------------------------------------------------------------------- data accounting
def _status(left, right) -> str:
    if left is None or right is None:
        return "n/a"
    return "OK" if left == right else f"MISMATCH ({left - right})"


def _sum(*vals):
    return None if any(v is None for v in vals) else sum(vals)


def accounting(stages: dict) -> dict:
    """Where every raw record went: flow rows, conservation checks and one verdict."""
    ing, val, frm, flt = (stages.get(s) or {} for s in DATA_STAGES)
    raw, q, valid = _num(ing, "records"), _num(val, "quarantined"), _num(val, "valid")
    f_sft, f_pairs, f_eval = _num(frm, "sft"), _num(frm, "pairs"), _num(frm, "eval")
    # prompt-only prompts and labelled classification rows: 0 when a summary predates them
    f_prompts, f_labelled = (_num(frm, k) or 0 if frm else None for k in ("prompts", "labelled"))
    k_sft, k_pairs, conv = _num(flt, "kept_sft"), _num(flt, "kept_pairs"), _num(flt, "converted_to_pairs")
    k_prompts = _num(flt, "kept_prompts") or 0 if flt else None
    removed, ev = _num(flt, "removed"), _num(flt, "eval")
    orig_pairs = None if k_pairs is None or conv is None else k_pairs - conv

    def sub(stage, d):
        return [[stage, f"↳ {k}", fmt(v)] for k, v in sorted((d or {}).items()) if not isinstance(v, dict)]

    flow = ([["ingest", "raw records", fmt(raw)]] + sub("ingest", ing.get("by_source"))
            + [["validate", "quarantined by validation", fmt(q)]] + sub("validate", val.get("quarantined_by_rule"))
            + [["validate", "valid records", fmt(valid)], ["format", "SFT examples", fmt(f_sft)],
               ["format", "preference pairs", fmt(f_pairs)], ["format", "prompt-only prompts", fmt(f_prompts)],
               ["format", "labelled rows (for the harm detector)", fmt(f_labelled)],
               ["format", "eval prompts", fmt(f_eval)]]
            + sub("format", frm.get("eval_by_group"))
            + [["filter", "removed by the filter", fmt(removed)]] + sub("filter", flt.get("removed_by_reason"))
            + [["filter", "kept: SFT examples (training)", fmt(k_sft)],
               ["filter", "kept: preference pairs from the corpus", fmt(orig_pairs)],
               ["filter", "kept: safety pairs converted from harmful compliance", fmt(conv)],
               ["filter", "kept: prompt-only prompts", fmt(k_prompts)],
               ["filter", "kept: eval prompts", fmt(ev)]])
    checks = [
        ("raw = quarantined + kept SFT + corpus pairs + converted pairs + kept prompts + removed + eval + labelled",
         raw, _sum(q, k_sft, orig_pairs, conv, k_prompts, removed, ev, f_labelled)),
        ("ingest records = validate rows", raw, _num(val, "rows")),
        ("validate rows = valid + quarantined", _num(val, "rows"), _sum(valid, q)),
        ("valid = format SFT + pairs + prompts + labelled + eval", valid,
         _sum(f_sft, f_pairs, f_prompts, f_labelled, f_eval)),
        ("format SFT + pairs + prompts = filter kept SFT + kept pairs (converted included) + kept prompts + removed",
         _sum(f_sft, f_pairs, f_prompts), _sum(k_sft, k_pairs, k_prompts, removed)),
        ("format eval = filter eval", f_eval, ev),
    ]
    # per source (docs/data-contract.md section 5): raw records reach validate, valid ones reach format
    sources = ing.get("sources") if isinstance(ing.get("sources"), dict) else {}
    val_by, frm_by = val.get("by_source") or {}, frm.get("by_source") or {}
    for src in sorted(set(sources) | set(val_by)):
        v, f = val_by.get(src) or {}, frm_by.get(src)
        if val_by:
            checks.append((f"{src}: ingest records = validate rows", _num(sources.get(src), "records"), _num(v, "rows")))
        if val_by and frm_by:
            checks.append((f"{src}: validate valid = format outputs", _num(v, "valid"),
                           sum(x for x in (f or {}).values() if _number(x))))
    rows = [[name, fmt(left), fmt(right), _status(left, right)] for name, left, right in checks]
    states = [r[3] for r in rows]
    status = "OK" if all(s == "OK" for s in states) else next((s for s in states if s not in ("n/a", "OK")), "n/a")
    bars = [(label, int(v)) for label, v in (
        ("raw records", raw), ("quarantined (validate)", q), ("removed (filter)", removed),
        ("kept SFT examples", k_sft), ("kept preference pairs", k_pairs), ("kept prompt-only prompts", k_prompts),
        ("labelled rows (detector)", f_labelled), ("eval prompts", ev)) if v is not None]
    return {"flow": flow, "checks": rows, "status": status, "bars": bars}


def _numeric_leaves(obj, prefix: str = "") -> dict[str, object]:
    if _number(obj):
        return {prefix: obj}
    out = {}
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            out.update(_numeric_leaves(obj[k], f"{prefix}.{k}" if prefix else str(k)))
    return out


def sources_table(stages: dict) -> tuple[list[str], list[list[str]]]:
    """Per source: license, raw records, unparseable rows, kinds and files, from the ingest summary."""
    ing = stages.get("ingest") or {}
    sources = ing.get("sources") if isinstance(ing.get("sources"), dict) else {}
    if not sources:  # an older summary: counts only
        sources = {s: {"records": v} for s, v in (ing.get("by_source") or {}).items() if _number(v)}
    rows = [[name, str(e.get("license", "n/a")), fmt(e.get("records")), fmt(e.get("errors")),
             ", ".join(f"{k} {v}" for k, v in sorted((e.get("by_kind") or {}).items())) or "n/a",
             "\n".join(f"{f} ({n})" for f, n in sorted((e.get("files") or {}).items())) or "n/a"]
            for name, e in sorted(sources.items())]
    return ["source", "license", "raw records", "unparseable", "kinds", "files (records)"], rows


def per_source_flow(stages: dict) -> list[list[str]]:
    """Per source and stage, every count the stages report by source (`by_source`, `<what>_by_source`):
    kept, quarantined by rule, removed by reason."""
    rows = []
    for stage in ("ingest", "validate", "format", "detector", "filter"):
        summary = stages.get(stage) or {}
        for key in sorted(k for k in summary if k == "by_source" or k.endswith("_by_source")):
            what = key[: -len("_by_source")] if key != "by_source" else ""
            for src, entry in sorted((summary.get(key) or {}).items()):
                leaves = _numeric_leaves(entry) if isinstance(entry, dict) else {"records": entry}
                for name, v in leaves.items():
                    step = ".".join(x for x in (what, name) if x) or "records"
                    if stage == "ingest" and key == "by_source":
                        step = "raw records"
                    rows.append([src, stage, step, fmt(v)])
    return rows


def data_docs_link(val: dict, reports: Path, out: Path) -> str | None:
    """Relative link from the report to the Great Expectations Data Docs, if validate wrote them."""
    import os

    named = val.get("data_docs") if isinstance(val.get("data_docs"), str) else None
    candidates = [Path(named)] if named else sorted(reports.glob("validate/**/index.html"))
    for cand in candidates:
        if cand.is_file():
            return Path(os.path.relpath(cand, out)).as_posix()
    return None


# --------------------------------------------------------------------------- classification results
def class_rows(obj, prefix: str = "") -> list[list[str]]:
    """Every {precision, recall, ...} dict under `obj` as a row: where, n, positives, precision, recall, f1."""
    if isinstance(obj, dict) and all(k in obj for k in CLASS_KEYS):
        return [[prefix or "all", fmt(obj.get("n", obj.get("support"))), fmt(obj.get("positives")),
                 fmt(obj.get("precision")), fmt(obj.get("recall")), fmt(obj.get("f1"))]]
    rows = []
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            if k != "lineage":
                rows += class_rows(obj[k], f"{prefix}.{k}" if prefix else str(k))
    return rows


CLASS_HEADER = ["measured on", "n", "positives", "precision", "recall", "F1"]


# --------------------------------------------------------------------------- evaluation
HEADLINE = ("task_em_seen", "task_em_heldout_phrasing", "task_em_heldout_item", "task_em_heldout", "task_em",
            "general_em_seen", "general_em_heldout_phrasing", "general_em_heldout_item", "general_em",
            "refusal", "refusal_seen", "refusal_heldout_phrasing", "refusal_heldout_item", "refusal_heldout",
            "over_refusal", "over_refusal_lookalike", "over_refusal_instruction", "over_refusal_heldout",
            "helpful", "helpful_lookalike", "helpful_instruction", "rouge_l", "bleu", "unsafe_reply",
            "ppl_pretrain_heldout.ppl", "ppl_answers_heldout.ppl")
SPLITS = ("seen", "heldout_phrasing", "heldout_item")


def harm_categories(generations: list[dict]) -> list[str]:
    """Categories of the harmful prompts, from the generations (metric keys are `refusal_<category>`)."""
    return sorted({str(r["category"]) for r in generations if r.get("kind") == "harmful" and r.get("category")})


def _category_key(path: str, categories: list[str]) -> bool:
    return any(path == f"refusal_{c}" or path.startswith(f"refusal_{c}_by_") for c in categories)


def eval_table(models: dict, categories: list[str] = ()) -> tuple[list[str], list[list[str]]]:
    """Rows = metrics (headline first, then the rest by name), columns = models base → sft → safety;
    per-category refusals and per-class precision / recall go to their own tables."""
    flat = {m: flatten(v) for m, v in models.items()}
    paths = {p for f in flat.values() for p in f
             if not _category_key(p, categories) and not p.startswith(("classification", "n_prompts"))}
    order = [p for p in HEADLINE if p in paths] + sorted(paths - set(HEADLINE))
    return ["metric", *models], [[p, *(fmt_leaf(flat[m].get(p)) for m in models)] for p in order]


EVAL_GROUPS = (  # (title, key prefixes), first match wins
    ("Instruction following (exact match)", ("task_em", "general_em", "em_")),
    ("Refusal of harmful prompts", ("refusal",)),
    ("Over-refusal of harmless prompts", ("over_refusal",)),
    ("Helpfulness against references", ("helpful", "rouge_l", "bleu")),
    ("Toxicity of replies (harm detector)", ("unsafe_reply",)),
    ("Alignment tax (perplexity on held-out text)", ("ppl_",)),
    ("Extra suites", ("suite_",)),
    ("Judge agreement", ("judge_agreement",)),
)


def eval_groups(header: list[str], rows: list[list[str]]) -> list[dict]:
    """The evaluation table cut into readable groups (instruction following, refusal, ...), order kept."""
    groups = {title: [] for title, _ in EVAL_GROUPS} | {"Other": []}
    for row in rows:
        title = next((t for t, prefixes in EVAL_GROUPS if row[0].startswith(prefixes)), "Other")
        groups[title].append(row)
    return [{"title": t, "header": header, "rows": r} for t, r in groups.items() if r]


def rate_charts(models: dict, categories: list[str], judges: list[str] = (), suites: list[str] = ()) -> list[dict]:
    """Charts of related rates, one bar per model: {name, title, categories, series: {model: [leaf]}}.
    Refusal per harm category (every judge), refusal and task accuracy per split, over-refusal and
    helpfulness per kind of harmless prompt."""
    specs = [("refusal-category", "refusal by harm category (primary judge)", [(c, f"refusal_{c}") for c in categories])]
    specs += [(f"refusal-category-{j}", f"refusal by harm category (judge: {j})",
               [(c, f"refusal_{c}_by_{j}") for c in categories]) for j in judges]
    specs += [
        ("refusal-split", "refusal of harmful prompts by split", [(s, f"refusal_{s}") for s in SPLITS]),
        ("over-refusal", "over-refusal of harmless prompts", [
            ("look-alikes", "over_refusal_lookalike"), ("instructions", "over_refusal_instruction"),
            *((f"look-alikes {s}", f"over_refusal_lookalike_{s}") for s in SPLITS)]),
        ("helpful", "helpful answers to harmless prompts", [
            ("look-alikes", "helpful_lookalike"), ("instructions", "helpful_instruction"),
            *((f"look-alikes {s}", f"helpful_lookalike_{s}") for s in SPLITS)]),
        ("task-split", "task exact match by split", [(s, f"task_em_{s}") for s in SPLITS]),
        ("suites", "extra suites: refusal of harmful and refusal of other prompts",
         [bar for name in suites for bar in ((f"{name} refusal", f"suite_{name}_refusal"),
                                             (f"{name} over-refusal", f"suite_{name}_over_refusal"))]),
    ]
    flat = {m: flatten(v) for m, v in models.items()}
    charts = []
    for name, title, bars in specs:
        bars = [(label, key) for label, key in bars if any(key in f for f in flat.values())]
        if not bars:
            continue
        series = {m: [flat[m].get(key) for _, key in bars] for m in models if any(key in flat[m] for _, key in bars)}
        charts.append({"name": name, "title": title, "categories": [b[0] for b in bars], "series": series})
    return charts


def category_table(chart: dict) -> tuple[list[str], list[list[str]]]:
    models = list(chart["series"])
    return ["category", *models], [[c, *(fmt_leaf(chart["series"][m][i]) for m in models)]
                                   for i, c in enumerate(chart["categories"])]


def _flags(row: dict) -> str:
    """The judges' verdicts and correctness stored on a generation, e.g. `[correct, refused:prefix]`."""
    marks = []
    for key in sorted(row):
        v = row[key]
        if key == "heldout":  # the split is in the block's title
            continue
        if isinstance(v, bool) and v:
            marks.append(key)
        elif isinstance(v, dict):
            marks += [f"{key}:{k}" for k, b in sorted(v.items()) if isinstance(b, bool) and b]
    return f" [{', '.join(marks)}]" if marks else ""


def sample_blocks(generations: list[dict], k: int) -> list[dict]:
    """Per category (and split): the first k prompts by id, with every model's reply."""
    by: dict = defaultdict(lambda: defaultdict(dict))
    for r in generations:
        category = r.get("category") or r.get("family") or r.get("group") or "uncategorised"
        if r.get("scope") not in (None, "builtin"):  # an extra suite
            category = f"{r['scope']}: {category}"
        split = r.get("split") or ("held-out" if r.get("heldout") else "seen" if "heldout" in r else "")
        by[(str(category), str(split))][str(r.get("id"))][str(r.get("model"))] = r
    blocks = []
    for (category, split), items in sorted(by.items()):
        models = model_order({m for per in items.values() for m in per})
        rows = []
        for id_ in sorted(items)[:k]:
            per = items[id_]
            first = per[min(per)]  # prompt and reference are the same for every model
            rows.append([id_, clip(first.get("prompt", first.get("messages"))), clip(first.get("reference")),
                         *(clip(per[m].get("reply", per[m].get("response"))) + _flags(per[m]) if m in per else "n/a"
                           for m in models)])
        blocks.append({"title": f"{category} / {split}" if split else category,
                       "header": ["id", "prompt", "reference", *models], "rows": rows})
    return blocks


# --------------------------------------------------------------------------- training
def training_table(stages: dict) -> tuple[list[str], list[list[str]]]:
    keys = {k for m in TRAIN_STAGES for k, v in (stages.get(m) or {}).items()
            if k != "lineage" and not isinstance(v, (dict, list))}
    order = [k for k in TRAIN_ORDER if k in keys] + sorted(keys - set(TRAIN_ORDER))
    return ["metric", *TRAIN_STAGES], [[k, *(fmt((stages.get(m) or {}).get(k)) for m in TRAIN_STAGES)]
                                       for k in order]


# --------------------------------------------------------------------------- lineage
def lock_outs(lock: dict | None) -> dict[str, tuple[str, str]]:
    """Output path -> (dvc stage, md5) from dvc.lock."""
    out = {}
    for stage, entry in ((lock or {}).get("stages") or {}).items():
        for o in (entry or {}).get("outs") or []:
            out[o.get("path")] = (stage, o.get("md5") or o.get("checksum") or "n/a")
    return out


def source_note(data: dict, *rels: str) -> str:
    """Which stage and file the numbers above come from, with the file's hashes."""
    outs, parts = lock_outs(data["lock"]), []
    for rel in rels:
        path, sha = f"{data['reports']}/{rel}", data["sha"].get(rel)
        stage, md5 = outs.get(path, (rel.split("/")[0], "n/a"))
        parts.append(f"`{path}` (stage `{stage}`, sha256 {sha[:12] if sha else 'n/a'}, dvc.lock md5 {md5})")
    return "Source: " + "; ".join(parts) + "."


def machine_text(m: dict | None) -> str:
    if not m:
        return "n/a"
    return ", ".join(f"{k} {v}" for k, v in m.items())


def lineage_rows(data: dict) -> list[list[str]]:
    rows = []
    for stage, rel in data["files"].items():
        lin = (data["stages"].get(stage) or {}).get("lineage") or {}
        code = lin.get("code") or {}
        sha = data["sha"].get(rel)
        code_files = "\n".join(f"{p} {h[:12]}" for p, h in sorted((code.get("files") or {}).items()))
        inputs = "\n".join(f"{p} {h[:12]}" for p, h in sorted((lin.get("inputs") or {}).items())) or "none"
        rows.append([f"{data['reports']}/{rel}", lin.get("stage", stage), sha[:12] if sha else "n/a",
                     (code.get("sha256") or "n/a")[:12] + ("\n" + code_files if code_files else ""),
                     machine_text(lin.get("machine")), fmt(lin.get("seed")), inputs, compact(lin.get("params"))])
    return rows


LINEAGE_HEADER = ["file", "stage", "sha256", "code (sha256)", "machine", "seed", "inputs (sha256)", "params"]


def _hashes(items) -> str:
    return "\n".join(f"{i.get('path')} {i.get('md5') or 'n/a'}" for i in items or []) or "none"


def lock_rows(lock: dict | None) -> list[list[str]]:
    rows = []
    for stage, entry in ((lock or {}).get("stages") or {}).items():
        if stage == "report":  # this stage's own entry describes the previous report
            continue
        entry = entry or {}
        params = {k: v for f in (entry.get("params") or {}).values() for k, v in (f or {}).items()}
        rows.append([stage, _hashes(entry.get("outs")), _hashes(entry.get("deps")), compact(params or None)])
    return rows


def machines(data: dict) -> list[str]:
    """The distinct machines the stamped numbers were computed on."""
    seen = {machine_text(((s or {}).get("lineage") or {}).get("machine")) for s in data["stages"].values()}
    return sorted(seen - {"n/a"})
