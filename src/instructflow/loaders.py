"""Readers that turn source files into raw records: a container layer and a schema layer.

Container (how rows are stored) is told by the file suffix, or by a generic format:
    .json        one JSON document: a list of rows, a {key: [rows]} wrapper (`records_path`),
                 or, for prompt lists, nested {category: {subcategory: [question, ...]}}
    .jsonl       one JSON object per line (.ndjson too)
    .csv / .tsv  a header row, then rows (quoted fields may hold newlines)
    .parquet     read with pyarrow, batch by batch
    folder       a `datasets` dataset saved with save_to_disk, or a folder of data files
    hf:ID        a Hugging Face hub dataset id (network; not a DVC-tracked file)
    any + .gz    gzip is detected by its magic bytes and decompressed
Schema (what a row means) is the source's `format`: alpaca, dolly, sharegpt, messages,
preference, hh-rlhf, prompts, labelled; the generic formats (csv, jsonl, parquet, hf)
take the schema of their `kind`. `columns` maps schema fields to source columns.

Whole-file problems are either repaired and reported (a UTF-8/UTF-16 byte-order mark, a
trailing comma in a JSON list, JSONL content in a .json file, gzip without .gz) or stop
the run with `SourceError` naming the file and the problem: never one error row standing
for a file. A row that cannot be used (bad JSON line, bad UTF-8 bytes, a missing field, a
CSV row with the wrong number of fields) becomes a record with `error` set, naming the
file, the line or row and what is wrong; validation quarantines it. Every row is
accounted for.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import SourceConfig
from .records import make_record

SCHEMA_KIND = {"alpaca": "sft", "dolly": "sft", "sharegpt": "sft", "messages": "sft", "preference": "preference",
               "hh-rlhf": "preference", "prompts": "prompt", "labelled": "labelled"}
GENERIC = ("csv", "jsonl", "parquet", "hf")
# ShareGPT speaker names -> chat roles (the dumps use several spellings).
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                  "system": "system"}
HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")
BAD_BYTES = re.compile("[\udc80-\udcff]")  # what surrogateescape turns invalid UTF-8 bytes into
# Any lone surrogate: invalid bytes as above, or a JSON "\\ud800" escape; neither can be written as UTF-8.
SURROGATE = re.compile("[\ud800-\udfff]")
MISSING = object()
# What counts as a blank line: ASCII whitespace only (str.strip() would also eat \x1c-\x1f, which are data).
BLANK = " \t\r\n\x0b\x0c"
MAX_JSON_REPAIRS = 100


class SourceError(ValueError):
    """A whole source file cannot be read; the message names the file and the problem."""


class RowError(ValueError):
    """One row cannot be used; becomes an error record."""


# --------------------------------------------------------------------------- bytes and text
def read_bytes(path: Path, rel: str, notes: list[str]) -> bytes:
    """File bytes, gunzipped when gzip, without a byte-order mark; UTF-16 re-encoded as UTF-8."""
    data = path.read_bytes()
    named_gz = path.name.endswith(".gz")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
            if not named_gz:
                notes.append(f"{rel}: gzip-compressed although not named .gz; decompressed")
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            if named_gz:
                raise SourceError(f"{rel}: gzip data is corrupt or truncated ({err}); nothing was read") from None
            # not named .gz: the two bytes were data, read the file as it is
    elif named_gz:
        notes.append(f"{rel}: named .gz but not gzip-compressed; read as plain text")
    if data.startswith(codecs.BOM_UTF8):
        notes.append(f"{rel}: UTF-8 byte-order mark removed")
        data = data[len(codecs.BOM_UTF8):]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeError as err:
            raise SourceError(f"{rel}: starts with a UTF-16 byte-order mark but is not UTF-16 ({err})") from None
        notes.append(f"{rel}: UTF-16 file (byte-order mark) read as UTF-16")
    return data


def decode(data: bytes, rel: str, notes: list[str]) -> str:
    """UTF-8 text; invalid bytes become lone surrogates so the rows holding them can be told apart."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        notes.append(f"{rel}: invalid UTF-8 (first at byte {err.start}); the rows holding it become error records")
        return data.decode("utf-8", "surrogateescape")


def _bad_utf8(value: Any) -> bool:
    if isinstance(value, str):
        return bool(SURROGATE.search(value))
    if isinstance(value, dict):
        return any(_bad_utf8(k) or _bad_utf8(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_bad_utf8(v) for v in value)
    return False


# --------------------------------------------------------------------------- containers
# Each yields (where, row, error): `where` is the locator suffix (`#index=3`, `:line=7`, ...),
# `row` a dict (or a bare string from a prompt list), `error` a message when the row is unusable.
def parse_json_document(text: str, rel: str, notes: list[str]) -> tuple[Any, bool]:
    """(document, is_jsonl): repairs trailing commas and spots JSONL given as .json, else SourceError."""
    if not text.strip(BLANK):
        notes.append(f"{rel}: empty file, no rows")
        return [], False
    try:
        return json.loads(text), False
    except json.JSONDecodeError as first:
        err = first
    if err.msg == "Extra data":  # a second top-level value: one JSON value per line?
        lines = [ln for ln in text.split("\n") if ln.strip(BLANK)]
        try:
            json.loads(lines[0])
            notes.append(f"{rel}: holds one JSON value per line (JSONL), not one document; read as JSONL")
            return None, True
        except json.JSONDecodeError:
            pass
    fixed, doc_text = 0, text
    while fixed < MAX_JSON_REPAIRS and err.pos < len(doc_text) and doc_text[err.pos] in "]}":
        k = err.pos - 1
        while k >= 0 and doc_text[k].isspace():
            k -= 1
        if k < 0 or doc_text[k] != ",":
            break
        doc_text, fixed = doc_text[:k] + doc_text[k + 1:], fixed + 1
        try:
            doc = json.loads(doc_text)
            notes.append(f"{rel}: {fixed} trailing comma(s) removed")
            return doc, False
        except json.JSONDecodeError as again:
            err = again
    raise SourceError(f"{rel}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); nothing was "
                      f"read from this file. If it holds one object per line, name it .jsonl") from None


def _dig(value: Any, dotted: str) -> Any:
    """value[a][b]... for the dotted path `a.b`; an exact key wins over a dotted reading."""
    if isinstance(value, dict) and dotted in value:
        return value[dotted]
    cur = value
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return cur


def _nested_prompts(node: Any, path: list[str]) -> Iterator[tuple[str, Any, str | None]]:
    """Walk {category: {subcategory: [question, ...]}} (any depth); labels carry the path."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _nested_prompts(child, [*path, str(key)])
    elif isinstance(node, list):
        for i, item in enumerate(node):
            where = f"#path={'/'.join(path)}/{i}" if path else f"#index={i}"
            row = {"prompt": item} if isinstance(item, str) else item
            if isinstance(row, dict) and path:
                row = {**row, "_category": path[0], "_subcategory": "/".join(path[1:]) or None}
            yield where, row, None
    else:
        yield f"#path={'/'.join(path)}", None, f"expected a list of prompts or a mapping, got {type(node).__name__}"


def json_rows(text: str, rel: str, spec: SourceConfig, schema: str, notes: list[str]):
    doc, is_jsonl = parse_json_document(text, rel, notes)
    if is_jsonl:
        yield from jsonl_rows(text, rel, notes)
        return
    if spec.records_path:
        doc = _dig(doc, spec.records_path)
        if doc is MISSING:
            raise SourceError(f"{rel}: records_path {spec.records_path!r} not found in the JSON document")
    elif isinstance(doc, dict) and schema != "prompts":
        lists = [k for k, v in doc.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if len(lists) > 1:
            raise SourceError(f"{rel}: a JSON object, not a list of rows; set records_path to the key that "
                              f"holds the rows (lists of objects found under: {lists})")
        if lists:
            notes.append(f"{rel}: rows read from the document's `{lists[0]}` list")
            doc = doc[lists[0]]
        else:  # one object (or one JSONL line in a .json file): one row
            notes.append(f"{rel}: a single JSON object, read as one row")
            doc = [doc]
    if schema == "prompts" and isinstance(doc, (dict, list)):
        for where, row, error in _nested_prompts(doc, []):
            yield where, row, error or ("invalid UTF-8 bytes or a lone surrogate in this row" if _bad_utf8(row) else None)
        return
    if not isinstance(doc, list):
        raise SourceError(f"{rel}: expected a JSON list of rows, got {type(doc).__name__}")
    for i, row in enumerate(doc):
        yield f"#index={i}", row, "invalid UTF-8 bytes or a lone surrogate in this row" if _bad_utf8(row) else None


def jsonl_rows(text: str, rel: str, notes: list[str]):
    if not text.strip(BLANK):
        notes.append(f"{rel}: empty file, no rows")
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip(BLANK):
            continue
        where = f":line={n}"
        if BAD_BYTES.search(line):
            yield where, None, "invalid UTF-8 bytes on this line"
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            yield where, None, f"not valid JSON ({err.msg}, column {err.colno})"
            continue
        yield where, row, "a lone surrogate escape (\\ud800-\\udfff) is not valid Unicode" if _bad_utf8(row) else None


def csv_rows(text: str, rel: str, delimiter: str, notes: list[str]):
    """The stdlib csv reader, not pandas: a row with bad bytes or the wrong number of fields must
    become an error record naming its row, and pandas can only fail the file or drop the row."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # real corpora have fields past the 128 KiB default
    if not text.strip(BLANK):
        notes.append(f"{rel}: empty file, no rows")
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        if len(set(header)) != len(header):
            raise SourceError(f"{rel}: CSV header repeats a column name: {header}")
        for n, fields in enumerate(reader, start=1):
            where = f":row={n}"
            if not fields:
                continue  # a blank line is not a row
            if len(fields) != len(header):
                yield where, None, (f"{len(fields)} fields, the header has {len(header)} "
                                    f"(ends on line {reader.line_num})")
            elif any(BAD_BYTES.search(f) for f in fields):
                yield where, None, f"invalid UTF-8 bytes in this row (line {reader.line_num})"
            else:
                yield where, dict(zip(header, fields)), None
    except csv.Error as err:
        raise SourceError(f"{rel}: CSV cannot be parsed past line {reader.line_num} ({err}); "
                          f"nothing after it was read") from None


def parquet_rows(data: bytes, rel: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        n = 0
        for batch in pf.iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                n += 1
                yield f":row={n}", row, None
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{rel}: not a readable Parquet file ({err})") from None


def hf_rows(path: Path | str, rel: str, spec: SourceConfig, notes: list[str]):
    import tempfile

    import datasets

    # A folder of data files is converted to Arrow in a throwaway cache, not in ~/.cache.
    with tempfile.TemporaryDirectory(prefix="instructflow-hf-") as cache:
        try:
            if isinstance(path, str):  # hub id
                ds = datasets.load_dataset(path, split=spec.hf_split)
                notes.append(f"{rel}: read from the Hugging Face hub (not a DVC-tracked file)")
            elif (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
                ds = datasets.load_from_disk(str(path))
                if isinstance(ds, datasets.DatasetDict):
                    if spec.hf_split not in ds:
                        raise SourceError(f"{rel}: no split {spec.hf_split!r}; splits: {sorted(ds)} (set hf_split)")
                    ds = ds[spec.hf_split]
            else:
                ds = datasets.load_dataset(str(path), split=spec.hf_split, cache_dir=cache)
        except SourceError:
            raise
        except Exception as err:  # datasets raises many types; the message is what matters here
            raise SourceError(f"{rel}: cannot be loaded with `datasets` ({type(err).__name__}: {err})") from None
        for n, row in enumerate(ds, start=1):
            yield f":row={n}", row, None


def container_of(path: Path | str, fmt: str) -> str:
    if fmt == "hf" or isinstance(path, str) or path.is_dir():
        return "hf"
    name = path.name.lower().removesuffix(".gz")
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if fmt in ("csv", "jsonl", "parquet"):
        return "tsv" if fmt == "csv" and suffix == "tsv" else fmt
    by_suffix = {"json": "json", "jsonl": "jsonl", "ndjson": "jsonl", "csv": "csv", "tsv": "tsv",
                 "parquet": "parquet", "pq": "parquet"}
    if suffix not in by_suffix:
        raise SourceError(f"{path}: cannot tell the file type from its name; use one of "
                          f"{sorted('.' + s for s in by_suffix)} (optionally + .gz)")
    return by_suffix[suffix]


# --------------------------------------------------------------------------- schemas
class Row:
    """Column access through the source's `columns` mapping (dotted paths allowed)."""

    def __init__(self, data: dict, columns: dict):
        self.data, self.columns = data, columns

    def get(self, field: str, default: Any = MISSING) -> Any:
        value = _dig(self.data, self.columns.get(field, field))
        return default if value is MISSING else value

    def need(self, *fields: str) -> list:
        values = [self.get(f) for f in fields]
        missing = [self.columns.get(f, f) for f, v in zip(fields, values) if v is MISSING or v is None]
        if missing:
            raise RowError(f"missing field(s) {missing}")
        return values

    def labels(self) -> dict:
        labels = self.data.get("labels")
        return dict(labels) if isinstance(labels, dict) else {}


def _turn(t: Any) -> Any:
    """{role, content} of an OpenAI/TRL turn; anything else is kept for validation to name."""
    return {"role": t.get("role"), "content": t.get("content")} if isinstance(t, dict) else t


def _present(v: Any) -> bool:
    return v is not MISSING and v is not None and not (isinstance(v, str) and not v.strip())


def schema_alpaca(row: Row, spec: SourceConfig) -> dict:
    instruction, output = row.need("instruction", "output")
    extra = row.get("input", "")
    if isinstance(instruction, str) and isinstance(extra, str) and extra.strip():
        instruction = f"{instruction}\n\n{extra}"
    # Values are kept as they are (a number stays a number) so validation can name the problem.
    return {"messages": [{"role": "user", "content": instruction}, {"role": "assistant", "content": output}],
            "labels": row.labels()}


def schema_dolly(row: Row, spec: SourceConfig) -> dict:
    instruction, response = row.need("instruction", "response")
    context = row.get("context", "")
    if isinstance(instruction, str) and isinstance(context, str) and context.strip():
        instruction = f"{instruction}\n\n{context}"
    labels = row.labels()
    if _present(row.get("category", None)):
        labels["category"] = row.get("category")
    return {"messages": [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}],
            "labels": labels}


def schema_sharegpt(row: Row, spec: SourceConfig) -> dict:
    (turns,) = row.need("conversations")
    if not isinstance(turns, list) or not turns:
        raise RowError("`conversations` must be a non-empty list of {from, value} turns")
    messages = []
    for t in turns:
        if isinstance(t, dict) and ("from" in t or "value" in t):
            who = t.get("from")
            messages.append({"role": SHAREGPT_ROLES.get(str(who).lower(), who), "content": t.get("value")})
        else:
            messages.append(_turn(t))
    system = row.get("system", None)
    if _present(system) and not (isinstance(messages[0], dict) and messages[0].get("role") == "system"):
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages, "labels": row.labels()}


def schema_messages(row: Row, spec: SourceConfig) -> dict:
    (turns,) = row.need("messages")
    if not isinstance(turns, list) or not turns:
        raise RowError("`messages` must be a non-empty list")
    return {"messages": [_turn(t) for t in turns], "labels": row.labels(), "kind": spec.kind or None}


def parse_hh(text: Any, side: str) -> list[dict]:
    """hh-rlhf dialogue text -> turns: "\\n\\nHuman: ...\\n\\nAssistant: ..." ."""
    if not isinstance(text, str):
        raise RowError(f"`{side}` must be a dialogue string, got {type(text).__name__}")
    parts = HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise RowError(f"`{side}` is not a '\\n\\nHuman: ... \\n\\nAssistant: ...' dialogue")
    return [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
            for who, said in zip(parts[1::2], parts[2::2])]


def _split_dialogues(chosen: list, rejected: list, what: str) -> tuple[list, Any, Any]:
    """Shared prompt turns + the two final assistant replies of two whole dialogues."""
    if not chosen or not rejected:
        raise RowError(f"{what}: empty dialogue")
    for side, turns in (("chosen", chosen), ("rejected", rejected)):
        last = turns[-1]
        if not isinstance(last, dict) or last.get("role") != "assistant":
            raise RowError(f"{what}: `{side}` does not end with an assistant reply")
    if chosen[:-1] != rejected[:-1]:
        at = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), min(len(chosen), len(rejected)))
        raise RowError(f"{what}: chosen and rejected differ before their final replies (turn {at + 1})")
    return chosen[:-1], chosen[-1].get("content"), rejected[-1].get("content")


def schema_hh(row: Row, spec: SourceConfig) -> dict:
    chosen, rejected = row.need("chosen", "rejected")
    prompt, c, r = _split_dialogues(parse_hh(chosen, "chosen"), parse_hh(rejected, "rejected"), "hh-rlhf")
    return {"messages": prompt, "chosen": c, "rejected": r, "labels": row.labels(), "kind": "preference"}


def _reply(value: Any, side: str) -> Any:
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], dict) and value[0].get("role") == "assistant":
            return value[0].get("content")
        raise RowError(f"`{side}` must be a string or one assistant turn")
    return value


def schema_preference(row: Row, spec: SourceConfig) -> dict:
    """TRL preference rows: explicit prompt (string or turns) or implicit (shared leading turns)."""
    chosen, rejected = row.need("chosen", "rejected")
    prompt = row.get("prompt", None)
    labels = row.labels()
    if prompt is None:
        if isinstance(chosen, list) and isinstance(rejected, list):
            turns, c, r = _split_dialogues([_turn(t) for t in chosen], [_turn(t) for t in rejected],
                                           "implicit prompt")
            return {"messages": turns, "chosen": c, "rejected": r, "labels": labels, "kind": "preference"}
        if isinstance(chosen, str) and isinstance(rejected, str) and chosen.startswith("\n\nHuman:"):
            return schema_hh(row, spec)
        raise RowError(f"missing field(s) [{row.columns.get('prompt', 'prompt')!r}] (an implicit prompt needs "
                       f"chosen/rejected as message lists sharing the prompt turns)")
    messages = [{"role": "user", "content": prompt}] if not isinstance(prompt, list) else [_turn(t) for t in prompt]
    return {"messages": messages, "chosen": _reply(chosen, "chosen"), "rejected": _reply(rejected, "rejected"),
            "labels": labels, "kind": "preference"}


def _style(text: Any) -> str | None:
    """question or command: how a prompt is phrased (evaluation reports refusals by both)."""
    return None if not isinstance(text, str) else ("question" if text.rstrip().endswith("?") else "command")


def schema_prompts(row: Row, spec: SourceConfig) -> dict:
    labels = row.labels()
    turns = row.get("messages", None)
    if isinstance(turns, list) and turns:
        messages = [_turn(t) for t in turns]
        text = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    else:
        (text,) = row.need("prompt")
        messages = [{"role": "user", "content": text}]
    for key, field in (("category", "_category"), ("subcategory", "_subcategory")):
        value = row.data.get(field) if field in row.data else row.get(key, None)
        if _present(value):
            labels[key] = value
    style = row.get("style", None)
    labels["style"] = style if _present(style) else _style(text)
    return {"messages": messages, "labels": labels, "kind": "prompt"}


def label_value(row: Row, spec: SourceConfig) -> tuple[int, dict]:
    """0/1 from the label field via positive/negative values (and label_pattern)."""
    value = _dig(row.data, spec.label_field)
    if isinstance(value, list):  # span annotations (PII): positive when any
        return int(bool(value)), {"spans": value}
    if value is MISSING or value is None or (isinstance(value, str) and not value.strip()):
        raise RowError(f"missing label field {spec.label_field!r}")
    text = str(value).strip()
    if spec.label_pattern:
        m = re.search(spec.label_pattern, text)
        if not m:
            raise RowError(f"label {text[-80:]!r} does not match label_pattern {spec.label_pattern!r}")
        text = (m.group(1) if m.groups() else m.group(0)).strip()
    if text in {str(p) for p in spec.positive}:
        return 1, {}
    if not spec.negative or text in {str(n) for n in spec.negative}:
        return 0, {}
    raise RowError(f"label {text!r} is neither a positive {spec.positive} nor a negative {spec.negative} value")


def schema_labelled(row: Row, spec: SourceConfig) -> dict:
    (text,) = row.need("text")
    text2 = row.get("text2", None)
    if spec.text_pattern:
        m = re.search(spec.text_pattern, text, re.DOTALL) if isinstance(text, str) else None
        if not m:
            raise RowError(f"text does not match text_pattern {spec.text_pattern!r}")
        groups = m.groupdict()
        text, text2 = groups.get("text"), groups.get("text2", text2)
    harmful, extra = label_value(row, spec)
    labels = {**row.labels(), **extra, "harmful": harmful}
    if spec.task:
        labels["task"] = spec.task
    if _present(row.get("category", None)):
        labels["category"] = row.get("category")
    messages = [{"role": "user", "content": text}]
    if _present(text2):
        messages.append({"role": "assistant", "content": text2})
    return {"messages": messages, "labels": labels, "kind": "labelled"}


SCHEMAS: dict[str, Callable[[Row, SourceConfig], dict]] = {
    "alpaca": schema_alpaca, "dolly": schema_dolly, "sharegpt": schema_sharegpt, "messages": schema_messages,
    "preference": schema_preference, "hh-rlhf": schema_hh, "prompts": schema_prompts, "labelled": schema_labelled,
}


def schema_of(spec: SourceConfig) -> str:
    if spec.format not in GENERIC:
        return spec.format
    if not spec.kind:
        raise SourceError(f"source {spec.name!r}: format {spec.format!r} needs `kind` "
                          f"(sft, preference, prompt or labelled) and usually `columns`")
    if spec.kind == "sft":
        cols = set(spec.columns)
        return "messages" if "messages" in cols else "sharegpt" if "conversations" in cols else "alpaca"
    return {"preference": "preference", "prompt": "prompts", "labelled": "labelled"}[spec.kind]


# --------------------------------------------------------------------------- entry point
def relative(path: Path | str, root: Path | None) -> str:
    if isinstance(path, str):
        return path
    root = Path.cwd() if root is None else root
    try:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    except ValueError:
        return path.as_posix()


def read_source(path: Path | str, fmt: str, source: str, license: str, spec: SourceConfig | None = None,
                root: Path | None = None, notes: list[str] | None = None) -> Iterator[dict]:
    """Raw records of one source file. `spec` carries columns, labels and label rules; `root` is
    the repository root locators are relative to (default: the working directory); repairs
    and oddities are appended to `notes`. Raises SourceError for a file that cannot be read."""
    spec = spec or SourceConfig(name=source, path=str(path), format=fmt, license=license)
    notes = [] if notes is None else notes
    if fmt not in SCHEMA_KIND and fmt not in GENERIC:
        raise ValueError(f"source {source!r}: unknown format {fmt!r}; known: {sorted([*SCHEMA_KIND, *GENERIC])}")
    schema = schema_of(spec)
    if isinstance(path, str) and path.startswith("hf:"):
        target: Path | str = path[3:]
    else:
        target = Path(path)
        if not target.exists():
            raise FileNotFoundError(f"source {source!r}: file not found: {path}")
    rel = relative(target, root) if isinstance(target, Path) else f"hf:{target}"
    return _records(target, rel, fmt, schema, source, license, spec, notes)


def _rows(target: Path | str, rel: str, fmt: str, schema: str, spec: SourceConfig, notes: list[str]):
    container = container_of(target, fmt)
    if container == "hf":
        return hf_rows(target, rel, spec, notes)
    data = read_bytes(target, rel, notes)
    if container == "parquet":
        return parquet_rows(data, rel)
    text = decode(data, rel, notes)
    if container == "json":
        return json_rows(text, rel, spec, schema, notes)
    if container == "jsonl":
        return jsonl_rows(text, rel, notes)
    return csv_rows(text, rel, "\t" if container == "tsv" else ",", notes)


def _records(target, rel, fmt, schema, source, license, spec, notes) -> Iterator[dict]:
    kind = spec.kind or SCHEMA_KIND[schema]
    static = dict(spec.labels)
    if spec.split != "auto":  # not `split`: the generator's labels use that for seen/held-out
        static["force_split"] = spec.split
    if spec.task:
        static["task"] = spec.task
    read = SCHEMAS[schema]
    first = spec.offset + 1
    if spec.offset:
        notes.append(f"{rel}: rows 1-{spec.offset} not read (offset={spec.offset})")
    if spec.stride > 1:
        notes.append(f"{rel}: read rows {first}, {first + spec.stride}, {first + 2 * spec.stride}, ... "
                     f"(stride={spec.stride})")
    skip = {field: {str(v) for v in values} for field, values in spec.skip.items()}
    skipped = Counter()
    for n, (where, data, error) in enumerate(_rows(target, rel, fmt, schema, spec, notes), start=1):
        if n < first:
            continue  # before `offset`: outside the source as declared, like rows past `limit`
        if spec.limit and n - spec.offset > spec.limit:
            notes.append(f"{rel}: stopped after limit={spec.limit} rows")
            break
        if spec.stride > 1 and (n - first) % spec.stride:
            continue  # not read: like rows past `limit`, outside the source as declared
        if error is None and isinstance(data, str) and schema == "prompts":
            data = {"prompt": data}
        if error is None and not isinstance(data, dict):
            error = f"a row must be an object, got {type(data).__name__}"
        row = Row(data, spec.columns) if error is None else None
        hit = row is not None and next((f for f, values in skip.items()
                                        if str(row.get(f, None)) in values), None)
        if hit:  # not read, as `stride`: the source as declared leaves these rows out
            skipped[f"{hit}={row.get(hit)}"] += 1
            continue
        orig = row.get("id", None) if row else None
        locator = f"{rel}{where}" + (f";id={orig}" if isinstance(orig, (str, int)) and str(orig).strip() else "")
        if error is None:
            try:
                fields = read(row, spec)
            except RowError as err:
                error = str(err)
        if error is not None:
            yield make_record(source, locator, license, fmt, labels=static, kind=kind,
                              error=f"{rel} {where.lstrip('#:').replace('=', ' ')}: {error}")
            continue
        labels = {**static, **fields.pop("labels")}
        if "task" in static:
            labels["task"] = static["task"]
        yield make_record(source, locator, license, fmt, labels=labels, kind=fields.pop("kind", None) or kind,
                          **fields)
    if skipped:
        notes.append(f"{rel}: {sum(skipped.values())} row(s) not read by `skip`: "
                     + ", ".join(f"{k} ({v})" for k, v in sorted(skipped.items())))
