"""The raw record schema and deterministic JSONL helpers shared by every stage.

A raw record (one line of `data/raw/records.jsonl`):

    id        stable id: sha256 of source name + locator (16 hex chars)
    source    source name from params (`builtin` for the generated corpus)
    locator   where the record came from, path relative to the repository: `path#index=N` (JSON list),
              `path:line=N` (JSONL), `path:row=N` (CSV/Parquet/datasets), `path#path=a/b/N` (nested JSON),
              plus `;id=ORIGINAL` when the row has its own id
    license   license of the source
    format    the source format (alpaca, dolly, sharegpt, messages, preference, hh-rlhf, prompts, labelled, ...)
    kind      sft (a conversation ending in an assistant reply), preference (prompt turns +
              chosen/rejected replies), prompt (prompt turns only, no reply) or labelled
              (classification text: a user turn, optionally an assistant turn, `labels.harmful` 0/1)
    messages  list of {role, content}; for preference and prompt records, the prompt turns only
    chosen    preferred reply (preference records), else null
    rejected  dispreferred reply (preference records), else null
    labels    optional dict (family, phrasing, heldout, category, ...)
    error     why the source row could not be parsed, else null

Every record keeps its provenance through every stage, so each training
example traces back to a file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

RAW_FIELDS = ("id", "source", "locator", "license", "format", "kind", "messages", "chosen", "rejected", "labels", "error")
KINDS = ("sft", "preference", "prompt", "labelled")


def record_id(source: str, locator: str) -> str:
    return hashlib.sha256(f"{source}\x00{locator}".encode()).hexdigest()[:16]


def make_record(source: str, locator: str, license: str, fmt: str, *, messages=None, chosen=None,
                rejected=None, labels=None, error=None, kind: str | None = None) -> dict:
    """One raw record; `kind` defaults to preference when a reply pair is given, else sft."""
    if kind is None:
        kind = "preference" if chosen is not None or rejected is not None else "sft"
    return {
        "id": record_id(source, locator), "source": source, "locator": locator, "license": license,
        "format": fmt, "kind": kind, "messages": messages, "chosen": chosen, "rejected": rejected,
        "labels": labels or {}, "error": error,
    }


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize_text(text: str) -> str:
    """Lower-case, whitespace-collapsed text: the key for duplicate and overlap checks."""
    return " ".join(str(text).lower().split())


def hash_fraction(text: str) -> float:
    """Map text to [0, 1) by content hash: stable splits that adding data cannot reshuffle."""
    return int(text_hash(normalize_text(text))[:12], 16) / 16**12


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kw):
    """Open a temporary sibling of `path` and rename it over `path` only on success.

    A stage killed half-way leaves `path.tmp-PID` behind, never a partial file under
    the real name that DVC or the next stage would take for a finished output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if "b" not in mode:
        kw.setdefault("encoding", "utf-8")
        kw.setdefault("newline", "\n")
    try:
        with open(tmp, mode, **kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dumps(row: dict) -> str:
    """The one JSON line encoding of the project: sorted keys, UTF-8, no ASCII escapes."""
    return json.dumps(row, ensure_ascii=False, sort_keys=True)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows with sorted keys and a fixed encoding, so equal data gives equal bytes (atomically)."""
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[dict]:
    # Plain json, not orjson: orjson reads integers past 64 bits as floats, silently.
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def write_json(path: str | Path, obj) -> None:
    with atomic_open(path) as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def prompt_of(messages: list[dict]) -> str:
    """The last user turn: what a record asks."""
    users = [m.get("content", "") for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else ""


def reply_of(record: dict) -> str:
    """The reply a record teaches: the final assistant turn, or the chosen reply."""
    if record.get("kind") == "preference":
        return record.get("chosen") or ""
    msgs = record.get("messages") or []
    last = msgs[-1] if msgs else {}
    return last.get("content", "") if isinstance(last, dict) and last.get("role") == "assistant" else ""
