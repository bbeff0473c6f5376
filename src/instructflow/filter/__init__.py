"""Stage filter: harmful, toxic, PII-bearing, duplicate and eval-overlapping examples out.

Reads `params.yaml: filter` (+ seed), the trained detector (models/detector/) and
data/formatted/. Writes:
    data/filtered/sft.jsonl      SFT examples kept (PII redacted when pii_action is redact)
    data/filtered/pairs.jsonl    preference pairs kept, plus harmful compliance turned into
                                 pairs (chosen = a refusal from params, rejected = the compliance)
    data/filtered/prompts.jsonl  prompt-only training prompts kept after decontamination and dedup
    data/filtered/removed.jsonl  every removed example with its reasons and detector scores
    reports/filter/summary.json  counts by reason and source (a DVC metric)

Every assistant turn is judged, not only the last, with its prompt (the user
turn before it): the detector scores the prompt alone (harmful request), the
exchange (harmful compliance, unsafe reply) and the reply alone (toxic or
hateful text); the detector's offensive-language member, where it has one,
scores the reply too (offensive language is `toxic`). A turn whose exchange is
unsafe after a harmful prompt is harmful compliance; an unsafe exchange or
reply otherwise is `toxic`. A harmful request answered safely (a refusal) is
kept: that is what SFT should teach.

Guards run before any conversion, so a converted pair passes the same checks as
everything else: `eval_overlap` (n-gram overlap with any evaluation prompt, incl.
params' extra suites, or a near duplicate of an evaluation item) and
`duplicate` (exact or MinHash near duplicate of an earlier example). Modules:
detector (trained classifier), pii, dedup, decontam, keywords (legacy, off by
default), audit (CLI), measure (side-by-side measurement on public sets).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from .. import config, lineage
from ..records import (Workers, atomic_open, dumps, line_chunks, loads, read_chunk, read_jsonl, workers_for,
                       write_json)
from . import decontam, dedup, pii
from . import detector as detmod
from .keywords import Keywords

REASONS = ("eval_overlap", "duplicate", "harmful_compliance", "toxic", "pii", "keywords")


# --------------------------------------------------------------------------- judging turns
def exchanges(messages: list[dict]) -> list[tuple[int, str, str]]:
    """(index, prompt, reply) for every assistant turn: the reply and the last user turn before it."""
    out, prompt = [], ""
    for j, m in enumerate(messages):
        if m.get("role") == "user":
            prompt = m.get("content", "")
        elif m.get("role") == "assistant":
            out.append((j, prompt, m.get("content", "")))
    return out


class Judge:
    """Detector scores for batches of (prompt, reply) exchanges, unique texts scored once."""

    def __init__(self, det, threshold: float = 0.0, reply_alone: bool = True, keywords: Keywords | None = None):
        self.det = det
        self.threshold = threshold or det.threshold
        self.reply_alone = reply_alone
        self.keywords = keywords

    def score(self, prompts: list[str], replies: list[str]) -> list[dict]:
        """Per exchange: {prompt, exchange, reply} P(unsafe) (reply only with reply_alone), and the
        reply's P(offensive) where the detector has the offensive-language member.

        Every distinct text is featurised once (see Detector.block_decisions)."""
        rows = self._score(prompts, replies)
        member = getattr(self.det, "offensive", None)
        if member is not None and rows:
            uniq = sorted(set(replies))
            table = dict(zip(uniq, zip(*member.scores(uniq))))
            for row, reply in zip(rows, replies):
                p, judged = table[reply]
                if judged:  # too few words: the member does not judge it (offensive.py)
                    row["offensive"] = round(float(p), 4)
        return rows

    def _score(self, prompts: list[str], replies: list[str]) -> list[dict]:
        import numpy as np

        if not hasattr(self.det, "block_decisions"):
            return self._score_generic(prompts, replies)
        uniq = sorted(set(prompts) | set(replies))
        d1, d2 = self.det.block_decisions(uniq)
        pos = {t: k for k, t in enumerate(uniq)}
        ip = np.fromiter((pos[t] for t in prompts), dtype=np.int64, count=len(prompts))
        ir = np.fromiter((pos[t] for t in replies), dtype=np.int64, count=len(replies))
        b = self.det.intercept

        def sig(z):
            return 1.0 / (1.0 + np.exp(-z))

        p, x = sig(d1[ip] + b), sig(d1[ip] + d2[ir] + b)
        r = sig(d1[ir] + b) if self.reply_alone else np.zeros(len(replies))
        return self._rows(p, x, r)

    def _score_generic(self, prompts: list[str], replies: list[str]) -> list[dict]:
        """Any detector (e.g. an ensemble): distinct prompts, exchanges and replies scored once,
        embeddings memoised across the three calls."""
        import numpy as np

        fz = self.det.featurizer
        fz.cache = {}
        try:
            def by_unique(keys, fn):
                uniq = sorted(set(keys))
                table = dict(zip(uniq, (float(v) for v in fn(uniq)))) if uniq else {}
                return np.array([table[k] for k in keys])

            p = by_unique(prompts, lambda u: self.det.score(u))
            x = by_unique(list(zip(prompts, replies)),
                          lambda u: self.det.score([a for a, _ in u], [c for _, c in u]))
            r = by_unique(replies, lambda u: self.det.score(u)) if self.reply_alone else np.zeros(len(replies))
        finally:
            fz.cache = None
        return self._rows(p, x, r)

    def _rows(self, p, x, r) -> list[dict]:
        return [{"prompt": round(float(a), 4), "exchange": round(float(c), 4),
                 **({"reply": round(float(e), 4)} if self.reply_alone else {})} for a, c, e in zip(p, x, r)]

    def reason(self, s: dict, prompt: str = "", reply: str = "") -> str | None:
        """harmful_compliance, toxic, keywords or None for one scored exchange."""
        t = self.threshold
        if s["exchange"] >= t and s["prompt"] >= t:
            return "harmful_compliance"
        if s["exchange"] >= t or s.get("reply", 0.0) >= t:
            return "toxic"
        if "offensive" in s and s["offensive"] >= self.det.offensive.threshold:
            return "toxic"  # offensive language, by the member trained on real comments
        if self.keywords is not None:
            kw = self.keywords.reason(prompt, reply)
            if kw:
                return kw
        return None

    def flags(self, prompts: list[str], replies: list[str]) -> list[str | None]:
        """The reason each exchange would be removed or converted (None = kept)."""
        return [self.reason(s, a, b) for s, a, b in zip(self.score(prompts, replies), prompts, replies)]


def pick_refusal(refusals: list[str], prompt: str) -> str:
    """A refusal chosen by a hash of the prompt: deterministic, and varied across prompts."""
    h = int(hashlib.sha256(dedup.normalize(prompt).encode()).hexdigest()[:8], 16)
    return refusals[h % len(refusals)]


def text_of(messages: list[dict]) -> str:
    """The user and assistant turns of a conversation, for dedup and overlap checks."""
    return "\n".join(m.get("content", "") for m in messages if m.get("role") in ("user", "assistant"))


def redact_messages(messages: list[dict], types: tuple[str, ...], names: pii.Names | None = None
                    ) -> tuple[list[dict], Counter]:
    found: Counter = Counter()
    out = []
    contents = [m.get("content", "") for m in messages]
    # NER reads every turn (a name needs no cue); the patterns only those the pre-check lets through
    extra = names.persons(contents) if names is not None and "person" in types else [[] for _ in messages]
    for m, content, ner in zip(messages, contents, extra):
        spans = pii.detect(content, types, ner) if ner or pii.may_contain(content) else []
        found.update(s.type for s in spans)
        out.append({**m, "content": pii.redact(m["content"], spans)} if spans else m)
    return out, found


# --------------------------------------------------------------------------- batch work
# What a batch needs that does not depend on earlier batches (detector scores, normalised text,
# overlap with evaluation prompts, dedup signatures, PII redaction, the kept row's JSON line) is
# computed by `batch_*` in worker processes; duplicates and outputs are then decided in file
# order by the main process, so the outputs do not depend on the number of workers.
_STATE: dict = {}  # judge, index, cfg, pii_types, signature params: set in main before the workers fork


def _signatures(norms: list[str]):
    s = _STATE["sig"]
    return dedup.signatures(norms, s["shingle"], s["num_perm"], s["num_bands"], s["seed"], s["near"])


def _read(task: tuple[str, int, int]) -> tuple[list[dict], list[int]]:
    """A batch's rows and each row's byte offset in the file (to read a row again when it is removed)."""
    path, offset, count = task
    rows, offsets = [], []
    for line in read_chunk(path, offset, count):
        offsets.append(offset)
        offset += len(line)
        rows.append(loads(line))
    return rows, offsets


def _overlaps(texts: list[str], prompts: list[str], norms: list[str]) -> list[dict]:
    return [{"eval": hit[0], "share": hit[1]} if hit else None
            for hit in _STATE["index"].match_many(texts, prompts, norms)]


def batch_seeds(task: tuple[str, int, int]):
    """Dedup signatures of a slice of the texts a dedup index starts from (`seeds`: evaluation items)."""
    which, start, end = task
    return _signatures([dedup.normalize(t) for t in _STATE["seeds"][which][start:end]])


def batch_sft(task) -> dict:
    judge, cfg, pii_types = _STATE["judge"], _STATE["cfg"], _STATE["pii_types"]
    batch, offsets = _read(task)
    turns = [exchanges(ex["messages"]) for ex in batch]
    flat = [(i, j, p, r) for i, ts in enumerate(turns) for j, p, r in ts]
    scores = judge.score([p for _, _, p, _ in flat], [r for _, _, _, r in flat])
    judged: list[list] = [[] for _ in batch]
    for (i, j, p, r), s in zip(flat, scores):
        judged[i].append((j, s, judge.reason(s, p, r)))
    texts = [text_of(ex["messages"]) for ex in batch]
    norms = [dedup.normalize(t) for t in texts]
    kept, pii_hits = [], []
    for ex, js in zip(batch, judged):
        hits = Counter()
        if not any(why for _, _, why in js) and pii_types and cfg.pii_action != "keep":
            msgs, hits = redact_messages(ex["messages"], pii_types, _STATE.get("names"))
            kept.append(dumps({**ex, "messages": msgs} if hits else ex) + "\n")
        else:
            kept.append(dumps(ex) + "\n")
        pii_hits.append(dict(hits))
    return {"offsets": offsets, "ids": [ex["id"] for ex in batch], "sources": [ex.get("source", "") for ex in batch],
            "judged": judged, "overlap": _overlaps(texts, [ts[-1][1] if ts else "" for ts in turns], norms),
            "sig": _signatures(norms), "kept": kept, "pii": pii_hits,
            "harmful_request": [any(s["prompt"] >= judge.threshold for _, s, _ in js) for js in judged]}


def batch_pairs(task) -> dict:
    judge, cfg, pii_types = _STATE["judge"], _STATE["cfg"], _STATE["pii_types"]
    batch, offsets = _read(task)
    prompts = [exchanges(p["prompt"] + [{"role": "assistant", "content": ""}])[-1][1] for p in batch]
    chosen = [p["chosen"][-1]["content"] for p in batch]
    scores = judge.score(prompts, chosen)
    whys = [judge.reason(s, prompt, reply) for s, prompt, reply in zip(scores, prompts, chosen)]
    texts = [text_of(p["prompt"] + p["chosen"] + p["rejected"]) for p in batch]
    norms = [dedup.normalize(t) for t in texts]
    kept, pii_hits = [], []
    for pair in batch:
        hits = Counter()
        if cfg.pii_action != "keep":
            turns, hits = redact_messages(pair["prompt"] + pair["chosen"] + pair["rejected"], pii_types,
                                          _STATE.get("names"))
            if hits and cfg.pii_action != "remove":
                n, c = len(pair["prompt"]), len(pair["chosen"])
                pair = {**pair, "prompt": turns[:n], "chosen": turns[n:n + c], "rejected": turns[n + c:]}
        kept.append(dumps(pair) + "\n")
        pii_hits.append(dict(hits))
    return {"offsets": offsets, "ids": [p["id"] for p in batch], "sources": [p.get("source", "") for p in batch],
            "scores": scores, "whys": whys, "overlap": _overlaps(texts, prompts, norms), "sig": _signatures(norms),
            "kept": kept, "pii": pii_hits}


def batch_prompts(task) -> dict:
    cfg, pii_types = _STATE["cfg"], _STATE["pii_types"]
    batch, offsets = _read(task)
    texts = [text_of(p["prompt"]) for p in batch]
    norms = [dedup.normalize(t) for t in texts]
    prompts = [exchanges(p["prompt"] + [{"role": "assistant"}])[-1][1] for p in batch]
    kept, pii_hits = [], []
    for p in batch:
        hits = Counter()
        if cfg.pii_action != "keep":
            turns, hits = redact_messages(p["prompt"], pii_types, _STATE.get("names"))
            if hits and cfg.pii_action != "remove":
                p = {**p, "prompt": turns}
        kept.append(dumps(p) + "\n")
        pii_hits.append(dict(hits))
    return {"offsets": offsets, "ids": [p["id"] for p in batch], "sources": [p.get("source", "") for p in batch],
            "overlap": _overlaps(texts, prompts, norms), "sig": _signatures(norms), "kept": kept, "pii": pii_hits}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--formatted", default="data/formatted")
    ap.add_argument("--detector", default="models/detector")
    ap.add_argument("--out", default="data/filtered")
    ap.add_argument("--report", default="reports/filter")
    args = ap.parse_args(argv)
    cfg, seed = config.load("filter", args.params)
    src, out = Path(args.formatted), Path(args.out)
    started = time.perf_counter()
    det = detmod.load(args.detector, threads=cfg.threads)
    kw = (Keywords(cfg.harmful_terms, cfg.compliance_markers, cfg.toxic_terms, cfg.refusal_markers)
          if cfg.keywords else None)
    judge = Judge(det, cfg.threshold, cfg.score_reply_alone, kw)
    pii_types = tuple(cfg.pii_types)
    names = pii.Names(cfg.pii_ner_model) if cfg.pii_ner and "person" in pii_types and cfg.pii_action != "keep" else None

    # ---- evaluation prompts: guarded, never filtered
    evals = list(read_jsonl(src / "eval.jsonl"))
    eval_prompts = {f"eval:{e['id']}": text_of(e["prompt"]) for e in evals}
    eval_prompts.update(decontam.suite_prompts(config.read_params(args.params)))
    index = decontam.Index(eval_prompts, cfg.decontam_ngram, cfg.decontam_threshold)

    # What the dedup indexes start from: evaluation items (prompt + reference) for SFT rows and pairs,
    # evaluation prompts for training prompts, so no training copy of one is kept.
    eval_items = {f"eval:{e['id']}": text_of(e["prompt"]) + "\n" + str(e.get("reference") or "") for e in evals}
    n_evals = len(evals)
    del evals
    # The workers fork now, before this process first runs rensa (its thread pool would not survive a fork).
    _STATE.update(judge=judge, index=index, cfg=cfg, pii_types=pii_types, names=names,
                  sig={"shingle": cfg.dedup_shingle, "num_perm": cfg.dedup_num_perm, "num_bands": cfg.dedup_num_bands,
                       "seed": seed, "near": cfg.near_dedup},
                  seeds={"items": list(eval_items.values()), "prompts": list(eval_prompts.values())})
    files = contextlib.ExitStack()
    pool = files.enter_context(Workers(workers_for(cfg.workers), batch_sft, batch_pairs, batch_prompts, batch_seeds))

    def seed_signatures(which: str):
        """The seeds' signatures, computed by the workers (77k evaluation items at 1M records: 13 s here)."""
        import numpy as np

        n, step = len(_STATE["seeds"][which]), cfg.batch_size
        parts = list(pool.map(batch_seeds, [(which, s, min(s + step, n)) for s in range(0, n, step)]))
        exact = [key for part in parts for key in part[0]]
        if not cfg.near_dedup or not exact:
            return exact, None, None
        return exact, np.concatenate([part[1] for part in parts]), np.concatenate([part[2] for part in parts])

    def new_deduper(keys: list[str], signed) -> dedup.Deduper:
        d = dedup.Deduper(cfg.dedup_threshold, cfg.dedup_num_perm, cfg.dedup_num_bands, cfg.dedup_shingle, seed,
                          cfg.near_dedup)
        d.check_signed(keys, *signed)
        return d

    item_signatures = seed_signatures("items")  # one computation for both indexes that start from them
    sft_dups, pair_dups = new_deduper(list(eval_items), item_signatures), new_deduper(list(eval_items), item_signatures)
    prompt_dups = new_deduper(list(eval_prompts), seed_signatures("prompts"))
    del item_signatures, eval_items, eval_prompts, _STATE["seeds"]  # the indexes have them; the workers their own copy

    def guard(res: dict, i: int, dups: dedup.Deduper, clean: bool = True) -> dict:
        """eval_overlap / duplicate findings of row i of a batch ({} = clean). Only `clean` rows (no other
        reason to drop them) enter the dedup index, so a kept copy is never a duplicate of a removed one."""
        found = {}
        if res["overlap"][i]:
            found["eval_overlap"] = res["overlap"][i]
        if clean:
            exact, digests, bands = res["sig"]
            d = dups.check_signed([res["ids"][i]], exact, digests, bands, rows=[i])[0]
            if d is not None:
                if d[1].startswith(("eval:", "suite:")):
                    found.setdefault("eval_overlap", {"eval": d[1], "duplicate": d[0]})
                else:
                    found["duplicate"] = {"of": d[1], "kind": d[0]}
        return found

    def batches(path: Path, fn):
        tasks = [(str(path), offset, n) for offset, n in line_chunks(path, cfg.batch_size)] if path.is_file() else []
        return pool.map(fn, tasks)

    def reread(fh, offset: int) -> dict:
        fh.seek(offset)
        return loads(fh.readline())

    # Outputs are streamed (memory stays bounded at any corpus size), each to a temporary
    # file renamed into place only when the stage succeeds.
    sinks = {name: files.enter_context(atomic_open(out / f"{name}.jsonl"))
             for name in ("sft", "pairs", "prompts", "removed")}
    written: Counter = Counter()
    converted, pii_found, harmful_requests_kept = 0, Counter(), 0
    flagged_turns, removed_by_reason = Counter(), Counter()
    by_source: dict[str, Counter] = defaultdict(Counter)

    def emit(name: str, row: dict) -> None:
        sinks[name].write(dumps(row) + "\n")
        written[name] += 1

    def emit_line(name: str, line: str) -> None:
        sinks[name].write(line)
        written[name] += 1

    def remove(row: dict, origin: str, reasons: list[str], detail: dict) -> None:
        removed_by_reason[reasons[0]] += 1
        by_source[row.get("source", "")][reasons[0]] += 1
        emit("removed", {**row, "filter_reason": reasons[0], "filter_reasons": reasons, "filtered_from": origin,
                         "filter": detail})

    try:
        # ---- SFT examples: every assistant turn judged
        with open(src / "sft.jsonl", "rb") as again:
            for res in batches(src / "sft.jsonl", batch_sft):
                for i, judged in enumerate(res["judged"]):
                    harm = [(j, why) for j, _, why in judged if why]
                    found = guard(res, i, sft_dups, clean=not harm)
                    flagged_turns.update(why for _, why in harm)
                    reasons = [k for k in ("eval_overlap", "duplicate") if k in found]
                    reasons += sorted({why for _, why in harm}, key=REASONS.index)
                    pii_hits = Counter(res["pii"][i])
                    if not reasons and pii_hits and cfg.pii_action == "remove":
                        reasons.append("pii")
                    if not reasons:
                        pii_found.update(pii_hits)
                        harmful_requests_kept += res["harmful_request"][i]
                        emit_line("sft", res["kept"][i])
                        continue
                    ex = reread(again, res["offsets"][i])
                    detail = {**found, "scores": {str(j): s for j, s, _ in judged}}
                    if reasons == ["pii"]:
                        detail["pii"] = dict(sorted(pii_hits.items()))
                    first_compliance = next((j for j, why in harm if why == "harmful_compliance"), None)
                    if reasons == ["harmful_compliance"] and cfg.convert_compliance and first_compliance is not None:
                        # The guards passed: the compliance becomes the rejected side of a safety pair.
                        prompt_turns, _ = redact_messages(ex["messages"][:first_compliance], pii_types)
                        rejected = ex["messages"][first_compliance]
                        refusal = pick_refusal(cfg.refusals,
                                               exchanges(ex["messages"][:first_compliance + 1])[-1][1])
                        pair = {**{k: ex[k] for k in ("id", "source", "locator") if k in ex},
                                "labels": ex.get("labels") or {},
                                "prompt": prompt_turns, "chosen": [{"role": "assistant", "content": refusal}],
                                "rejected": [{"role": "assistant", "content": rejected["content"]}],
                                "converted_from": "sft", "filter": detail}
                        dup = pair_dups.check([pair["id"]], [text_of(pair["prompt"] + pair["rejected"])])[0]
                        if dup is None:
                            emit("pairs", pair)
                            converted += 1
                            continue
                        reasons = ["duplicate", "harmful_compliance"]
                        detail["duplicate"] = {"of": dup[1], "kind": dup[0]}
                    remove(ex, "sft", reasons, detail)

        # ---- preference pairs: the chosen reply must be safe; rejected may be anything
        with open(src / "pairs.jsonl", "rb") as again:
            for res in batches(src / "pairs.jsonl", batch_pairs):
                for i, (s, why) in enumerate(zip(res["scores"], res["whys"])):
                    f = guard(res, i, pair_dups, clean=why is None)
                    reasons = [k for k in ("eval_overlap", "duplicate") if k in f] + ([why] if why else [])
                    hits = Counter(res["pii"][i])
                    if not reasons and hits and cfg.pii_action == "remove":
                        reasons.append("pii")
                    elif not reasons and hits:
                        pii_found.update(hits)
                    if not reasons:
                        emit_line("pairs", res["kept"][i])
                        continue
                    detail = {**f, "scores": {"chosen": s}}
                    if reasons == ["pii"]:
                        detail["pii"] = dict(sorted(hits.items()))
                    remove(reread(again, res["offsets"][i]), "pairs", reasons, detail)

        # ---- prompt-only training prompts: decontamination and dedup (harmful ones are the point)
        prompts_file = src / "prompts.jsonl"
        with contextlib.ExitStack() as stack:
            again = stack.enter_context(open(prompts_file, "rb")) if prompts_file.is_file() else None
            for res in batches(prompts_file, batch_prompts):
                for i in range(len(res["ids"])):
                    f = guard(res, i, prompt_dups)
                    reasons = [k for k in ("eval_overlap", "duplicate") if k in f]
                    hits = Counter(res["pii"][i])
                    if not reasons and hits and cfg.pii_action == "remove":
                        reasons.append("pii")
                        f["pii"] = dict(sorted(hits.items()))
                    elif not reasons and hits:
                        pii_found.update(hits)
                    if reasons:
                        remove(reread(again, res["offsets"][i]), "prompts", reasons, f)
                    else:
                        emit_line("prompts", res["kept"][i])

    except BaseException:
        files.__exit__(*sys.exc_info())  # temporary files removed, no output renamed into place
        raise
    files.close()
    summary = {
        "kept_sft": written["sft"], "kept_pairs": written["pairs"], "kept_prompts": written["prompts"],
        "eval": n_evals, "eval_prompts_guarded": len(index), "converted_to_pairs": converted,
        "removed": written["removed"],
        "removed_by_reason": dict(sorted(removed_by_reason.items())),
        "removed_by_source": {s: dict(sorted(c.items())) for s, c in sorted(by_source.items())},
        "flagged_turns": dict(sorted(flagged_turns.items())),
        "harmful_requests_kept": harmful_requests_kept,
        f"pii_{'redacted' if cfg.pii_action == 'redact' else 'found'}": dict(sorted(pii_found.items())),
        **({"pii_ner": names.version} if names is not None else {}),
        "detector": {"threshold": judge.threshold, "backend": det.features.backend},
        "lineage": lineage.stamp("filter", [src, Path(args.detector)], cfg, seed),
    }
    write_json(Path(args.report) / "summary.json", summary)
    n_in = sum(written.values())
    took = time.perf_counter() - started
    print(f"filter: kept {written['sft']} SFT + {written['pairs']} pairs ({converted} converted from harmful "
          f"compliance) + {written['prompts']} prompts, {n_evals} eval; removed {summary['removed_by_reason']}; "
          f"{n_in} examples in {took:.1f}s ({n_in / max(took, 1e-9):.0f}/s)")
