"""Extra evaluation suites: a file plus a small config, no code (as in lm-evaluation-harness).

`params.yaml: evaluate.suites` is a list of mappings (keys documented in
docs/evaluation.md). The evaluate stage scores them; the filter's
decontamination reads them through `suite_prompts` here, so both see the same rows:

    name       short identifier (letters, digits, _), used in metric keys `suite_<name>_...`
    path       CSV / TSV / JSONL / JSON file, optionally .gz, under data/sources/
               (so it is a DVC dependency, like every ingested file). Nested JSON
               objects become dotted columns (`annotations.toxicity.majority_human`);
               a JSON document that nests lists of prompts by category
               ({category: {subcategory: [prompt, ...]}}, as red-instruct's) gives
               columns `prompt` and `category` ("category/subcategory")
    records_path  dotted path to the list of rows inside a JSON document (e.g. `instances`)
    prompt     column holding the prompt text
    kind       harmful | harmless | instruction, for every row; or
    label      column whose value decides the kind per row: values in `harmful_values`
               make the row harmful, others `kind_otherwise` (default harmless)
    reference  optional column with a reference answer (helpfulness: exact match
               when `metric: exact`, else ROUGE-L / BLEU)
    category   optional column reported per row
    limit      optional: evaluate at most N rows, chosen by content hash (stable
               when rows are added); 0 = all

Rows with an empty prompt are counted and skipped, never silently lost.
"""

from __future__ import annotations

import re
from pathlib import Path

from .records import hash_fraction

KINDS = ("harmful", "harmless", "instruction")
SUITE_KEYS = {"name", "path", "prompt", "kind", "label", "harmful_values", "kind_otherwise", "reference",
              "category", "metric", "limit", "records_path"}
SOURCES_DIR = "data/sources"


class SuiteError(ValueError):
    """A suite entry or file is unusable; the message names the suite, file and rule."""


def check_suite(suite: dict, where: str = "evaluate.suites") -> dict:
    """Validate one suite entry from params and fill defaults; raises SuiteError naming the rule."""
    if not isinstance(suite, dict):
        raise SuiteError(f"params.yaml: {where}: each suite must be a mapping, got {type(suite).__name__}")
    unknown = sorted(set(suite) - SUITE_KEYS)
    if unknown:
        raise SuiteError(f"params.yaml: {where}: unknown key(s) {unknown}; allowed: {sorted(SUITE_KEYS)}")
    s = {"kind": "", "label": "", "harmful_values": [], "kind_otherwise": "harmless", "reference": "",
         "category": "", "metric": "rouge", "limit": 0, "records_path": "", **suite}
    for key in ("name", "path", "prompt"):
        if not s.get(key):
            raise SuiteError(f"params.yaml: {where}: `{key}` is required")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", s["name"]):
        raise SuiteError(f"params.yaml: {where}: name {s['name']!r} must be lower-case letters, digits and _")
    if bool(s["kind"]) == bool(s["label"]):
        raise SuiteError(f"params.yaml: {where} ({s['name']}): give exactly one of `kind` or `label`")
    for key in ("kind", "kind_otherwise"):
        if s[key] and s[key] not in KINDS:
            raise SuiteError(f"params.yaml: {where} ({s['name']}): {key} {s[key]!r} is not one of {list(KINDS)}")
    if s["metric"] not in ("exact", "rouge"):
        raise SuiteError(f"params.yaml: {where} ({s['name']}): metric must be exact or rouge")
    path = Path(s["path"])
    if path.is_absolute() or ".." in path.parts or path.parts[:2] != tuple(SOURCES_DIR.split("/")):
        raise SuiteError(f"params.yaml: {where} ({s['name']}): {s['path']} is not under {SOURCES_DIR}/; copy "
                         f"the file there and `dvc add` it, so evaluation depends on tracked data")
    return s


def _nested_prompts(doc, trail: tuple = ()) -> list[dict]:
    """{category: {subcategory: [prompt, ...]}} -> rows {prompt, category: "category/subcategory"}."""
    if isinstance(doc, dict):
        return [row for key, value in doc.items() for row in _nested_prompts(value, trail + (str(key),))]
    if isinstance(doc, list) and all(isinstance(x, str) for x in doc):
        return [{"prompt": x, "category": "/".join(trail)} for x in doc]
    raise ValueError(f"at {'/'.join(trail) or 'the top'}: expected an object or a list of strings")


def _rows_of(doc, records_path: str, path: Path) -> list:
    if records_path:
        for part in records_path.split("."):
            if not isinstance(doc, dict) or part not in doc:
                raise SuiteError(f"{path}: records_path {records_path!r}: no key {part!r}")
            doc = doc[part]
    if isinstance(doc, list):
        return doc
    lists = [v for v in doc.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    if len(lists) == 1:  # e.g. {"dataset": ..., "instances": [...]}
        return lists[0]
    try:
        return _nested_prompts(doc)
    except ValueError as err:
        raise SuiteError(f"{path}: not a list of rows and not prompts nested by category ({err}); "
                         f"set records_path") from None


def read_table(path: Path, records_path: str = ""):
    """A DataFrame from CSV / TSV / JSONL / JSON, each optionally gzipped; nested objects
    become dotted columns."""
    import gzip
    import json

    import pandas as pd

    name = path.name.lower().removesuffix(".gz")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        if name.endswith(".csv"):
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if name.endswith(".tsv"):
            return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        if name.endswith(".jsonl"):
            with opener(path, "rt", encoding="utf-8-sig") as fh:
                rows = []
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise SuiteError(f"{path}: line {n} is not JSON ({err.msg})") from None
            return pd.json_normalize(rows)
        if name.endswith(".json"):
            with opener(path, "rt", encoding="utf-8-sig") as fh:
                return pd.json_normalize(_rows_of(json.load(fh), records_path, path))
    except (ValueError, UnicodeDecodeError, OSError) as err:
        raise SuiteError(f"{path}: cannot be read as {name.rsplit('.', 1)[-1].upper()}: {err}") from None
    raise SuiteError(f"{path}: unknown suite format (use .csv, .tsv, .jsonl or .json, optionally .gz)")


def _text(value) -> str:
    if value is None or (isinstance(value, float) and value != value):  # NaN from pandas
        return ""
    return str(value).strip()


def load_suite(suite: dict, root: Path = Path(".")) -> tuple[list[dict], dict]:
    """(evaluation rows, counts) for one suite entry. Rows look like data/formatted/eval.jsonl
    rows plus `kind`, `scope` and `metric`; counts say how many rows were read, skipped, kept."""
    s = check_suite(suite)
    path = root / s["path"]
    if not path.is_file():
        raise SuiteError(f"suite {s['name']}: {s['path']} does not exist")
    df = read_table(path, s["records_path"])
    for key in ("prompt", "label", "reference", "category"):
        if s[key] and s[key] not in df.columns:
            raise SuiteError(f"suite {s['name']}: {s['path']}: no column {s[key]!r} (`{key}`); "
                             f"columns: {list(df.columns)}")
    harmful_values = {str(v).strip().lower() for v in s["harmful_values"]}
    rows, skipped = [], 0
    for i, rec in enumerate(df.to_dict(orient="records")):
        prompt = _text(rec[s["prompt"]])
        if not prompt:
            skipped += 1
            continue
        if s["kind"]:
            kind = s["kind"]
        else:
            kind = "harmful" if _text(rec[s["label"]]).lower() in harmful_values else s["kind_otherwise"]
        reference = _text(rec[s["reference"]]) if s["reference"] else ""
        rows.append({
            "id": f"{s['name']}:{i}", "source": s["name"], "locator": f"{s['path']}:row={i}",
            "prompt": [{"role": "user", "content": prompt}], "reference": reference or None,
            "group": "suite", "family": s["name"], "category": _text(rec[s["category"]]) if s["category"] else None,
            "heldout": True, "split": "suite", "kind": kind, "scope": s["name"],
            "metric": s["metric"] if reference else None,
        })
    read = len(rows)
    if s["limit"] and len(rows) > s["limit"]:
        rows = sorted(rows, key=lambda r: (hash_fraction(r["prompt"][0]["content"]), r["id"]))[: s["limit"]]
        rows.sort(key=lambda r: int(r["id"].rsplit(":", 1)[1]))
    return rows, {"rows": len(df), "empty_prompt": skipped, "read": read, "evaluated": len(rows)}


def suite_prompts(suites: list[dict], root: Path = Path(".")) -> dict[str, str]:
    """Every prompt of every suite (all rows, not only the `limit` sample), keyed
    `suite:<name>:<row>`: what the filter's decontamination must keep out of training data,
    read by the same code that evaluation uses."""
    out = {}
    for suite in suites:
        rows, _ = load_suite({**suite, "limit": 0}, root)
        out.update({f"suite:{r['id']}": r["prompt"][-1]["content"] for r in rows})
    return out
