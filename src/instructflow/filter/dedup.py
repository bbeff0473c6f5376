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


class Deduper:
    """Finds the first earlier text each text duplicates, exactly or nearly.

    Rows are added in batches (`check`); returns for each row None (new) or
    (kind, key) with kind `exact` or `near` and the key of the row it repeats.
    Near duplicates: MinHash LSH with `num_bands` bands; two texts are candidates when one
    band of their digests is equal (its 64-bit bucket key), and a candidate is a duplicate when
    the share of equal digest values (estimated Jaccard) reaches `threshold`."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, num_bands: int = 16, shingle: int = 3,
                 seed: int = 0, near: bool = True):
        self.threshold, self.num_perm, self.num_bands = threshold, num_perm, num_bands
        self.shingle, self.seed, self.near = shingle, seed, near
        self.exact: dict[bytes, str] = {}
        self._buckets: dict = {}  # band bucket key -> slot, or [slots] once a bucket has two
        # LSH slot -> MinHash digest as bytes (1M rows: ~0.5 GB)
        self._digests: list[bytes] = []
        self._keys: list[str] = []           # LSH slot -> row key

    def signatures(self, norms: list[str]):
        return signatures(norms, self.shingle, self.num_perm, self.num_bands, self.seed, self.near)

    def check(self, keys: list[str], texts: list[str], norms: list[str] | None = None
              ) -> list[tuple[str, str] | None]:
        """Duplicates among `texts` and everything checked before; new rows are remembered, so
        rows checked first (evaluation prompts) win over every later copy. `norms`: the texts
        already normalised, if the caller has them."""
        norms = norms if norms is not None else [normalize(t) for t in texts]
        return self.check_signed(keys, *self.signatures(norms))

    def check_signed(self, keys: list[str], exact: list[bytes], digests, bands, rows=None
                     ) -> list[tuple[str, str] | None]:
        """`check` with the signatures computed (by `signatures`); `rows`: which of their rows
        `keys` stand for (default: all, in order). Rows are decided one by one, in order."""
        rows = range(len(keys)) if rows is None else rows
        result: list[tuple[str, str] | None] = [None] * len(keys)
        buckets, threshold = self._buckets, self.threshold
        for i, r in enumerate(rows):
            h = exact[r]
            if h in self.exact:
                result[i] = ("exact", self.exact[h])
                continue
            self.exact[h] = keys[i]
            if not self.near:
                continue
            band_keys = bands[r].tolist()
            slot = len(self._keys)
            if buckets.keys().isdisjoint(band_keys):
                # No bucket shared (most rows): a new slot in every bucket, in one C call. A bucket
                # holds a bare slot number until it has two: a million rows would otherwise make
                # 16 million one-item lists, which the cyclic GC walks again and again (ints it skips).
                buckets.update(dict.fromkeys(band_keys, slot))
            else:
                slots = set()
                for k in band_keys:
                    hit = buckets.get(k)
                    if hit is not None:
                        if isinstance(hit, int):
                            slots.add(hit)
                        else:
                            slots.update(hit)
                digest, best = digests[r], None
                for cand in sorted(slots):
                    # estimated Jaccard: the share of permutations whose minimum agrees
                    if np.mean(np.frombuffer(self._digests[cand], dtype=np.uint32) == digest) >= threshold:
                        best = cand
                        break
                if best is not None:
                    result[i] = ("near", self._keys[best])
                    continue
                for k in band_keys:
                    hit = buckets.get(k)
                    if hit is None:
                        buckets[k] = slot
                    elif isinstance(hit, int):
                        buckets[k] = [hit, slot]
                    else:
                        hit.append(slot)
            self._digests.append(digests[r].tobytes())
            self._keys.append(keys[i])
        return result
