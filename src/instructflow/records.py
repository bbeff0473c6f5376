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

import gc
import hashlib
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

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


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """Text cut after each '.', '!' or '?' that whitespace follows: the one sentence rule the
    refusal checks, the judges and the answer-shape metrics share."""
    return _SENTENCE_END.split(text)


def count_sentences(text: str) -> int:
    """Sentences of at least three words: a lone "Yes." or a list label is not one (the answer-shape
    metric of the evaluation and onpolicy's `match_reference_shape` count alike)."""
    return sum(len(part.split()) >= 3 for part in split_sentences(text.strip()))


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


_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)  # built once: json.dumps builds one per call


def dumps(row: dict) -> str:
    """The one JSON line encoding of the project: sorted keys, UTF-8, no ASCII escapes."""
    return _ENCODER.encode(row)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows with sorted keys and a fixed encoding, so equal data gives equal bytes (atomically)."""
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")
            n += 1
    return n


# orjson reads an integer past 64 bits as a float, silently, and refuses what json accepts (NaN,
# Infinity, lone surrogates, 1e400): a line with 19+ digits in a row, or one orjson refuses, is read by
# json, so every value comes back exactly as json.loads gives it.
# (A byte translation finds such a run ~10x faster than a regex: digits -> "0", the rest -> ".".)
_DIGIT_MAP = bytes(48 if 48 <= i < 58 else 46 for i in range(256))
_LONG_RUN = b"0" * 19


def loads(line: bytes):
    """One JSON line (bytes) -> the value json.loads gives, at orjson's speed (2-3x) where they agree."""
    import orjson

    if _LONG_RUN not in line.translate(_DIGIT_MAP):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    return json.loads(line.decode("utf-8"))


def _blank(line: bytes, unicode_blanks: bool) -> bool:
    # Stage outputs are read as text mode would see them (a Unicode blank line is blank); validate
    # reads raw files by bytes.strip, so a line of non-breaking spaces there is a record (an error).
    return not line.strip() or (unicode_blanks and not line.isascii()
                                and not line.decode("utf-8", "replace").strip())


def _lines(fh, count: int | None = None, unicode_blanks: bool = True) -> Iterator[bytes]:
    """Non-blank lines of a binary file (see _blank)."""
    for line in fh:
        if not _blank(line, unicode_blanks):
            yield line
            if count is not None:
                count -= 1
                if count == 0:
                    return


def read_jsonl(path: str | Path) -> Iterator[dict]:
    with open(path, "rb") as fh:
        for line in _lines(fh):
            yield loads(line)


def line_chunks(path: str | Path, size: int, unicode_blanks: bool = True) -> list[tuple[int, int]]:
    """(byte offset, non-blank lines) of consecutive chunks of `size` non-blank lines: the units the
    stages hand to worker processes, decided by line count alone so results never depend on workers."""
    chunks, start, n, pos = [], 0, 0, 0
    with open(path, "rb") as fh:
        for line in fh:
            if not _blank(line, unicode_blanks):
                if n == 0:
                    start = pos
                n += 1
                if n == size:
                    chunks.append((start, n))
                    n = 0
            pos += len(line)
    if n:
        chunks.append((start, n))
    return chunks


def read_chunk(path: str | Path, offset: int, count: int, unicode_blanks: bool = True) -> list[bytes]:
    """The `count` non-blank lines from byte `offset` (a chunk of `line_chunks`)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return list(_lines(fh, count, unicode_blanks))


def workers_for(n: int) -> int:
    """Worker processes for a `workers` param: n, or with 0 the cores this process may run on."""
    return n if n > 0 else max(1, len(os.sched_getaffinity(0)))


class Workers:
    """A pool of `n` forked worker processes (n <= 1: none, tasks run here) for `map`.

    Fork, not spawn: a spawned worker would import the stage's libraries again (Great Expectations:
    ~4 s) and could not inherit what the parent has built (a loaded detector, an evaluation index).
    Fork copies only the calling thread, so the pool must be made before the parent starts any
    library thread pool (rensa's digest workers, tokenizers'): a worker would wait forever on a
    lock held by a thread it does not have. Make it first, use it for every pass."""

    def __init__(self, n: int, *fns: Callable):
        self.n, self.fns = n, fns
        self.pool = None

    def __enter__(self) -> "Workers":
        if self.n > 1:
            import multiprocessing as mp

            # The workers find `fns` here, inherited: a stage run as __main__ (python -m, runpy) has
            # functions that pickle cannot name.
            _WORKER_FNS[:] = self.fns
            gc.collect()
            gc.freeze()  # what exists now is shared copy-on-write; the workers' collections skip it
            self.pool = mp.get_context("fork").Pool(self.n)
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            if exc[0] is None:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
            self.pool = None
            gc.unfreeze()

    def map(self, fn: Callable, tasks: Iterable, window: int = 0) -> Iterator:
        """fn(task) for each task, results in task order; fn is one of the pool's `fns`. At most
        `window` tasks (default 2 per worker) are in flight, so finished results wait in memory only
        that long."""
        if self.pool is None:
            yield from map(fn, tasks)
            return
        from collections import deque

        which = self.fns.index(fn)
        window = window or 2 * self.n
        pending: deque = deque()
        for task in tasks:
            pending.append(self.pool.apply_async(_run_worker_fn, (which, task)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


_WORKER_FNS: list = []  # set by Workers before the fork


def _run_worker_fn(which: int, task):
    return _WORKER_FNS[which](task)


def ordered_map(fn: Callable, tasks: list, workers: int) -> Iterator:
    """fn(task) for each task, in order, in `workers` processes (see Workers)."""
    with Workers(min(workers, len(tasks)), fn) as pool:
        yield from pool.map(fn, tasks)


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
