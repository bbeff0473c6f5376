"""Word n-gram features of many texts at once, equal to scikit-learn's, in numpy.

scikit-learn's word analyzer is Python per token: at a million records it was half of
the filter's time (README, "Data stages at scale"). For ASCII texts the same features
come out of a few numpy passes over all of a batch's bytes:

- lower-case and split into runs of word characters ([A-Za-z0-9_]: what `\\w` matches in
  ASCII), keeping runs of at least `min_len` (token_pattern `\\b\\w+\\b` is 1, `\\b\\w\\w+\\b` 2);
- unigrams and the bigrams of neighbouring tokens ("a b", one space, as sklearn joins them);
- MurmurHash3 (x86, 32-bit, seed 0) of each feature's UTF-8 bytes, vectorised over the
  features block by block, then sklearn's `abs(h) % n_features` bucket.

`hashed_counts` equals `HashingVectorizer(analyzer="word", norm=None, alternate_sign=False,
lowercase=True, token_pattern=...)` (tests/test_filter_ngrams.py checks the matrices equal,
array for array); `vocab_counts` equals a CountVectorizer with a fixed vocabulary. A text with
non-ASCII word characters (letters such as "é": case folding and `\\w` differ there) goes through
the scikit-learn vectorizer the caller passes; other non-ASCII characters (curly quotes, dashes,
emoji) split words as a space does and take the numpy path. Either way every text gets
scikit-learn's features.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

_NONASCII = re.compile(r"[^\x00-\x7f]")
_NONASCII_WORD = re.compile(r"[^\W\x00-\x7f]")  # a non-ASCII character that \w matches
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A"):ord("Z") + 1] += 32
_WORD = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789_":
    _WORD[_c] = True
_C1, _C2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)
_MASK = np.array([0, 0xFF, 0xFFFF, 0xFFFFFF], dtype=np.uint32)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def murmur3(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, seed: int = 0) -> np.ndarray:
    """MurmurHash3_x86_32 of the byte strings buf[start:start+len], as sklearn's murmurhash3_32 (int32).

    Block j of a string is the little-endian word at start + 4j, read from a precomputed array of
    the word at every byte offset; the tail is the word after the last block, masked."""
    n = len(starts)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    b = np.concatenate([buf, np.zeros(3, dtype=np.uint8)]).astype(np.uint32)
    word = b[:-3] | (b[1:-2] << np.uint32(8)) | (b[2:-1] << np.uint32(16)) | (b[3:] << np.uint32(24))
    word = np.append(word, np.uint32(0))  # the tail word of a string that ends the buffer
    nblocks = (lens // 4).astype(np.int32)
    order = np.argsort(-nblocks, kind="stable")  # most blocks first: the strings still hashing are a prefix
    at, ascending = starts[order], nblocks[order][::-1]
    h = np.full(n, seed, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for j in range(int(nblocks.max())):
            m = n - int(np.searchsorted(ascending, j, "right"))  # strings with more than j blocks
            k = _rotl(word[at[:m] + 4 * j] * _C1, 15) * _C2
            h[:m] = _rotl(h[:m] ^ k, 13) * np.uint32(5) + np.uint32(0xE6546B64)
        out = np.empty_like(h)
        out[order] = h
        tail = np.flatnonzero(lens & 3)
        k = word[starts[tail] + 4 * nblocks[tail]] & _MASK[lens[tail] & 3]
        out[tail] ^= _rotl(k * _C1, 15) * _C2
        out ^= lens.astype(np.uint32)
        out = _fmix(out)
    return out.view(np.int32)


def tokens(texts: Sequence[str], min_len: int = 1):
    """Lower-cased runs of word characters (at least min_len long) of ASCII texts, all at once:
    (buffer, starts, lengths, the text of each token). In the buffer every run of other characters
    is one space, so a bigram of neighbouring tokens is the contiguous buf[start1:end2]."""
    raw = _LOWER[np.frombuffer("\n".join(texts).encode("ascii"), dtype=np.uint8)]
    word = _WORD[raw]
    first_of_run = np.empty(len(raw), dtype=bool)
    if len(raw):
        first_of_run[0] = True
        np.not_equal(word[1:], word[:-1], out=first_of_run[1:])
    buf = np.where(word, raw, np.uint8(32))[word | first_of_run]
    edge = np.diff(word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    lens = ends - starts
    # where each token starts in the buffer: after the tokens before it and one space per gap
    at = np.zeros(len(starts), dtype=np.int64)
    np.cumsum(lens[:-1] + 1, out=at[1:])
    at += int(len(raw) > 0 and not word[0])  # a leading gap
    ok = lens >= min_len
    starts, lens, at = starts[ok], lens[ok], at[ok]
    text_starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]]) if len(texts) else np.zeros(0, np.int64)
    row = np.searchsorted(text_starts, starts, "right") - 1
    return buf, at, lens, row


def _ascii_split(texts: Sequence[str]) -> tuple[list[int], list[int], list[str]]:
    """Which texts take the numpy path (fast), which the fallback (slow), and the fast ones' ASCII text.
    A text whose only non-ASCII characters are not word characters (curly quotes, dashes, emoji) is
    fast too: each such character becomes a space, which splits tokens exactly as it did."""
    fast, slow, ascii_texts = [], [], []
    for i, t in enumerate(texts):
        if t.isascii():
            fast.append(i)
            ascii_texts.append(t)
        elif _NONASCII_WORD.search(t) is None:
            fast.append(i)
            ascii_texts.append(_NONASCII.sub(" ", t))
        else:
            slow.append(i)
    return fast, slow, ascii_texts


def _rows_to_csr(row: np.ndarray, col: np.ndarray, n_rows: int, n_cols: int, dtype):
    """Counts as CSR with sorted, summed indices (sklearn's canonical form)."""
    from scipy import sparse

    order = np.argsort(row, kind="stable")
    indptr = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(row, minlength=n_rows), out=indptr[1:])
    x = sparse.csr_matrix((np.ones(len(col), dtype=dtype), col[order].astype(np.int32), indptr),
                          shape=(n_rows, n_cols))
    x.sum_duplicates()
    return x


def _merge(texts: Sequence[str], fast: list[int], slow: list[int], fast_x, fallback):
    """Rows in the texts' order: the numpy rows for the fast texts, the fallback's for the others."""
    from scipy import sparse

    if not slow:
        return fast_x
    slow_x = fallback([texts[i] for i in slow]).tocsr()
    both = sparse.vstack([fast_x, slow_x.astype(fast_x.dtype)], format="csr")
    where = np.empty(len(texts), dtype=np.int64)
    where[fast + slow] = np.arange(len(texts))
    return both[where]


def hashed_counts(texts: Sequence[str], n_features: int, fallback, ngram_max: int = 2, min_len: int = 1,
                  dtype=np.float32):
    """Hashed word 1..ngram_max gram counts (ngram_max 1 or 2), as HashingVectorizer with norm=None and
    alternate_sign=False gives them; `fallback(texts)` vectorises the texts with non-ASCII word characters."""
    texts = [str(t) for t in texts]
    if ngram_max >= 2 and min_len > 1:
        raise ValueError("bigrams are built for min_len 1 only (every run of word characters a token)")
    fast, slow, ascii_texts = _ascii_split(texts)
    buf, starts, lens, row = tokens(ascii_texts, min_len)
    starts, lens, rows = [starts], [lens], [row]
    if ngram_max >= 2 and len(row) > 1:
        pair = np.flatnonzero(row[1:] == row[:-1])
        starts.append(starts[0][pair]), lens.append(starts[0][pair + 1] + lens[0][pair + 1] - starts[0][pair])
        rows.append(row[pair])
    h = murmur3(buf, np.concatenate(starts), np.concatenate(lens))
    h64 = h.astype(np.int64)
    col = np.where(h64 == -2**31, (2**31 - 1 - (n_features - 1)) % n_features, np.abs(h64) % n_features)
    x = _rows_to_csr(np.concatenate(rows), col, len(fast), n_features, dtype)
    return _merge(texts, fast, slow, x, fallback)


class Vocabulary:
    """A fixed vocabulary's terms by 64-bit key (two MurmurHash3 seeds), for `vocab_counts`."""

    def __init__(self, terms: Sequence[str]):
        data = [t.encode("utf-8") for t in terms]
        buf = np.frombuffer(b"".join(data), dtype=np.uint8).copy() if data else np.zeros(0, np.uint8)
        lens = np.array([len(d) for d in data], dtype=np.int64)
        starts = np.cumsum(np.concatenate([[0], lens[:-1]])) if len(lens) else lens
        keys = _key64(buf, starts, lens)
        if len(np.unique(keys)) != len(keys):
            raise ValueError("two vocabulary terms share a 64-bit key")
        self.order = np.argsort(keys)
        self.keys = keys[self.order]
        self.size = len(terms)


def _key64(buf, starts, lens) -> np.ndarray:
    a = murmur3(buf, starts, lens, seed=0).view(np.uint32).astype(np.uint64)
    b = murmur3(buf, starts, lens, seed=0x9747B28C).view(np.uint32).astype(np.uint64)
    return (a << np.uint64(32)) | b


def vocab_counts(texts: Sequence[str], vocab: Vocabulary, fallback, min_len: int = 2, dtype=np.float64):
    """Counts of a fixed vocabulary's words (unigrams), as CountVectorizer(vocabulary=...) gives them;
    `fallback(texts)` counts the texts with non-ASCII word characters. Tokens and terms are compared by
    64-bit keys (two MurmurHash3 seeds; the terms' keys are checked distinct), so a token that is not a
    term matches one only by a key collision: about 1e-15 per token for the offensive member's 15,442 terms."""
    texts = [str(t) for t in texts]
    fast, slow, ascii_texts = _ascii_split(texts)
    buf, starts, lens, row = tokens(ascii_texts, min_len)
    keys = _key64(buf, starts, lens)
    pos = np.minimum(np.searchsorted(vocab.keys, keys), max(len(vocab.keys) - 1, 0))
    hit = vocab.keys[pos] == keys if len(vocab.keys) else np.zeros(len(keys), dtype=bool)
    x = _rows_to_csr(row[hit], vocab.order[pos[hit]], len(fast), vocab.size, dtype)
    return _merge(texts, fast, slow, x, fallback)
