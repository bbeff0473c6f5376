"""Exact and near-duplicate detection over normalised text.

Normalisation (NFKC, case-fold, punctuation to spaces, whitespace collapsed)
makes "Hello, World!" and "hello world" one text. Exact duplicates share the
sha256 of that text. Near duplicates are found with MinHash LSH (the Rust-backed
`rensa`): word shingles -> MinHash signatures in one bulk call, an LSH pass flags
every row that shares a band with another, and only those candidates are
checked pairwise (estimated Jaccard >= `threshold`) in input order, so the first
occurrence is kept and each later copy names it.

The filter checks evaluation prompts first, so a training row that repeats one
is reported against the evaluation row: duplicates cannot straddle train and
evaluation.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

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
    """(keys, slots) ordered by key, equal keys in slot order (a stable sort: two sorted runs
    concatenated are merged by timsort in one pass)."""
    order = np.argsort(keys, kind="stable")
    return keys[order], slots[order]


class Deduper:
    """Finds the first earlier text each text duplicates, exactly or nearly.

    Rows are added in batches (`check`); returns for each row None (new) or
    (kind, key) with kind `exact` or `near` and the key of the row it repeats.
    Near duplicates: MinHash LSH with `num_bands` bands; two texts are candidates when one
    band of their digests is equal (its 64-bit bucket key), and a candidate is a duplicate when
    the share of equal digest values (estimated Jaccard) reaches `threshold`.

    The index is numpy, not a dict: the bucket keys of the rows kept so far sit in a few sorted runs
    of (key, slot), merged as they grow (a log-structured merge), and their digests in a temporary
    file. At a million rows that is ~0.2 GB of keys in memory and 0.5 GB of digests on disk, where a
    dict of 16 million buckets and the digests took ~3 GB of memory. Each batch of signatures is
    screened at once: a row none of whose band keys is in the index or repeated within its batch
    (almost every row) is new without a lookup of its own; only the others are looked up, one by
    one and in order, so the decisions are those of a row-by-row check."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, num_bands: int = 16, shingle: int = 3,
                 seed: int = 0, near: bool = True):
        self.threshold, self.num_perm, self.num_bands = threshold, num_perm, num_bands
        self.shingle, self.seed, self.near = shingle, seed, near
        self.exact: dict[bytes, str] = {}
        self._keys: list[str] = []                            # slot -> row key
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # sorted band keys (uint64), their slots (int32)
        # Digests of earlier batches' new rows, by slot, in an unnamed temporary file: only candidates
        # are read back (a few rows per batch), so 0.5 GB per million rows stays out of this process.
        self._spill = None
        # the batch being checked: its arrays, which rows may have a candidate, the rows kept so far
        # (slot = self._first + position), and band key -> slots for the kept rows that were screened in
        self._batch = self._batch_digests = None
        self._suspect: list[bool] = []
        self._kept: list[int] = []
        self._first = 0
        self._in_batch: dict[int, list[int]] = {}
        self._found: dict[int, list[tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def nbytes(self) -> int:
        """Bytes the index holds in memory (band keys and their slots); the digests are on disk."""
        return sum(k.nbytes + s.nbytes for k, s in self._runs)

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
        """The batch's new rows join the index as a sorted run; a run merges into the one before while
        that one is no bigger (a binary counter: at most log2(batches) runs, each key merged as often)."""
        if self._kept:
            kept = np.array(self._kept)
            keys = self._batch[kept].ravel()
            slots = np.repeat(np.arange(self._first, self._first + len(kept), dtype=np.int32), self.num_bands)
            self._runs.append(_sorted_run(keys, slots))
            if self._spill is None:
                import tempfile

                self._spill = tempfile.TemporaryFile()
            self._spill.seek(0, 2)
            self._spill.write(np.ascontiguousarray(self._batch_digests[kept], dtype=np.uint32).tobytes())
            self._spill.flush()
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= len(self._runs[-1][0]):
            (k2, s2), (k1, s1) = self._runs.pop(), self._runs.pop()
            self._runs.append(_sorted_run(np.concatenate([k1, k2]), np.concatenate([s1, s2])))
        self._kept, self._in_batch, self._first = [], {}, len(self._keys)

    def _screen(self, bands: np.ndarray, digests: np.ndarray) -> None:
        """Which rows of a new batch may have a candidate: one with a band key in the index, or with a
        key that occurs twice in the batch. A row that shares a key with a later row of its batch is
        screened in with it, so a later row never needs to find a row that was not."""
        self._flush()
        flat = bands.ravel()
        order = np.argsort(flat)
        ordered = flat[order]
        hit = np.zeros(len(flat), dtype=bool)
        self._found = {}  # row -> [(run, first position of its key)] for the keys the index holds
        for run, (keys, _) in enumerate(self._runs):  # sorted queries: numpy's binary search reuses the last bound
            pos = np.minimum(np.searchsorted(keys, ordered), len(keys) - 1)
            at = np.flatnonzero(keys[pos] == ordered)
            hit[order[at]] = True
            for flat_i, p in zip(order[at].tolist(), pos[at].tolist()):
                self._found.setdefault(flat_i // bands.shape[1], []).append((run, p))
        same = ordered[1:] == ordered[:-1]
        hit[order[1:][same]] = True
        hit[order[:-1][same]] = True
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
        if self.near and bands is not None and bands is not self._batch:
            self._screen(bands, digests)
        for i, r in enumerate(rows):
            h = exact[r]
            if h in self.exact:
                result[i] = ("exact", self.exact[h])
                continue
            self.exact[h] = keys[i]
            if not self.near:
                continue
            if self._suspect[r]:
                cands = self._candidates(r)
                if len(cands):
                    # estimated Jaccard: the share of permutations whose minimum agrees; the earliest wins
                    close = (self._digests_of(cands) == digests[r]).mean(axis=1) >= self.threshold
                    if close.any():
                        result[i] = ("near", self._keys[int(cands[np.argmax(close)])])
                        continue
                for k in bands[r].tolist():  # a later screened-in row of this batch may share a key
                    self._in_batch.setdefault(k, []).append(len(self._keys))
            self._kept.append(r)
            self._keys.append(keys[i])
        return result
