"""Stage filter: remove harmful, toxic, duplicate and eval-overlapping training examples.

Reads `params.yaml: filter` (+ seed). Writes:
    data/filtered/sft.jsonl      SFT examples kept for training
    data/filtered/pairs.jsonl    preference pairs kept, plus harmful compliance turned
                                 into pairs (chosen = refusal, rejected = the compliance)
    data/filtered/removed.jsonl  every removed example with its `filter_reason`
    reports/filter/summary.json  counts by reason (a DVC metric)

Reasons, first match wins: harmful_compliance (converted, not lost), toxic,
eval_overlap, duplicate. Matching is by whole words, case-insensitive. The
evaluation prompts (data/formatted/eval.jsonl) are read only to guard them: no
training example may repeat one.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from . import config, lineage
from .records import normalize_text, prompt_of, read_jsonl, write_json, write_jsonl


def _words_pattern(terms: list[str]) -> re.Pattern | None:
    if not terms:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(t.lower()) for t in terms) + r")\b")


class Judge:
    """The filter's lexical rules, built once from params."""

    def __init__(self, cfg: config.FilterConfig):
        self.cfg = cfg
        self.harmful = _words_pattern(cfg.harmful_terms)
        self.toxic = _words_pattern(cfg.toxic_terms)

    def is_harmful_request(self, prompt: str) -> bool:
        return bool(self.harmful and self.harmful.search(prompt.lower()))

    def is_refusal(self, reply: str) -> bool:
        low = reply.lower()
        return any(m.lower() in low for m in self.cfg.refusal_markers)

    def is_compliance(self, reply: str) -> bool:
        low = reply.lower()
        return any(m.lower() in low for m in self.cfg.compliance_markers)

    def is_toxic(self, text: str) -> bool:
        return bool(self.toxic and self.toxic.search(text.lower()))

    def sft_reason(self, prompt: str, reply: str) -> str | None:
        if self.is_harmful_request(prompt) and self.is_compliance(reply) and not self.is_refusal(reply):
            return "harmful_compliance"
        if self.is_toxic(reply):
            return "toxic"
        return None

    def pair_reason(self, prompt: str, chosen: str) -> str | None:
        if self.is_toxic(chosen):
            return "toxic"
        if self.is_harmful_request(prompt) and self.is_compliance(chosen) and not self.is_refusal(chosen):
            return "harmful_compliance"
        return None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--formatted", default="data/formatted")
    ap.add_argument("--out", default="data/filtered")
    ap.add_argument("--report", default="reports/filter")
    args = ap.parse_args(argv)
    cfg, seed = config.load("filter", args.params)
    src, out = Path(args.formatted), Path(args.out)
    judge = Judge(cfg)

    evals = list(read_jsonl(src / "eval.jsonl"))
    eval_prompts = {normalize_text(prompt_of(e["prompt"])) for e in evals}

    # ---- SFT examples
    kept_sft, kept_pairs, removed, converted = [], [], [], 0
    seen_sft: set[str] = set()
    for ex in read_jsonl(src / "sft.jsonl"):
        prompt, reply = prompt_of(ex["messages"]), ex["messages"][-1]["content"]
        reason = judge.sft_reason(prompt, reply)
        if reason == "harmful_compliance":
            # Not thrown away: the compliance is exactly what safety training should push down.
            kept_pairs.append({**{k: ex[k] for k in ("id", "source", "locator", "labels")},
                               "prompt": ex["messages"][:-1],
                               "chosen": [{"role": "assistant", "content": cfg.refusal_text}],
                               "rejected": [ex["messages"][-1]], "converted_from": "sft"})
            converted += 1
            continue
        key = normalize_text(prompt) + "\x00" + normalize_text(reply)
        if reason is None and normalize_text(prompt) in eval_prompts:
            reason = "eval_overlap"
        if reason is None and key in seen_sft:
            reason = "duplicate"
        if reason:
            removed.append({**ex, "filter_reason": reason, "filtered_from": "sft"})
            continue
        seen_sft.add(key)
        kept_sft.append(ex)

    # ---- preference pairs
    seen_pairs: set[str] = set()
    for pair in read_jsonl(src / "pairs.jsonl"):
        prompt, chosen = prompt_of(pair["prompt"]), pair["chosen"][-1]["content"]
        key = "\x00".join(normalize_text(t) for t in (prompt, chosen, pair["rejected"][-1]["content"]))
        reason = judge.pair_reason(prompt, chosen)
        if reason is None and normalize_text(prompt) in eval_prompts:
            reason = "eval_overlap"
        if reason is None and key in seen_pairs:
            reason = "duplicate"
        if reason:
            removed.append({**pair, "filter_reason": reason, "filtered_from": "pairs"})
            continue
        seen_pairs.add(key)
        kept_pairs.append(pair)

    write_jsonl(out / "sft.jsonl", kept_sft)
    write_jsonl(out / "pairs.jsonl", kept_pairs)
    write_jsonl(out / "removed.jsonl", removed)
    summary = {
        "kept_sft": len(kept_sft), "kept_pairs": len(kept_pairs), "eval": len(evals),
        "converted_to_pairs": converted, "removed": len(removed),
        "removed_by_reason": dict(sorted(Counter(r["filter_reason"] for r in removed).items())),
        "lineage": lineage.stamp("filter", [src], cfg, seed),
    }
    write_json(Path(args.report) / "summary.json", summary)
    print(f"filter: kept {len(kept_sft)} SFT + {len(kept_pairs)} pairs ({converted} converted from harmful "
          f"compliance), {len(evals)} eval; removed {summary['removed_by_reason']}")


if __name__ == "__main__":
    main()
