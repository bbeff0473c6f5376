"""The offensive-language member: alt-profanity-check's trained model, kept as safetensors.

`alt-profanity-check` (PyPI, MIT) ships a linear SVM over TF-IDF words, trained on
about 200k human-labelled comments (Wikipedia talk pages and tweets), with sigmoid
calibration in five folds. Nothing in this project trained it, so it brings what
the harm detector's own rows cannot: a judge of offensive and hateful language that
has seen real comments, in the default pipeline too (whose detector learns only the
built-in corpus's labels). Measured in docs/filter.md: alone it finds insults and
slurs at high precision and little else, so it is a member that can only add flags
(a reply it calls offensive is toxic), never the detector.

It judges only texts with at least `min_words` (2) distinct words of its vocabulary.
Its TF-IDF rows are l2-normalised, so in a one-word reply that word alone decides,
and an answer like "dirty" (the opposite of clean), "wet" or "truck" scored 0.53-0.88
on the built-in corpus: the model learnt comments, not one-word answers.

The package keeps its model as joblib pickles. `export` loads them once, in the
detector stage, only after their sha256 matches the pinned release (1.9.1): they are
the registry package's own data, hash-checked, not a user file. It writes the
vocabulary and idf (`offensive.json`) and the five folds' weights and calibrators
(`offensive.safetensors`) into the detector folder; `load` rebuilds the scorer from
those with scikit-learn's TfidfVectorizer and numpy, unpickling nothing, so the
filter, evaluation and the audit never import the package.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

CONFIG, WEIGHTS = "offensive.json", "offensive.safetensors"
PACKAGE, VERSION = "alt-profanity-check", "1.9.1"
# sha256 of the package's data files in the pinned wheel (its RECORD lists the same digests).
PINNED = {
    "vectorizer.joblib": "19c5200dc6a41f026e0558e2f164f5fe8d8f58e502b46b37e4385037fcfa4831",
    "model.joblib": "aeafc04849d4d93db4721cf30a86ebf22085595294b8a07d51918e7fa98f538b",
}
# The TfidfVectorizer settings the package's vectorizer was fitted with (checked on export).
VECTORIZER = {"lowercase": True, "stop_words": "english", "token_pattern": r"(?u)\b\w\w+\b", "ngram_range": [1, 1],
              "norm": "l2", "use_idf": True, "smooth_idf": True, "sublinear_tf": False, "analyzer": "word"}


class OffensiveError(RuntimeError):
    """The package is missing, or its files are not the pinned release."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_files() -> dict[str, Path]:
    """The installed package's model files, after checking they are the pinned release's."""
    from importlib import metadata, resources

    try:
        version = metadata.version(PACKAGE)
        folder = resources.files("profanity_check") / "data"
    except (metadata.PackageNotFoundError, ModuleNotFoundError) as err:
        raise OffensiveError(f"{PACKAGE} is not installed ({err}); `make install` installs it, or set "
                             "detector.offensive: false") from err
    files = {name: Path(str(folder / name)) for name in PINNED}
    for name, path in files.items():
        got = _sha256(path) if path.is_file() else "missing"
        if got != PINNED[name]:
            raise OffensiveError(f"{path}: sha256 {got} is not {PACKAGE} {VERSION}'s {PINNED[name]} (installed: "
                                 f"{version}); refusing to unpickle it")
    return files


def export(out: str | Path, threshold: float = 0.5, min_words: int = 2) -> dict:
    """Write the package's model into `out` as offensive.json + offensive.safetensors; returns its config."""
    import joblib  # the package's own loader; its files were hash-checked just before
    from safetensors.numpy import save_file

    files = package_files()
    vec, model = joblib.load(files["vectorizer.joblib"]), joblib.load(files["model.joblib"])
    params = vec.get_params()
    for key, want in VECTORIZER.items():
        got = list(params[key]) if isinstance(params[key], tuple) else params[key]
        if got != want:
            raise OffensiveError(f"{PACKAGE}: vectorizer {key}={got!r}, expected {want!r}")
    terms = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
    folds = model.calibrated_classifiers_
    tensors = {
        "idf": np.asarray(vec.idf_, dtype=np.float64),
        "coef": np.stack([f.estimator.coef_[0] for f in folds]).astype(np.float64),
        "intercept": np.array([f.estimator.intercept_[0] for f in folds], dtype=np.float64),
        # sklearn's sigmoid calibration: P = 1 / (1 + exp(a * d + b)), d the SVM's decision value
        "calib_a": np.array([f.calibrators[0].a_ for f in folds], dtype=np.float64),
        "calib_b": np.array([f.calibrators[0].b_ for f in folds], dtype=np.float64),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS))
    cfg = {"package": PACKAGE, "version": VERSION, "files": dict(PINNED), "threshold": float(threshold),
           "min_words": int(min_words), "vectorizer": VECTORIZER, "terms": terms}
    (out / CONFIG).write_text(json.dumps(cfg, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return cfg


class Offensive:
    """P(offensive) of texts, as the package's `predict_prob` gives it (tested equal)."""

    def __init__(self, cfg: dict, tensors: dict[str, np.ndarray]):
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

        from . import ngrams

        if cfg["vectorizer"] != VECTORIZER:
            raise OffensiveError(f"offensive member: vectorizer {cfg['vectorizer']} is not {VECTORIZER}")
        # Words (runs of 2+ word characters) counted by `ngrams` in numpy; this counter, TfidfVectorizer's
        # own first step, takes the texts numpy cannot (non-ASCII words). Stop words need no numpy twin:
        # fitting left none in the vocabulary (checked).
        if not ENGLISH_STOP_WORDS.isdisjoint(cfg["terms"]):
            raise OffensiveError("offensive member: its vocabulary holds stop words")
        v = {k: x for k, x in VECTORIZER.items() if k in ("lowercase", "stop_words", "token_pattern", "analyzer")}
        self.counter = CountVectorizer(vocabulary={t: i for i, t in enumerate(cfg["terms"])}, dtype=np.float64, **v)
        self.vocab = ngrams.Vocabulary(cfg["terms"])
        self.idf = tensors["idf"]
        self.coef, self.intercept = tensors["coef"], tensors["intercept"]
        self.a, self.b = tensors["calib_a"], tensors["calib_b"]
        self.threshold, self.min_words = float(cfg["threshold"]), int(cfg["min_words"])
        self.meta = {k: cfg[k] for k in ("package", "version", "files", "threshold", "min_words")}

    def tfidf(self, texts: Sequence[str]):
        """The package's TF-IDF rows: counts times idf, l2-normalised (TfidfVectorizer.transform's steps)."""
        from sklearn.preprocessing import normalize

        from . import ngrams

        x = ngrams.vocab_counts([str(t) for t in texts], self.vocab, self.counter.transform, min_len=2)
        x.data *= self.idf[x.indices]
        return normalize(x, norm="l2", copy=False)

    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(P(offensive), whether the text is judged at all) per text: judged are texts with at least
        `min_words` distinct words of the model's vocabulary (stop words aside)."""
        if not len(texts):
            return np.zeros(0), np.zeros(0, dtype=bool)
        x = self.tfidf(texts)
        d = np.asarray(x @ self.coef.T) + self.intercept
        return (1.0 / (1.0 + np.exp(d * self.a + self.b))).mean(axis=1), x.getnnz(axis=1) >= self.min_words

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self.scores(texts)[0]

    def flag(self, texts: Sequence[str]) -> np.ndarray:
        p, judged = self.scores(texts)
        return judged & (p >= self.threshold)


def load(folder: str | Path) -> Offensive | None:
    """The member saved in a detector folder, or None when the detector has none."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        return None
    cfg = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    return Offensive(cfg, load_file(str(folder / WEIGHTS)))
