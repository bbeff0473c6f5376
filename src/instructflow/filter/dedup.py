"""Exact and near-duplicate detection over normalised text.

Normalisation (NFKC, case-fold, punctuation to spaces, whitespace collapsed)
makes "Hello, World!" and "hello world" one text. Exact duplicates share the
sha256 of that text (its first 128 bits are compared). Near duplicates are found
with MinHash LSH (the Rust-backed `rensa`): word shingles -> MinHash signatures,
an LSH pass flags every row that shares a band with an earlier one, and only
those candidates are checked pairwise (estimated Jaccard >= `threshold`) in
input order, so the first occurrence is kept and each later copy names it.

The filter checks evaluation prompts first, so a training row that repeats one
is reported against the evaluation row: duplicates cannot straddle train and
evaluation.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from array import array
from itertools import accumulate

import numpy as np

_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACE = re.compile(r"\s+")
# ASCII text (most of it) takes a shortcut with the same result: NFKC leaves it as it is, casefold is
# lower, and the punctuation regex hits exactly the ASCII characters that are neither \w nor \s.
_ASCII_PUNCT = {c: " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_" or chr(c).isspace())}


def normalize(text: str) -> str:
    """NFKC, case-folded, punctuation removed, whitespace collapsed."""
    text = str(text)
    if text.isascii():
        return " ".join(text.translate(_ASCII_PUNCT).lower().split())
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def shingles(norm: str, n: int) -> list[str]:
    """Word n-grams of a normalised text (the whole text when it is shorter)."""
    words = norm.split()
    if len(words) <= n:
        return [" ".join(words)] if words else [""]
    return list(map(" ".join, zip(*(words[i:] for i in range(n)))))


def exact_key(norm: str) -> bytes:
    return hashlib.sha256(norm.encode("utf-8")).digest()


def _band_mix(rows: int) -> np.ndarray:
    """Fixed odd 64-bit multipliers that fold a band of `rows` MinHash values into one bucket key."""
    return np.random.default_rng(20240229).integers(0, 2**62, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def signatures(norms: list[str], shingle: int, num_perm: int, num_bands: int, seed: int, near: bool = True):
    """What `Deduper.check_signed` needs per normalised text, computed without the index (so worker
    processes can do it): the exact key, and for near dedup the MinHash digests (rows x num_perm,
    uint32, rensa's R-MinHash over word shingles) and one bucket key per LSH band (rows x num_bands)."""
    exact = [exact_key(n) for n in norms]
    if not near or not norms:
        return exact, None, None
    if num_perm % num_bands:
        raise ValueError(f"num_perm ({num_perm}) must be divisible by num_bands ({num_bands})")
    from rensa import RMinHash

    # One RMinHash per text, not the bulk `from_token_sets`: the same digests and CPU time, but the bulk
    # call starts rensa's thread pool, and a process forked after that (the stages' workers) would
    # wait forever on a pool it does not have.
    digests = np.empty((len(norms), num_perm), dtype=np.uint32)
    for i, norm in enumerate(norms):
        mh = RMinHash(num_perm, seed)
        mh.update(shingles(norm, shingle))
        digests[i] = mh.digest()
    rows = num_perm // num_bands
    bands = digests.reshape(len(norms), num_bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):  # wrap-around is the point of the mixing
        keys = (bands * _band_mix(rows)).sum(axis=2, dtype=np.uint64)
        keys ^= keys >> np.uint64(29)
    # A different salt per band, so one table holds every band's buckets (equal keys = same band, same values)
    keys ^= np.random.default_rng(7).integers(0, 2**63, size=num_bands, dtype=np.uint64)
    return exact, digests, keys


def _sorted_run(keys: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, slots) ordered by key, equal keys in slot order (a stable sort)."""
    order = np.argsort(keys, kind="stable")
    return keys[order], slots[order]


def _merged_runs(k1: np.ndarray, s1: np.ndarray, k2: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted runs as one, equal keys in run order (the first run holds the earlier slots): each
    key of the second goes after the first's keys up to it and equal to it. Written in place into the
    merged arrays; a stable sort of the two concatenated needed an order array and a gathered copy
    besides (two runs of 6.5M keys: 396 MB of temporaries then, 210 MB now)."""
    n1, n2 = len(k1), len(k2)
    at = np.searchsorted(k1, k2, side="right")
    at += np.arange(n2, dtype=at.dtype)  # where the second run's keys land in the merged run
    keys, slots = np.empty(n1 + n2, dtype=k1.dtype), np.empty(n1 + n2, dtype=s1.dtype)
    keys[at], slots[at] = k2, s2
    first = np.ones(n1 + n2, dtype=bool)
    first[at] = False
    del at
    keys[first], slots[first] = k1, s1
    return keys, slots


def _push_run(runs: list[tuple[np.ndarray, np.ndarray]], run: tuple[np.ndarray, np.ndarray]) -> None:
    """Append a sorted run; a run merges into the one before while that one is no bigger (a binary
    counter: at most log2(runs pushed) runs, each key merged as often)."""
    runs.append(run)
    while len(runs) > 1 and len(runs[-2][0]) <= len(runs[-1][0]):
        (k2, s2), (k1, s1) = runs.pop(), runs.pop()
        runs.append(_merged_runs(k1, s1, k2, s2))


def _screened(flat: np.ndarray, runs: list[tuple[np.ndarray, np.ndarray]]):
    """Which keys of a batch may have a match: those in one of the sorted runs, and those that occur
    twice in the batch (both copies, so a later row never needs to find an earlier one that was not
    screened in). Also, per run, where in the batch and where in the run its keys were found."""
    order = np.argsort(flat)
    ordered = flat[order]
    hit = np.zeros(len(flat), dtype=bool)
    found = []
    for keys, _ in runs:  # sorted queries: numpy's binary search reuses the last bound
        pos = np.minimum(np.searchsorted(keys, ordered), len(keys) - 1)
        at = np.flatnonzero(keys[pos] == ordered)
        hit[order[at]] = True
        found.append((order[at], pos[at]))
    same = ordered[1:] == ordered[:-1]
    hit[order[1:][same]] = True
    hit[order[:-1][same]] = True
    return hit, found


class Deduper:
    """Finds the first earlier text each text duplicates, exactly or nearly.

    Rows are added in batches (`check`); returns for each row None (new) or
    (kind, key) with kind `exact` or `near` and the key of the row it repeats.
    Exact duplicates: equal sha256 of the normalised text (its first 128 bits are compared).
    Near duplicates: MinHash LSH with `num_bands` bands; two texts are candidates when one
    band of their digests is equal (its 64-bit bucket key), and a candidate is a duplicate when
    the share of equal digest values (estimated Jaccard) reaches `threshold`.

    The index is numpy, not dicts, so a million rows cost ~0.2 GB of memory, not ~3 GB: the exact
    keys (first 64 bits, with the next 64 beside them by entry) and the bucket keys of the rows so
    far sit in sorted runs of (key, entry or slot), merged as they grow (a log-structured merge);
    the rows' keys (their ids) and digests are in temporary files, read back only for a
    duplicate or a candidate. Each batch of signatures is screened at once: a row none of whose
    keys is in the index or repeated within its batch (almost every row) is new without a lookup
    of its own; only the others are looked up, one by one and in order, so the decisions are those
    of a row-by-row check."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, num_bands: int = 16, shingle: int = 3,
                 seed: int = 0, near: bool = True):
        self.threshold, self.num_perm, self.num_bands = threshold, num_perm, num_bands
        self.shingle, self.seed, self.near = shingle, seed, near
        # Exact index. An entry is a row that repeated no earlier row exactly (kept, or a near copy):
        # runs of (first 64 bits of its key, entry), the next 64 bits by entry, and its row key (id) in a
        # file at offsets[entry]. The batch's new entries wait in lists until the next batch.
        self._exact_runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._lo = array("Q")                    # entry -> bits 64-127 of its key
        self._offsets = array("q", [0])          # entry -> where its id starts in the file (and one past the end)
        self._ids = tempfile.TemporaryFile()
        self._entries = 0                       # entries in the runs and the file
        self._new_hi: list[int] = []
        self._new_lo: list[int] = []
        self._new_ids: list[str] = []
        self._new_at: dict[int, list[int]] = {}  # first 64 bits -> the batch's screened-in new entries
        self._exact_batch = None
        self._exact_suspect: list[bool] = []
        self._hi: list[int] = []
        self._lo_of_batch: list[int] = []
        # LSH index: runs of (band key, slot) for kept rows; slot -> entry; digests by slot in a file.
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._slot_entry = array("q")           # slot -> entry
        self._spill = None
        # the batch being checked: its arrays, which rows may have a candidate, the rows kept so far
        # (slot = self._first + position) and their entries, and band key -> slots for the kept rows
        # that were screened in
        self._batch = self._batch_digests = None
        self._suspect: list[bool] = []
        self._kept: list[int] = []
        self._kept_entries: list[int] = []
        self._first = 0
        self._in_batch: dict[int, list[int]] = {}
        self._found: dict[int, list[tuple[int, int]]] = {}

    def __len__(self) -> int:
        """Rows kept (not duplicates)."""
        return self._first + len(self._kept) if self.near else self._entries + len(self._new_ids)

    def nbytes(self) -> int:
        """Bytes the index holds in memory (keys, entries, slots); ids and digests are on disk."""
        return (sum(k.nbytes + s.nbytes for k, s in self._runs + self._exact_runs)
                + sum(len(a) * a.itemsize for a in (self._lo, self._offsets, self._slot_entry)))

    def spilled_bytes(self) -> int:
        """Bytes of digests written to the temporary file."""
        return 0 if self._spill is None else self._spill.seek(0, 2)

    def signatures(self, norms: list[str]):
        return signatures(norms, self.shingle, self.num_perm, self.num_bands, self.seed, self.near)

    def check(self, keys: list[str], texts: list[str], norms: list[str] | None = None
              ) -> list[tuple[str, str] | None]:
        """Duplicates among `texts` and everything checked before; new rows are remembered, so
        rows checked first (evaluation prompts) win over every later copy. `norms`: the texts
        already normalised, if the caller has them."""
        norms = norms if norms is not None else [normalize(t) for t in texts]
        return self.check_signed(keys, *self.signatures(norms))

    def _flush(self) -> None:
        """The batch's new entries and kept rows join the index as sorted runs; their ids and digests
        go to the files."""
        if self._new_ids:
            first, n = self._entries, len(self._new_ids)
            _push_run(self._exact_runs, _sorted_run(np.array(self._new_hi, dtype=np.uint64),
                                                    np.arange(first, first + n, dtype=np.int64)))
            self._lo.extend(self._new_lo)
            data = [k.encode("utf-8") for k in self._new_ids]
            self._ids.seek(0, 2)
            self._ids.write(b"".join(data))
            self._ids.flush()
            self._offsets.extend(list(accumulate(map(len, data), initial=self._offsets[-1]))[1:])
            self._entries += n
        self._new_hi, self._new_lo, self._new_ids, self._new_at = [], [], [], {}
        if self._kept:
            kept = np.array(self._kept)
            keys = self._batch[kept].ravel()
            slots = np.repeat(np.arange(self._first, self._first + len(kept), dtype=np.int32), self.num_bands)
            _push_run(self._runs, _sorted_run(keys, slots))
            self._slot_entry.extend(self._kept_entries)
            if self._spill is None:
                self._spill = tempfile.TemporaryFile()
            self._spill.seek(0, 2)
            self._spill.write(np.ascontiguousarray(self._batch_digests[kept], dtype=np.uint32).tobytes())
            self._spill.flush()
        self._first += len(self._kept)
        self._kept, self._kept_entries, self._in_batch = [], [], {}

    def _screen_exact(self, exact: list[bytes]) -> None:
        """Which rows of a new batch may repeat an entry: the first 64 bits of the key are in the
        index or repeated in the batch (`_screened`)."""
        blob = b"".join(exact)
        if len(blob) != 32 * len(exact):
            raise ValueError("exact keys must be sha256 digests (32 bytes)")
        parts = np.frombuffer(blob, dtype=np.uint64).reshape(len(exact), 4)
        hi = parts[:, 0]
        hit, _ = _screened(hi, self._exact_runs)
        self._exact_batch, self._exact_suspect = exact, hit.tolist()
        self._hi, self._lo_of_batch = hi.tolist(), parts[:, 1].tolist()

    def _entry_of(self, hi: int, lo: int) -> int | None:
        """The entry whose key has these 128 bits, if any (at most one: a repeat never becomes an entry)."""
        for e in self._new_at.get(hi, ()):
            if self._new_lo[e - self._entries] == lo:
                return e
        for keys, entries in self._exact_runs:
            p = int(np.searchsorted(keys, np.uint64(hi)))
            while p < len(keys) and int(keys[p]) == hi:
                e = int(entries[p])
                if self._lo[e] == lo:
                    return e
                p += 1
        return None

    def _id_of(self, entry: int) -> str:
        if entry >= self._entries:
            return self._new_ids[entry - self._entries]
        start, end = self._offsets[entry], self._offsets[entry + 1]
        return os.pread(self._ids.fileno(), end - start, start).decode("utf-8")

    def _id_of_slot(self, slot: int) -> str:
        entry = self._kept_entries[slot - self._first] if slot >= self._first else self._slot_entry[slot]
        return self._id_of(entry)

    def _screen(self, bands: np.ndarray, digests: np.ndarray) -> None:
        """Which rows of a new batch may have a candidate: one with a band key in the index or repeated
        in the batch (`_screened`)."""
        hit, found = _screened(bands.ravel(), self._runs)
        self._found = {}  # row -> [(run, first position of its key)] for the keys the index holds
        for run, (at, pos) in enumerate(found):
            for flat_i, p in zip(at.tolist(), pos.tolist()):
                self._found.setdefault(flat_i // bands.shape[1], []).append((run, p))
        self._batch, self._batch_digests = bands, digests
        self._suspect = hit.reshape(bands.shape).any(axis=1).tolist()

    def _digests_of(self, slots: np.ndarray) -> np.ndarray:
        """Digests of kept rows (ascending slots): earlier batches' from the file, this batch's from its arrays."""
        parts = []
        old = slots[slots < self._first]
        if len(old):
            size = 4 * self.num_perm
            fd = self._spill.fileno()
            parts.append(np.frombuffer(b"".join(os.pread(fd, size, size * s) for s in old.tolist()),
                                       dtype=np.uint32).reshape(len(old), self.num_perm))
        new = slots[slots >= self._first]
        if len(new):
            parts.append(self._batch_digests[[self._kept[s] for s in (new - self._first).tolist()]])
        return np.concatenate(parts)

    def _candidates(self, r: int) -> np.ndarray:
        """Slots of earlier kept rows that share a band key with row r of the batch, ascending."""
        found = [s for k in self._batch[r].tolist() for s in self._in_batch.get(k, ())]
        for run, p in self._found.get(r, ()):
            keys, slots = self._runs[run]
            k = keys[p]
            while p < len(keys) and keys[p] == k:  # the key's run of slots (usually one)
                found.append(int(slots[p]))
                p += 1
        return np.unique(np.array(found, dtype=np.int64))

    def check_signed(self, keys: list[str], exact: list[bytes], digests, bands, rows=None
                     ) -> list[tuple[str, str] | None]:
        """`check` with the signatures computed (by `signatures`); `rows`: which of their rows
        `keys` stand for (default: all, in order). Rows are decided one by one, in order; a batch's
        signatures are screened the first time they are seen (the same arrays may come back row by row)."""
        rows = range(len(keys)) if rows is None else rows
        result: list[tuple[str, str] | None] = [None] * len(keys)
        if exact is not self._exact_batch:
            self._flush()
            self._screen_exact(exact)
            if self.near and bands is not None:
                self._screen(bands, digests)
        for i, r in enumerate(rows):
            hi, lo = self._hi[r], self._lo_of_batch[r]
            entry = self._entries + len(self._new_ids)
            if self._exact_suspect[r]:
                e = self._entry_of(hi, lo)
                if e is not None:
                    result[i] = ("exact", self._id_of(e))
                    continue
                self._new_at.setdefault(hi, []).append(entry)
            self._new_hi.append(hi)
            self._new_lo.append(lo)
            self._new_ids.append(keys[i])
            if not self.near:
                continue
            if self._suspect[r]:
                cands = self._candidates(r)
                if len(cands):
                    # estimated Jaccard: the share of permutations whose minimum agrees; the earliest wins
                    close = (self._digests_of(cands) == digests[r]).mean(axis=1) >= self.threshold
                    if close.any():
                        result[i] = ("near", self._id_of_slot(int(cands[np.argmax(close)])))
                        continue
                for k in bands[r].tolist():  # a later screened-in row of this batch may share a key
                    self._in_batch.setdefault(k, []).append(self._first + len(self._kept))
            self._kept.append(r)
            self._kept_entries.append(entry)
        return result
