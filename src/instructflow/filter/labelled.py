"""Read labelled classification files (CSV, JSON, JSONL, optionally gzipped) into
(text, text2, label) rows, for the audit CLI and the detector measurement.

A file is described by a `Spec`: where the row list is (`records`, a dotted path
into a JSON object, or empty for a top-level list / JSONL / CSV), which fields hold
the text, the optional second text (a response) and the label (dotted paths into
each row), and which label value means unsafe (`positive`). Presets describe the
public sets in `../shared/data` (see PRESETS and docs/filter.md), including the
GuardReasoner layout whose `input` holds "Human user:\\n{prompt}\\n\\nAI assistant:\\n
{response}" and whose `output` ends in "Response: harmful".

The pipeline itself never reads these files: it reads ingest `labelled` sources
through data/formatted/labelled.jsonl. This module is for measuring on files as
they come.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

csv.field_size_limit(1 << 30)


class LabelledFileError(ValueError):
    """A labelled file cannot be read as specified; the message names the file and the row."""


@dataclass(frozen=True)
class Spec:
    text: str
    label: str
    text2: str = ""
    positive: tuple = ("1",)
    records: str = ""                # dotted path to the row list inside a JSON object
    layout: str = "plain"            # plain | human_ai (GuardReasoner input/output)
    unescape_newlines: bool = False  # DICES stores turns joined by a literal backslash-n
    skip_labels: tuple = ()          # label values that are neither safe nor unsafe (e.g. "Unsure")


PRESETS: dict[str, Spec] = {
    # GuardReasoner benchmark files: beavertails (prompt + response), aegis (prompt only).
    "guardreasoner": Spec(text="input", text2="input", label="output", positive=("harmful",), layout="human_ai"),
    "toxicchat": Spec(text="instance", label="annotations.toxicity.majority_human", positive=("1",),
                      records="instances"),
    "dices": Spec(text="instance.user_prompt", text2="instance.response", label="annotations.safety.majority_human",
                  positive=("Yes",), records="instances", unescape_newlines=True, skip_labels=("Unsure",)),
    "diasafety": Spec(text="context", text2="response", label="label", positive=("Unsafe",)),
    "jigsaw": Spec(text="comment_text", label="toxic", positive=("1",)),
    "toxigen": Spec(text="text", label="label", positive=("hate",)),
    "hatecheck": Spec(text="test_case", label="label_gold", positive=("hateful",)),
    # Davidson et al.: class 0 hate speech, 1 offensive language, 2 neither.
    "hate-offensive": Spec(text="tweet", label="class", positive=("0", "1")),
    # Benign instruction data: every row is safe (label 0), for the benign-flag rate.
    "alpaca": Spec(text="instruction", text2="output", label=""),
    "dolly": Spec(text="instruction", text2="response", label=""),
    # Helpful answers to harmless prompts that look unsafe (CoCoNot contrast preferences): all safe.
    "coconot-chosen": Spec(text="prompt", text2="chosen", label=""),
    "self-instruct": Spec(text="instruction", text2="instances.0.output", label=""),
}

_HUMAN_AI = re.compile(r"^\s*Human user:\s*\n(.*?)\n\s*AI assistant:\s*\n(.*)$", re.S)
_VERDICT = re.compile(r"Response:\s*(\w+)\s*$|^\s*(\w+)\s*$", re.S)


def _open_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelledFileError(f"{path}: not UTF-8 ({err})") from None


def read_rows(path: str | Path, records: str = "") -> list[dict]:
    """Rows of a CSV, JSON (list, or object with the list at `records`) or JSONL file, .gz allowed."""
    path = Path(path)
    text = _open_text(path)
    kind = path.name.removesuffix(".gz").rsplit(".", 1)[-1].lower()
    if kind == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    if kind == "jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise LabelledFileError(f"{path}: line {n}: not JSON ({err.msg})") from None
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise LabelledFileError(f"{path}: not JSON ({err.msg} at line {err.lineno}); "
                                "a file with one object per line should be named .jsonl") from None
    if records:
        data = get_path(data, records)
    if not isinstance(data, list):
        raise LabelledFileError(f"{path}: expected a list of rows"
                                + (f" at `{records}`" if records else "; pass --records KEY for a nested list"))
    return data


def get_path(row, dotted: str):
    """`a.b.c` into nested dicts (`a.0.b`: an index into a list); None when a key is missing."""
    cur = row
    for key in dotted.split("."):
        if isinstance(cur, list) and key.isdigit():
            if int(key) >= len(cur):
                return None
            cur = cur[int(key)]
        elif isinstance(cur, dict) and key in cur:
            cur = cur[key]
        else:
            return None
    return cur


def _split_human_ai(value: str) -> tuple[str, str]:
    m = _HUMAN_AI.match(value or "")
    if not m:
        return (value or "").strip(), ""
    prompt, response = m.group(1).strip(), m.group(2).strip()
    return prompt, "" if response == "None" else response


def _verdict(value) -> str:
    s = str(value).strip()
    m = _VERDICT.search(s)
    return (m.group(1) or m.group(2)) if m else s


def load(path: str | Path, spec: Spec) -> tuple[list[str], list[str], list[int]]:
    """(texts, texts2, labels 0/1) of a labelled file; texts2 entries are '' where the row has no response.

    Rows whose label is missing, empty or in `skip_labels` are dropped (and counted in the error
    message only if nothing is left); a spec with an empty `label` marks every row safe (0)."""
    path = Path(path)
    texts, texts2, labels = [], [], []
    positive = {str(p) for p in spec.positive}
    for n, row in enumerate(read_rows(path, spec.records)):
        if not isinstance(row, dict):
            raise LabelledFileError(f"{path}: row {n}: expected an object, got {type(row).__name__}")
        if spec.layout == "human_ai":
            t1, t2 = _split_human_ai(get_path(row, spec.text))
        else:
            t1 = get_path(row, spec.text)
            t2 = get_path(row, spec.text2) if spec.text2 else ""
            if t1 is None:
                raise LabelledFileError(f"{path}: row {n}: no field `{spec.text}`")
        t1, t2 = str(t1 or ""), str(t2 or "")
        if spec.unescape_newlines:
            t1, t2 = t1.replace("\\n", "\n").strip(), t2.replace("\\n", "\n").strip()
        if spec.label:
            raw = get_path(row, spec.label)
            if raw is None or str(raw).strip() == "":
                continue
            value = _verdict(raw) if spec.layout == "human_ai" else str(raw).strip()
            if value in spec.skip_labels:
                continue
            label = int(value in positive)
        else:
            label = 0
        texts.append(t1)
        texts2.append(t2)
        labels.append(label)
    if not texts:
        raise LabelledFileError(f"{path}: no labelled rows (text `{spec.text}`, label `{spec.label}`)")
    return texts, texts2, labels


def spec_for(preset: str = "", **overrides) -> Spec:
    """A preset with command-line overrides applied (None values ignored)."""
    if preset and preset not in PRESETS:
        raise LabelledFileError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    base = PRESETS.get(preset) or Spec(text="", label="")
    given = {k: v for k, v in overrides.items() if v is not None}
    if "positive" in given and isinstance(given["positive"], str):
        given["positive"] = tuple(given["positive"].split(","))
    spec = replace(base, **given)
    if not spec.text:
        raise LabelledFileError("say which field holds the text: --text COL (or --preset NAME)")
    return spec
