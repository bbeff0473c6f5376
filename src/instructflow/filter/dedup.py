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


def normalize(text: str) -> str:
    """NFKC, case-folded, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def shingles(norm: str, n: int) -> list[str]:
    """Word n-grams of a normalised text (the whole text when it is shorter)."""
    words = norm.split()
    if len(words) <= n:
        return [" ".join(words)] if words else [""]
    return [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]


def exact_key(norm: str) -> str:
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


class Deduper:
    """Finds the first earlier text each text duplicates, exactly or nearly.

    Rows are added in batches (`check`); returns for each row None (new) or
    (kind, key) with kind `exact` or `near` and the key of the row it repeats."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, num_bands: int = 16, shingle: int = 3,
                 seed: int = 0, near: bool = True):
        self.threshold, self.num_perm, self.num_bands = threshold, num_perm, num_bands
        self.shingle, self.seed, self.near = shingle, seed, near
        self.exact: dict[str, str] = {}
        self._lsh = None
        # LSH slot -> MinHash digest as bytes: a third of an RMinHash object's memory (1M rows: ~0.5 GB)
        self._digests: list[bytes] = []
        self._keys: list[str] = []           # LSH slot -> row key

    def _index(self):
        if self._lsh is None:
            from rensa import RMinHashLSH

            self._lsh = RMinHashLSH(threshold=self.threshold, num_perm=self.num_perm, num_bands=self.num_bands)
        return self._lsh

    def check(self, keys: list[str], texts: list[str], norms: list[str] | None = None
              ) -> list[tuple[str, str] | None]:
        """Duplicates among `texts` and everything checked before; new rows are remembered, so
        rows checked first (evaluation prompts) win over every later copy. `norms`: the texts
        already normalised, if the caller has them."""
        norms = norms if norms is not None else [normalize(t) for t in texts]
        result: list[tuple[str, str] | None] = [None] * len(texts)
        fresh = []
        for i, (key, norm) in enumerate(zip(keys, norms)):
            h = exact_key(norm)
            if h in self.exact:
                result[i] = ("exact", self.exact[h])
            else:
                self.exact[h] = key
                fresh.append(i)
        if not self.near or not fresh:
            return result
        from rensa import RMinHash

        lsh = self._index()
        token_sets = [shingles(norms[i], self.shingle) for i in fresh]
        mins = RMinHash.from_token_sets(token_sets, self.num_perm, self.seed)
        for i, mh in zip(fresh, mins):
            digest = np.asarray(mh.digest(), dtype=np.uint32)
            best = None
            for slot in sorted(lsh.query(mh)):
                # estimated Jaccard: the share of permutations whose minimum agrees
                if np.mean(np.frombuffer(self._digests[slot], dtype=np.uint32) == digest) >= self.threshold:
                    best = slot
                    break
            if best is not None:
                result[i] = ("near", self._keys[best])
                continue
            slot = len(self._keys)
            lsh.insert(slot, mh)
            self._digests.append(digest.tobytes())
            self._keys.append(keys[i])
        return result
