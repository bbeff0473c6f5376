"""Measure harm-detector candidates side by side on the public labelled sets.

    python -m instructflow.filter.measure [--shared ../shared/data] [--out reports/detector/shared.json]
        [--candidates reference,reference-benign1,ensemble,tfidf-ensemble] [--target-precision 0.75] [--cache FILE.npz]
        [--source-weight-power 0.5] [--prompt-sets] [--offensive] [--bootstrap 1000]

Trains every candidate on the same rows (beavertails train part, diasafety train,
toxicchat train, hate-offensive train part, benign answers: CoCoNot chosen,
Self-Instruct, Dolly safety-related), picks each one's threshold on the
same validation slice of those rows (tfidf-ensemble: one per task), and scores the held-back sets: the
beavertails and hate-offensive test parts, diasafety test, toxicchat test,
jigsaw, toxigen, hatecheck, aegis and dices, and CoCoNot's should-decline requests
against its contrast (look-alike) prompts, none of which any candidate saw, plus the
share of benign Alpaca and Dolly answers each would flag. `--prompt-sets` also trains
on requests without answers (harmful: CatQA, AART, AILuminate; harmless: CoCoNot's
contrast preference prompts, Self-Instruct and Dolly instructions). Parts are cut
by a hash of the prompt, so the same prompt never straddles train and test.

`reference` is the baseline of issue 5: TF-IDF (word 1-2 grams) + logistic
regression on prompt and reply joined, flagging at P >= 0.5.

`--offensive` scores each fitted candidate a second time with the offensive-language
member folded in (`NAME+offensive`): alt-profanity-check's model, trained on real
comments this project never saw. It was trained on Jigsaw's and Davidson's
(hate-offensive) comments, so on those two sets its figures are not held-out ones.

`--bootstrap N` (default 1000) compares every candidate with `reference` on the same rows:
the F1 difference per test set (flagged-share difference per benign set) with a 95 %
paired-bootstrap interval, resampling rows N times with a fixed seed. A set is beaten
`clearly` only when the whole interval is above 0: on a test part of a few hundred rows
(BeaverTails: 340) a difference of 0.01-0.03 F1 is within what resampling moves.

This reads the shared files directly (through `labelled.PRESETS`) to compare
models; the pipeline's own detector stage reads ingest `labelled` sources.
Timing goes to stdout, never into the output file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ..records import hash_fraction
from . import detector as det
from . import labelled

ROOT = Path(__file__).resolve().parents[3]

# name -> (path under the shared folder, preset, role). Roles: train, test, split (hash-cut train/test), benign.
SETS = {
    "beavertails": ("beavertails/beavertails_30k_test_1842.json.gz", "guardreasoner", "split"),
    "diasafety_train": ("diasafety/diasafety_train_9007.json.gz", "diasafety", "train"),
    "toxicchat_train": ("toxicchat/toxic_chat_train_2791.json.gz", "toxicchat", "train"),
    "hate-offensive": ("hate-offensive/labeled_data_sample_4996.csv", "hate-offensive", "split"),
    # Benign answers for the safe side: without them nothing teaches the model what a long,
    # helpful answer about a sensitive topic looks like, and it flags benign instruction data.
    "coconot_chosen": ("coconot/coconot_contrast_pref_898.jsonl.gz", "coconot-chosen", "train"),
    "self_instruct": ("self-instruct/seed_tasks.jsonl", "self-instruct", "train"),
    # Dolly's safety-related answers train (benign, long, sensitive topics); Dolly closed QA and
    # Alpaca, the sets issue 5's <= 1 % goal names, stay held back for measuring.
    "dolly_safety": ("dolly/dolly_safety_related_387.jsonl", "dolly", "train"),
    "diasafety_test": ("diasafety/diasafety_test_1093.json", "diasafety", "test"),
    "toxicchat_test": ("toxicchat/toxic_chat_test_2836.json.gz", "toxicchat", "test"),
    "jigsaw": ("jigsaw/jigsaw_train_282.csv", "jigsaw", "test"),
    "toxigen": ("toxigen/toxigen_demonstrations_587.csv", "toxigen", "test"),
    "hatecheck": ("hatecheck/hatecheck_test_suite_cases_3718.csv", "hatecheck", "test"),
    "aegis": ("aegis/aegis_safety_test_302.json", "guardreasoner", "test"),
    "dices_990": ("dices/dices_990_982.json", "dices", "test"),
    "dices_350": ("dices/dices_350_expert_350.json", "dices", "test"),
    "alpaca": ("alpaca/alpaca_safety_related_1904.json", "alpaca", "benign"),
    "dolly_closed_qa": ("dolly/dolly_closed_qa_1000.csv", "dolly", "benign"),
}
# What each set's rows are, as an ingest source declares it (`task`): a TaskEnsemble scores a text
# alone as a prompt unless the set holds comments (toxicity, hate); rows with a reply are exchanges.
TASKS = {"beavertails": "response_harm", "diasafety_train": "response_harm", "toxicchat_train": "prompt_harm",
         "hate-offensive": "hate", "coconot_chosen": "response_harm", "self_instruct": "response_harm",
         "dolly_safety": "response_harm", "diasafety_test": "response_harm", "toxicchat_test": "prompt_harm",
         "jigsaw": "toxicity", "toxigen": "hate", "hatecheck": "hate", "aegis": "prompt_harm",
         "dices_990": "response_harm", "dices_350": "response_harm", "alpaca": "response_harm",
         "dolly_closed_qa": "response_harm"}
# Requests without answers, every row one label (prompt harm): harmful questions and commands
# (CatQA, AART, AILuminate without its specialised-advice hazards, which deserve a careful answer)
# and harmless requests, look-alikes among them (CoCoNot's contrast preference prompts). They teach
# the prompt task what a harmful *request* is; ToxicChat alone teaches toxic chat. CoCoNot's
# should-decline requests against its contrast test prompts measure it on sets none of them saw.
# name -> (path, field holding the prompt, label, role)
PROMPT_SETS = {
    "catqa": ("red-instruct/catqa_english.json", "", 1, "split"),
    "aart": ("aart/aart-v1-20231117_3241.csv.gz", "prompt", 1, "split"),
    "ailuminate": ("ailuminate/airr_official_1.0_demo_en_us_prompt_set_release_1199.csv", "prompt_text", 1,
                   "split"),
    "coconot_pref_prompts": ("coconot/coconot_contrast_pref_898.jsonl.gz", "prompt", 0, "train"),
    "self_instruct_prompts": ("self-instruct/seed_tasks.jsonl", "instruction", 0, "train"),
    "dolly_safety_prompts": ("dolly/dolly_safety_related_387.jsonl", "instruction", 0, "train"),
    "coconot_prompts": ("", "", 0, "test"),  # should-decline (1) + contrast test (0), built below
}
AILUMINATE_SKIP = ("spc_ele", "spc_fin", "spc_hlt", "spc_lgl")
TASKS.update({name: "prompt_harm" for name in PROMPT_SETS})
# The reference baseline is trained on exactly the sets issue 5 names.
REFERENCE_SETS = ("beavertails", "diasafety_train", "toxicchat_train", "hate-offensive")
BENIGN_TRAIN = ("coconot_chosen", "self_instruct", "dolly_safety")  # benign answers among the training sets
TEST_FRACTION = 0.2        # of the `split` sets
VALIDATION_FRACTION = 0.1  # of the training rows, for thresholds


def _alpaca_prompts(path: Path) -> list[str]:
    """Alpaca's prompt is the instruction plus its optional input."""
    rows = labelled.read_rows(path)
    return [(r.get("instruction", "") + ("\n\n" + r["input"] if r.get("input") else "")).strip() for r in rows]


def _prompt_set(shared: Path, name: str) -> tuple[list[str], list[str], list[int]]:
    """A PROMPT_SETS entry as (prompts, no replies, its label for every row)."""
    if name == "coconot_prompts":
        bad = [r["prompt"] for r in labelled.read_rows(shared / "coconot/coconot_eval_safety_concerns_391.jsonl")]
        good = [r["prompt"] for r in labelled.read_rows(shared / "coconot/coconot_contrast_eval_379.jsonl")]
        return bad + good, [""] * (len(bad) + len(good)), [1] * len(bad) + [0] * len(good)
    rel, field, label, _ = PROMPT_SETS[name]
    data = labelled.read_rows(shared / rel) if field else None
    if data is None:  # CatQA: {category: {subcategory: [question, ...]}}
        nested = json.loads(labelled._open_text(shared / rel))
        texts = [q for sub in nested.values() for qs in sub.values() for q in qs]
    else:
        texts = [str(r[field]) for r in data if not (name == "ailuminate" and r.get("hazard") in AILUMINATE_SKIP)]
    texts = [t.strip() for t in texts if t and t.strip()]
    if name == "aart":  # 3,241 commands from a few templates: every fifth keeps all 70 crime types
        texts = texts[::5]
    return texts, [""] * len(texts), [label] * len(texts)


def load_sets(shared: Path, prompt_sets: bool = False) -> dict[str, dict]:
    """{name: {role, texts, texts2, labels}} with `split` sets cut into name/train and name/test."""
    out = {}
    specs = [(name, rel, preset, role) for name, (rel, preset, role) in SETS.items()]
    specs += [(name, "", "prompts", role) for name, (_, _, _, role) in PROMPT_SETS.items()
              if prompt_sets or role == "test"]
    for name, rel, preset, role in specs:
        if preset == "prompts":
            t1, t2, y = _prompt_set(shared, name)
        else:
            t1, t2, y = labelled.load(shared / rel, labelled.spec_for(preset))
        if preset == "alpaca":
            t1 = _alpaca_prompts(shared / rel)
        if role != "split":
            out[name] = {"role": role, "texts": t1, "texts2": t2, "labels": y}
            continue
        test = [hash_fraction(a) < TEST_FRACTION for a in t1]
        for part, keep in (("train", lambda i: not test[i]), ("test", lambda i: test[i])):
            idx = [i for i in range(len(y)) if keep(i)]
            out[f"{name}/{part}"] = {"role": part, "texts": [t1[i] for i in idx], "texts2": [t2[i] for i in idx],
                                     "labels": [y[i] for i in idx]}
    return out


def training_rows(sets: dict, only: tuple = ()) -> tuple[dict, dict]:
    """(fit rows, validation rows): training sets' rows split by a hash of the row."""
    fit = {"texts": [], "texts2": [], "labels": [], "sources": [], "tasks": []}
    val = {"texts": [], "texts2": [], "labels": [], "sources": [], "tasks": []}
    for name, s in sets.items():
        base = name.split("/")[0]
        if s["role"] != "train" or (only and base not in only):
            continue
        for a, b, y in zip(s["texts"], s["texts2"], s["labels"]):
            dst = val if hash_fraction(a + "\x00" + b + "\x01val") < VALIDATION_FRACTION else fit
            dst["texts"].append(a)
            dst["texts2"].append(b)
            dst["labels"].append(y)
            dst["sources"].append(base)
            dst["tasks"].append(det.task_of(b, TASKS[base]))
    return fit, val


def benign_cut(scores, max_flagged: float) -> float:
    """The lowest threshold (flag when score >= it) that flags at most `max_flagged` of these benign rows."""
    ranked = np.sort(np.asarray(scores, dtype=float))[::-1]
    allowed = int(np.floor(max_flagged * len(ranked)))
    return float(np.nextafter(ranked[allowed], np.inf)) if allowed < len(ranked) else 0.0


class Reference:
    """Issue 5's baseline: TF-IDF + logistic regression, prompt and reply joined, threshold 0.5."""

    threshold = 0.5

    def __init__(self, fit_rows: dict, seed: int):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        x = self.vec.fit_transform(self._join(fit_rows["texts"], fit_rows["texts2"]))
        self.clf = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, random_state=seed)
        self.clf.fit(x, fit_rows["labels"])

    @staticmethod
    def _join(a, b):
        return [x + ("\n" + y if y else "") for x, y in zip(a, b)]

    def score(self, texts, texts2=None):
        texts2 = texts2 if texts2 is not None else [""] * len(texts)
        return self.clf.predict_proba(self.vec.transform(self._join(texts, texts2)))[:, 1]


class EmbeddingCache(dict):
    """text -> embedding, stored on disk keyed by the text's sha1 (npz, no pickle)."""

    def __init__(self, path: Path | None):
        super().__init__()
        self.path = path
        self.stored: dict[str, np.ndarray] = {}
        if path and path.is_file():
            z = np.load(path, allow_pickle=False)
            self.stored = dict(zip(z["keys"].tolist(), z["vecs"]))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def __contains__(self, text) -> bool:
        return dict.__contains__(self, text) or self.key(text) in self.stored

    def __getitem__(self, text):
        return dict.__getitem__(self, text) if dict.__contains__(self, text) else self.stored[self.key(text)]

    def save(self) -> None:
        if not self.path or not dict.__len__(self):
            return
        self.stored.update({self.key(t): v for t, v in self.items()})
        self.clear()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.stored)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(keys), vecs=np.stack([self.stored[k] for k in keys]))
        tmp.replace(self.path)


def evaluate(model, sets: dict, benign_flag, keep: dict | None = None) -> dict:
    """Each test set's metrics and each benign set's flagged share; with `keep`, every set's
    per-row flags go there too ({set: bool array}), for paired_bootstrap."""
    out = {}
    for name, s in sets.items():
        if s["role"] in ("test", "benign"):
            t2 = s["texts2"] if any(s["texts2"]) else None
            if s["role"] == "benign":
                flagged = np.asarray(benign_flag(model, s["texts"], s["texts2"]), dtype=bool)
                out[name] = {"n": len(s["texts"]), "flagged_fraction": round(float(np.mean(flagged)), 4)}
                if keep is not None:
                    keep[name] = flagged
                continue
            if isinstance(model, det.TaskEnsemble):  # its threshold for this set's task
                task = det.task_of("", TASKS[name.split("/")[0]])
                scores = model.score(s["texts"], t2, task=task)
            else:
                scores = model.score(s["texts"], t2)
            # the offensive-language member, where the candidate has one (`--offensive`)
            scores = det.with_offensive(model, scores, s["texts"], t2)
            out[name] = det.metrics(scores, s["labels"], model.threshold)
            if keep is not None:
                keep[name] = np.asarray(scores) >= model.threshold
    return out


def paired_bootstrap(labels, pred_a, pred_b, n: int = 1000, seed: int = 0) -> dict:
    """F1(a) - F1(b) on the same rows, with a 95 % interval from `n` paired resamples of the rows
    (all labels 0, a benign set: the difference in flagged share instead). `clearly` is true when
    the interval lies wholly above 0 (a better F1; for a benign set, below 0: fewer flags)."""
    y = np.asarray(labels, dtype=bool)
    a, b = np.asarray(pred_a, dtype=bool), np.asarray(pred_b, dtype=bool)
    if not (len(y) == len(a) == len(b)) or not len(y):
        raise ValueError(f"paired_bootstrap needs equal, non-empty rows; got {len(y)}, {len(a)}, {len(b)}")
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n, len(y)))
    yy, aa, bb = y[idx], a[idx], b[idx]
    if not y.any():  # benign: lower is better
        diff = aa.mean(axis=1) - bb.mean(axis=1)
        point = float(a.mean() - b.mean())
        lo, hi = np.percentile(diff, [2.5, 97.5])
        return {"flagged_diff": round(point, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
                "clearly": bool(hi < 0)}

    def f1(p, t):  # along the last axis; 0 where nothing is flagged or positive (then tp is 0 too)
        tp = (p & t).sum(axis=-1)
        return 2 * tp / np.maximum(p.sum(axis=-1) + t.sum(axis=-1), 1)  # 2tp / (2tp + fp + fn)

    diff = f1(aa, yy) - f1(bb, yy)
    point = float(f1(a, y) - f1(b, y))
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return {"f1_diff": round(point, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)], "clearly": bool(lo > 0)}


def pair_flag(model, prompts, replies):
    """A benign answered instruction is flagged when the detector calls the exchange unsafe."""
    return det.with_offensive(model, model.score(prompts, replies), prompts, replies) >= model.threshold


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default="reports/detector/shared.json")
    ap.add_argument("--candidates", default="reference,ensemble,tfidf-ensemble")
    ap.add_argument("--target-precision", type=float, default=0.75,
                    help="thresholds: highest recall at this precision on the validation slice; 0 = best F1")
    ap.add_argument("--C", type=float, default=4.0)
    ap.add_argument("--embedding-model", default="")
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--cache", default="", help="file to memoise embeddings in (npz, no pickle)")
    ap.add_argument("--source-weight-power", type=float, default=0.5,
                    help="tfidf-ensemble: rows weighted (mean source size / source size) ** this; 0 = unweighted")
    ap.add_argument("--exchange-head", action=argparse.BooleanOptionalAction, default=True,
                    help="tfidf-ensemble: score exchanges with members trained on exchange rows only")
    ap.add_argument("--prompt-sets", action=argparse.BooleanOptionalAction, default=False,
                    help="also train on harmful and harmless requests without answers (PROMPT_SETS); measured "
                         "in docs/filter.md: better on Aegis and CoCoNot, worse on ToxicChat and comments")
    ap.add_argument("--offensive", action=argparse.BooleanOptionalAction, default=False,
                    help="also score every candidate but the reference with the offensive-language member "
                         "(alt-profanity-check, filter/offensive.py) folded in, as the detector stage does by "
                         "default: `NAME+offensive` beside `NAME`")
    ap.add_argument("--bootstrap", type=int, default=1000,
                    help="paired-bootstrap resamples for each candidate's difference to `reference` (0 = none)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)

    shared = Path(args.shared)
    if not shared.is_dir():
        raise SystemExit(f"{shared}: no shared data folder; pass --shared DIR")
    sets = load_sets(shared, args.prompt_sets)
    fit_rows, val_rows = training_rows(sets)
    print(f"measure: {len(fit_rows['labels'])} training rows ({sum(fit_rows['labels'])} unsafe), "
          f"{len(val_rows['labels'])} validation rows", flush=True)
    cache = EmbeddingCache(Path(args.cache) if args.cache else None)
    flags: dict[str, dict] = {}  # candidate -> {set: per-row flags}, for the paired bootstrap
    results = {"train_sets": sorted(n for n, s in sets.items() if s["role"] == "train"),
               "fit_rows": len(fit_rows["labels"]), "validation_rows": len(val_rows["labels"]), "candidates": {}}
    for name in args.candidates.split(","):
        t0 = time.perf_counter()
        if name == "reference":
            model = Reference(training_rows(sets, REFERENCE_SETS)[0], args.seed)
        elif name == "reference-benign1":
            # The same baseline at the operating point issue 5 asks of the filter (<= 1 % of benign
            # answers flagged), cut on validation rows only: the benign training sources' slice.
            model = Reference(training_rows(sets, REFERENCE_SETS)[0], args.seed)
            keep = [i for i, s in enumerate(val_rows["sources"]) if s in BENIGN_TRAIN]
            model.threshold = benign_cut(model.score([val_rows["texts"][i] for i in keep],
                                                     [val_rows["texts2"][i] for i in keep]), 0.01)
        else:
            feats = det.Features(backend=name, embedding_model=args.embedding_model,
                                 max_seq_length=args.max_seq_length)
            fz = det.Featurizer(feats, threads=1)
            fz.cache = cache
            if name in ("tfidf-ensemble", "tfidf-task"):
                model = det.fit_task_ensemble(
                    feats, fit_rows["texts"], fit_rows["texts2"], fit_rows["labels"], C=args.C, seed=args.seed,
                    featurizer=fz, sample_weight=det.source_weights(fit_rows["sources"], args.source_weight_power),
                    exchange_head=args.exchange_head)
                val_scores = model.raw_score(val_rows["texts"], val_rows["texts2"])
                model.thresholds = det.choose_task_thresholds(val_scores, val_rows["labels"], val_rows["tasks"],
                                                              args.target_precision)
            else:
                train_fn = det.fit_ensemble if name == "ensemble" else det.fit
                model = train_fn(feats, fit_rows["texts"], fit_rows["texts2"], fit_rows["labels"], C=args.C,
                                 seed=args.seed, featurizer=fz)
                val_scores = model.score(val_rows["texts"], val_rows["texts2"])
                model.threshold = det.choose_threshold(val_scores, val_rows["labels"], args.target_precision)
            cache.save()
        variants = [(name, None)]
        if args.offensive and name not in ("reference", "reference-benign1"):
            # the same fitted candidate again with the member folded in: side by side, one fit
            from . import offensive

            with tempfile.TemporaryDirectory() as tmp:
                offensive.export(tmp)
                variants.append((name + "+offensive", offensive.load(tmp)))
        for label, member in variants:
            model.offensive = member
            res = evaluate(model, sets, pair_flag, keep=flags.setdefault(label, {}))
            res["threshold"] = round(float(model.threshold), 4)
            if isinstance(model, det.TaskEnsemble):
                res["task_thresholds"] = {k: round(v, 4) for k, v in model.thresholds.items()}
            results["candidates"][label] = res
            print(table({label: res}), flush=True)
        cache.save()
        print(f"measure: {name} done in {time.perf_counter() - t0:.0f}s", flush=True)
    if args.bootstrap and "reference" in flags:
        ref = flags["reference"]
        results["vs_reference"] = {
            "resamples": args.bootstrap,
            **{c: {name: paired_bootstrap(sets[name]["labels"], f[name], ref[name], args.bootstrap, args.seed)
                   for name in f} for c, f in flags.items() if c != "reference"}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(table(results["candidates"]))
    if "vs_reference" in results:
        print(versus_table(results["vs_reference"]))


def table(cands: dict) -> str:
    """A Markdown table: one row per set, P / R (F1) per candidate, flagged share for benign sets."""
    names = list(cands)
    sets = [k for k in next(iter(cands.values())) if k not in ("threshold", "task_thresholds")]
    lines = ["| set | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for s in sets:
        cells = []
        for n in names:
            m = cands[n][s]
            cells.append(f"flags {m['flagged_fraction']:.1%}" if "precision" not in m
                         else f"{m['precision']:.2f} / {m['recall']:.2f} ({m['f1']:.2f})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("| threshold | " + " | ".join(
        " / ".join(f"{k} {v:.3f}" for k, v in cands[n]["task_thresholds"].items()) if "task_thresholds" in cands[n]
        else f"{cands[n]['threshold']:.3f}" for n in names) + " |")
    return "\n".join(lines)


def versus_table(vs: dict) -> str:
    """A Markdown table: each candidate's difference to the reference per set, with its 95 % interval;
    bold where the interval excludes 0 in the candidate's favour."""
    names = [k for k in vs if k != "resamples"]
    sets = list(next(iter(vs[n] for n in names))) if names else []
    lines = ["| set (vs reference) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for s in sets:
        cells = []
        for n in names:
            d = vs[n][s]
            key, fmt = ("f1_diff", "{:+.2f}") if "f1_diff" in d else ("flagged_diff", "{:+.1%}")
            cell = f"{fmt.format(d[key])} [{fmt.format(d['ci95'][0])}, {fmt.format(d['ci95'][1])}]"
            cells.append(f"**{cell}**" if d["clearly"] else cell)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
