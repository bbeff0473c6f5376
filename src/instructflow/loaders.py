"""Readers that turn source files into raw records, one reader per format.

A reader never drops a row: a row it cannot parse becomes a record with `error`
set (naming the file, the line and what is wrong), which validation then
quarantines. Every source row is accounted for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

from .records import make_record


def read_alpaca(path: Path, source: str, license: str) -> Iterator[dict]:
    """Alpaca JSON: a list of {instruction, input, output}; input is appended to the instruction."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        yield make_record(source, f"{path.name}", license, "alpaca",
                          error=f"{path}: not valid JSON (line {err.lineno}: {err.msg})")
        return
    if not isinstance(rows, list):
        yield make_record(source, f"{path.name}", license, "alpaca",
                          error=f"{path}: Alpaca JSON must be a list of objects, got {type(rows).__name__}")
        return
    for i, row in enumerate(rows):
        locator = f"{path.name}#index={i}"
        if not isinstance(row, dict):
            yield make_record(source, locator, license, "alpaca", error=f"{path} record {i}: not an object")
            continue
        missing = [k for k in ("instruction", "output") if k not in row]
        if missing:
            yield make_record(source, locator, license, "alpaca", labels=row.get("labels"),
                              error=f"{path} record {i}: missing field(s) {missing}")
            continue
        instruction, extra = row.get("instruction"), row.get("input") or ""
        if isinstance(instruction, str) and isinstance(extra, str) and extra.strip():
            instruction = f"{instruction}\n\n{extra}"
        # Values are kept as they are (a number stays a number) so validation can name the problem.
        messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": row.get("output")}]
        yield make_record(source, locator, license, "alpaca", messages=messages, labels=row.get("labels"))


def _jsonl_rows(path: Path, source: str, license: str, fmt: str):
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            locator = f"{path.name}:line={n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield locator, None, make_record(source, locator, license, fmt,
                                                 error=f"{path} line {n}: not valid JSON ({err.msg})")
                continue
            if not isinstance(row, dict):
                yield locator, None, make_record(source, locator, license, fmt,
                                                 error=f"{path} line {n}: not a JSON object")
                continue
            yield locator, row, None


def read_messages(path: Path, source: str, license: str) -> Iterator[dict]:
    """ShareGPT/OpenAI-style JSONL: each line {"messages": [{"role", "content"}, ...]}."""
    for locator, row, bad in _jsonl_rows(path, source, license, "messages"):
        if bad:
            yield bad
            continue
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            yield make_record(source, locator, license, "messages", labels=row.get("labels"),
                              error=f"{path} line {locator.rsplit('=', 1)[-1]}: `messages` must be a non-empty list")
            continue
        yield make_record(source, locator, license, "messages", messages=messages, labels=row.get("labels"))


def read_preference(path: Path, source: str, license: str) -> Iterator[dict]:
    """Preference JSONL: each line {"prompt", "chosen", "rejected"} (TRL's standard format)."""
    for locator, row, bad in _jsonl_rows(path, source, license, "preference"):
        if bad:
            yield bad
            continue
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
        if missing:
            yield make_record(source, locator, license, "preference", labels=row.get("labels"),
                              error=f"{path} line {locator.rsplit('=', 1)[-1]}: missing field(s) {missing}")
            continue
        yield make_record(source, locator, license, "preference",
                          messages=[{"role": "user", "content": row["prompt"]}],
                          chosen=row["chosen"], rejected=row["rejected"], labels=row.get("labels"))


READERS: dict[str, Callable[[Path, str, str], Iterator[dict]]] = {
    "alpaca": read_alpaca,
    "messages": read_messages,
    "preference": read_preference,
}


def read_source(path: Path, fmt: str, source: str, license: str) -> Iterator[dict]:
    if fmt not in READERS:
        raise ValueError(f"source {source!r}: unknown format {fmt!r}; known: {sorted(READERS)}")
    if not path.is_file():
        raise FileNotFoundError(f"source {source!r}: file not found: {path}")
    return READERS[fmt](path, source, license)
