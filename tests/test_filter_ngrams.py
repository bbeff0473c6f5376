"""filter.ngrams: numpy word n-grams that must equal scikit-learn's, array for array."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
from sklearn.utils import murmurhash3_32

from instructflow.filter import ngrams

# ASCII word and non-word characters, non-ASCII punctuation (numpy path after a space), and
# non-ASCII letters (the scikit-learn fallback), so every path and their mix is drawn.
ALPHABET = "abcXYZ019_ \n\t.,;:!?'\"-()/" + "’“”—…😀" + "éİßΩ"
TEXTS = st.lists(st.text(alphabet=ALPHABET, max_size=60), min_size=1, max_size=25)


def _same(a, b):
    a, b = a.tocsr(), b.tocsr()
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a.indptr, b.indptr)
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)


def test_murmur3_is_sklearns_on_every_length_and_seed():
    rng = np.random.default_rng(0)
    buf = rng.integers(0, 256, size=400, dtype=np.uint8)
    starts = rng.integers(0, 300, size=500)
    lens = rng.integers(0, 100, size=500)
    for seed in (0, 42, 0x9747B28C):
        got = ngrams.murmur3(buf, starts, lens, seed=seed)
        want = [murmurhash3_32(bytes(buf[s:s + n]), seed=seed) for s, n in zip(starts, lens)]
        assert got.tolist() == want


@settings(max_examples=150, deadline=None)
@given(TEXTS)
def test_hashed_word_grams_equal_hashing_vectorizer(texts):
    for ngram_max in (1, 2):
        hv = HashingVectorizer(analyzer="word", ngram_range=(1, ngram_max), n_features=2**10, alternate_sign=False,
                               lowercase=True, norm=None, token_pattern=r"(?u)\b\w+\b", dtype=np.float32)
        _same(ngrams.hashed_counts(texts, 2**10, hv.transform, ngram_max=ngram_max), hv.transform(texts))


@settings(max_examples=150, deadline=None)
@given(TEXTS, st.lists(st.text(alphabet="abcxyzé_019", min_size=2, max_size=5), min_size=1, max_size=40,
                       unique=True))
def test_vocabulary_counts_equal_count_vectorizer(texts, terms):
    cv = CountVectorizer(vocabulary={t: i for i, t in enumerate(terms)}, token_pattern=r"(?u)\b\w\w+\b",
                         lowercase=True, dtype=np.float64)
    _same(ngrams.vocab_counts(texts, ngrams.Vocabulary(terms), cv.transform, min_len=2), cv.transform(texts))


def test_texts_with_non_ascii_letters_go_to_the_fallback_and_keep_their_rows():
    calls = []

    def fallback(texts):
        calls.append(list(texts))
        return HashingVectorizer(n_features=2**10, ngram_range=(1, 2), alternate_sign=False, norm=None,
                                 token_pattern=r"(?u)\b\w+\b", dtype=np.float32).transform(texts)

    texts = ["plain text", "café au lait", "It’s fine", "naïve"]
    x = ngrams.hashed_counts(texts, 2**10, fallback)
    # curly quotes are not word characters: that row stays on the numpy path
    assert calls == [["café au lait", "naïve"]]
    assert x.shape == (4, 2**10) and x[1].sum() == 5 and x[3].sum() == 1   # 3 words + 2 bigrams; 1 word
    assert x[2].sum() == 5  # it, s, fine, "it s", "s fine"


def test_bigrams_need_every_word_run_as_a_token():
    with pytest.raises(ValueError, match="min_len 1"):
        ngrams.hashed_counts(["ab cd"], 2**10, None, ngram_max=2, min_len=2)
