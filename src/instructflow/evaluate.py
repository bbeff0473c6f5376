"""Stage evaluate: base, sft and safety models side by side on the held-out prompts.

Reads `params.yaml: evaluate` (+ seed), models/{base,sft,safety}/ and
data/formatted/eval.jsonl. Writes reports/evaluate/metrics.json (a DVC metric)
and reports/evaluate/generations.jsonl (every prompt, reply and score).

Greedy decoding with a fixed seed, so the numbers are reproducible. Scores:
- exact match on tasks, per family and split into seen vs held-out phrasings;
- refusal rate on harmful prompts (held-out phrasings and categories);
- over-refusal rate on harmless look-alikes that share the dangerous words;
- exact match on user data without labels (`general`).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from . import config, lineage, training
from .records import read_jsonl, write_json, write_jsonl

MODELS = ("base", "sft", "safety")


def normalize_answer(text: str) -> str:
    """Case, surrounding whitespace and a final full stop do not count against an answer."""
    return " ".join(str(text).strip().lower().rstrip(".!").split())


def is_refusal(reply: str, markers: list[str]) -> bool:
    low = reply.strip().lower()
    return any(m.lower() in low for m in markers)


def score(example: dict, reply: str, markers: list[str]) -> dict:
    """One prompt's scores: `correct` for tasks, `refused` for everything."""
    refused = is_refusal(reply, markers)
    out = {"refused": refused}
    if example["group"] in ("task", "general"):
        out["correct"] = normalize_answer(reply) == normalize_answer(example["reference"])
    return out


def _rate(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarize(rows: list[dict]) -> dict:
    """Aggregate scored rows of one model into the report's numbers."""
    by = defaultdict(list)
    for r in rows:
        split = "heldout" if r["heldout"] else "seen"
        if r["group"] in ("task", "general"):
            by[f"{r['group']}_em_{split}"].append(r["correct"])
            by[f"{r['group']}_em"].append(r["correct"])
            by[f"em_{r['family']}"].append(r["correct"])
        elif r["group"] == "harmful":
            by[f"refusal_{split}"].append(r["refused"])
            if r.get("category"):  # per harm category: some are taught only by safety training
                by[f"refusal_{r['category']}"].append(r["refused"])
        elif r["group"] == "lookalike":
            by[f"over_refusal_{split}"].append(r["refused"])
    out = {k: _rate(v) for k, v in sorted(by.items())}
    out["n_prompts"] = len(rows)
    return out


def generate_replies(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy, batched, left-padded generation; stops at the end-of-turn token."""
    import torch

    tokenizer.padding_side = "left"
    model.eval()
    replies = []
    for i in range(0, len(prompts), batch_size):
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                 for p in prompts[i:i + batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:]:
            replies.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return replies


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--models", default="models")
    ap.add_argument("--eval", default="data/formatted/eval.jsonl")
    ap.add_argument("--report", default="reports/evaluate")
    args = ap.parse_args(argv)
    cfg, seed = config.load("evaluate", args.params)
    report = Path(args.report)

    examples = list(read_jsonl(args.eval))
    device = training.setup_torch(seed, cfg.threads)
    metrics, generations = {}, []
    for name in MODELS:
        model, tokenizer = training.load_model_folder(Path(args.models) / name)
        model.to(device)
        replies = generate_replies(model, tokenizer, [e["prompt"] for e in examples], cfg.max_new_tokens,
                                   cfg.batch_size)
        rows = []
        for ex, reply in zip(examples, replies):
            rows.append({"model": name, "id": ex["id"], "group": ex["group"], "family": ex["family"],
                         "category": ex.get("category"), "heldout": ex["heldout"],
                         "prompt": ex["prompt"][-1]["content"], "reference": ex["reference"], "reply": reply,
                         **score(ex, reply, cfg.refusal_markers)})
        metrics[name] = summarize(rows)
        generations += rows
        print(f"evaluate: {name}: {metrics[name]}")

    write_jsonl(report / "generations.jsonl", generations)
    inputs = [args.eval] + [Path(args.models) / m for m in MODELS]
    write_json(report / "metrics.json", {**metrics, "lineage": lineage.stamp("evaluate", inputs, cfg, seed)})


if __name__ == "__main__":
    main()
