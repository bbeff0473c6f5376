"""Stage onpolicy: the SFT model answers training prompts; its answers become safety pairs.

Reads `params.yaml: onpolicy` (+ seed), models/sft/, data/filtered/prompts.jsonl
(prompt-only training prompts with `harmful` true/false) and data/filtered/sft.jsonl
(ordinary instructions). Writes:
    data/onpolicy/pairs.jsonl     TRL conversational pairs {id, source, locator, prompt, chosen, rejected, labels}
    data/onpolicy/skipped.jsonl   every answered prompt that made no pair, with its reason and the answer
    reports/onpolicy/summary.json counts, the SFT model's compliance and over-refusal rates (a DVC metric)

Why on-policy: pairs whose rejected side is something the model would never say
teach it little (DPO's gradient is largest where the policy already puts mass).
So the SFT model answers each prompt (greedy, batched, chat template):
- harmful prompt, answer complies -> rejected = the answer, chosen = a refusal
  from the refusal library (varied, chosen by hash of the prompt);
- harmless look-alike or ordinary instruction, answer helps -> chosen = the
  answer, rejected = a refusal, so safety training does not buy refusals with
  helpfulness (the share of such pairs is `harmless_share`).
Answers that already refuse a harmful prompt give no pair (nothing to fix);
answers that refuse a harmless prompt or are empty/degenerate cannot be a
chosen side and are skipped, and so, with `match_reference_shape`, is a
one-sentence answer to an instruction whose reference answer has more.
With `reference_fallback` such an instruction is not skipped: its human
reference answer becomes the chosen side (the model's refusal or loop the
rejected one), so the pairs still teach it to answer what it refused.
Every answered prompt is accounted for.

Harmful questions also get an imperative twin ("Give me detailed instructions
to ..."), so commands are covered, not only questions (`imperative_fraction`);
look-alike questions may get one from the same templates
(`lookalike_imperative_fraction`), so the command form is no refusal cue.
Whether an answer refuses is judged by `refusals.looks_like_refusal`, not by
the evaluation judge.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from collections import Counter
from pathlib import Path

from . import config, lineage, refusals, training
from .records import count_sentences, prompt_of, read_jsonl, record_id, write_json, write_jsonl


# --------------------------------------------------------------------------- prompt pools
def _order(seed: int, key: str) -> str:
    """Deterministic, seed-dependent order that adding prompts does not reshuffle."""
    return hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).hexdigest()


def _item(row: dict, prompt: list[dict], pool: str, **labels) -> dict:
    return {"id": row["id"], "source": row["source"], "locator": row["locator"], "prompt": prompt, "pool": pool,
            "labels": {k: v for k, v in labels.items() if v is not None}}


def harmful_pool(rows: list[dict], imperative_fraction: float, seed: int) -> list[dict]:
    """Harmful prompts, plus an imperative twin for a share of the questions."""
    return with_twins(rows, imperative_fraction, seed, "harmful")


def lookalike_pool(rows: list[dict], imperative_fraction: float, seed: int) -> list[dict]:
    """Harmless look-alikes, plus an imperative twin from the same templates for a share of the
    questions: with twins on one side only, "Write a step-by-step guide on how to ..." itself
    would teach a refusal."""
    return with_twins(rows, imperative_fraction, seed, "lookalike")


def with_twins(rows: list[dict], imperative_fraction: float, seed: int, pool: str) -> list[dict]:
    harmful = pool == "harmful"
    out = []
    for r in rows:
        style = r.get("style") or ("question" if prompt_of(r["prompt"]).rstrip().endswith("?") else "command")
        out.append(_item(r, r["prompt"], pool, harmful=harmful, category=r.get("category"),
                         style=style if harmful else r.get("style")))
        if style != "question" or int(_order(seed, "imperative" + r["id"])[:8], 16) / 16**8 >= imperative_fraction:
            continue
        command, template = refusals.imperative(prompt_of(r["prompt"]), key=r["id"])
        if template == "unchanged":
            continue
        turns = [dict(m) for m in r["prompt"]]
        last = max(i for i, m in enumerate(turns) if m["role"] == "user")
        turns[last] = {"role": "user", "content": command}
        locator = f"{r['locator']}#imperative"
        twin = {"id": record_id(r["source"], locator), "source": r["source"], "locator": locator}
        out.append(_item(twin, turns, pool, harmful=harmful, category=r.get("category"), style="command",
                         rewrite=template, rewritten_from=r["id"]))
    return out


def instruction_pool(rows: list[dict]) -> list[dict]:
    """Ordinary instructions from the SFT data: the prompt turns of examples whose reply is no refusal."""
    out = []
    for r in rows:
        msgs, labels = r["messages"], r.get("labels") or {}
        if msgs[-1]["role"] != "assistant" or labels.get("harmful") or labels.get("family") in ("harmful",
                                                                                             "harmful_compliance"):
            continue
        if refusals.looks_like_refusal(msgs[-1]["content"]):
            continue
        item = _item(r, msgs[:-1], "instruction", harmful=False, family=labels.get("family"))
        item["reference"] = msgs[-1]["content"]  # the answer shape `match_reference_shape` compares with
        out.append(item)
    return out


def opening(item: dict) -> str:
    """A prompt's form: the first word of its last user turn, lower-cased ("write", "how", "give")."""
    words = prompt_of(item["prompt"]).split()
    return words[0].lower().strip(".,:;!?\"'()[]") if words else ""


def match_forms(harmful: list[dict], pool: list[dict], n: int) -> list[dict]:
    """n items of `pool` (in its order) whose openings follow the harmful prompts' distribution.

    Each opening of the harmful side gets its share of n; a share the pool cannot fill, and
    the rounding, go to the remaining items in pool order. Without it a form that only the
    harmful side uses ("Write a ..." in AART and the imperative twins) becomes a cue to refuse
    any such instruction, however harmless."""
    forms = Counter(opening(it) for it in harmful)
    total = sum(forms.values())
    quota = {f: n * c // total for f, c in forms.items()} if total else {}
    picked, rest = [], []
    for it in pool:
        f = opening(it)
        if quota.get(f, 0) > 0 and len(picked) < n:
            quota[f] -= 1
            picked.append(it)
        else:
            rest.append(it)
    chosen = {id(it) for it in picked + rest[:max(0, n - len(picked))]}
    return [it for it in pool if id(it) in chosen]  # pool order, as an unmatched selection keeps


def nearness(items: list[dict], harmful: list[dict], k: int = 5) -> list[float]:
    """How much each item's prompt is like the harmful prompts: the mean TF-IDF cosine of its k
    nearest harmful prompts (word unigrams and bigrams, fitted on both sides).

    The mean of several, not the single nearest, so that one stray near-copy does not decide."""
    if not items or not harmful:
        return [0.0] * len(items)
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [prompt_of(it["prompt"]) for it in items]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    vec.fit(texts + [prompt_of(it["prompt"]) for it in harmful])
    sims = (vec.transform(texts) @ vec.transform([prompt_of(it["prompt"]) for it in harmful]).T).toarray()
    k = min(k, sims.shape[1])
    top = -np.partition(-sims, k - 1, axis=1)[:, :k]
    return [round(float(v), 12) for v in top.mean(axis=1)]  # rounded: ties break by the seeded order


def hard_first(instructions: list[dict], harmful: list[dict], n: int, fraction: float) -> list[dict]:
    """`instructions` (already in seeded order) with the round(n * fraction) nearest to the harmful
    prompts moved to the front, nearest first; the rest keep their order."""
    n_hard = round(n * fraction)
    if not n_hard:
        return instructions
    score = nearness(instructions, harmful)
    hard = sorted(range(len(instructions)), key=lambda i: -score[i])[:n_hard]  # stable: seeded order on ties
    front = set(hard)
    return [instructions[i] for i in hard] + [it for i, it in enumerate(instructions) if i not in front]


def select(pools: dict[str, list[dict]], cfg: config.OnpolicyConfig, seed: int) -> dict[str, list[dict]]:
    """Which prompts to answer within `max_prompts`, in the proportions the mix needs.

    The harmless side gets a little more than its share (dropped answers are
    trimmed afterwards) but never more than the budget."""
    ranked = {k: sorted(v, key=lambda it: _order(seed, it["id"])) for k, v in pools.items()}
    n_harm = min(len(ranked["harmful"]), round(cfg.max_prompts * (1 - cfg.harmless_share)))
    want = math.ceil(n_harm * cfg.harmless_share / (1 - cfg.harmless_share) * 1.25) if n_harm else 0
    n_harmless = min(want, cfg.max_prompts - n_harm, len(ranked["lookalike"]) + len(ranked["instruction"]))
    n_inst = min(round(n_harmless * cfg.instruction_share), len(ranked["instruction"]))
    n_look = min(n_harmless - n_inst, len(ranked["lookalike"]))
    n_inst = min(n_harmless - n_look, len(ranked["instruction"]))  # the look-alike pool may have run short
    # hard negatives: instructions most like the harmful prompts (the whole harmful pool, not only the
    # prompts answered) come first, so a share of the quota is spent where refusals would spill over
    pool = hard_first(ranked["instruction"], pools["harmful"], n_inst, cfg.hard_negative_fraction)
    instructions = (match_forms(ranked["harmful"][:n_harm], pool, n_inst) if cfg.match_forms else pool[:n_inst])
    lookalikes = hard_first(ranked["lookalike"], pools["harmful"], n_look, cfg.lookalike_hard_negative_fraction)
    return {"harmful": ranked["harmful"][:n_harm], "lookalike": lookalikes[:n_look],
            "instruction": instructions}


# --------------------------------------------------------------------------- generation
def generate(model, tokenizer, prompts: list[list[dict]], cfg: config.OnpolicyConfig,
             max_new_tokens: int | None = None) -> list[tuple[str, bool]]:
    """Greedy answers, batched by length (less padding), in input order: (text, ended by itself).

    `max_new_tokens` overrides `cfg.max_new_tokens` (harmful prompts get their own budget)."""
    import torch
    from tqdm import tqdm

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    stop = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    out: dict[int, tuple[str, bool]] = {}
    model.eval()
    for start in tqdm(range(0, len(order), cfg.batch_size), desc="onpolicy: answering", unit="batch"):
        idx = order[start:start + cfg.batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens or cfg.max_new_tokens, do_sample=False,
                                 repetition_penalty=cfg.repetition_penalty,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        for i, row in zip(idx, gen[:, enc["input_ids"].shape[1]:].tolist()):
            out[i] = (tokenizer.decode(row, skip_special_tokens=True).strip(), any(t in stop for t in row))
    return [out[i] for i in range(len(texts))]


# --------------------------------------------------------------------------- judging
def degenerate(text: str, min_words: int) -> bool:
    """Empty, too short, or looping (a few words repeated over and over)."""
    words = text.split()
    if not words or len(words) < min_words:
        return True
    return len(words) >= 12 and len(set(words)) / len(words) < 0.3


def complete_sentences(text: str) -> str:
    """A cut-off answer up to its last finished sentence ('' when there is none)."""
    cut = max(text.rfind(c) for c in ".!?\n")
    return text[:cut + 1].strip() if cut >= 0 else ""


def judge(item: dict, answer: str, ended: bool, min_words: int,
          match_reference_shape: bool = False, reference_fallback: bool = False) -> tuple[dict | None, str]:
    """(pair or None, outcome) for one answered prompt.

    With `reference_fallback`, an instruction whose answer cannot be chosen (refused, degenerate,
    or shorter than its reference) gets its human reference answer as the chosen side: the
    outcome is then `reference_for_<reason>`, and the model's own refusal or loop is rejected."""
    prompt_text = prompt_of(item["prompt"])
    refused = refusals.looks_like_refusal(answer)
    labels = {**item["labels"], "pool": item["pool"], "onpolicy": True}
    pair = {"id": item["id"], "source": item["source"], "locator": item["locator"], "prompt": item["prompt"]}
    if item["pool"] == "harmful":
        if refused:
            return None, "already_refused"
        if not answer.strip():
            return None, "empty"
        refusal = refusals.refusal_for(prompt_text)
        return {**pair, "chosen": [{"role": "assistant", "content": refusal}],
                "rejected": [{"role": "assistant", "content": answer}], "labels": labels}, "complied"
    reference = item.get("reference") if reference_fallback else None

    def fallback(reason: str, rejected: str | None = None) -> tuple[dict | None, str]:
        if not reference:
            return None, reason
        rejected = rejected or refusals.refusal_for(prompt_text)
        return {**pair, "chosen": [{"role": "assistant", "content": reference}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "labels": {**labels, "reference": True}}, f"reference_for_{reason}"

    if refused:
        return fallback("over_refused", answer)
    outcome = "helped"
    if not ended:  # a chosen reply cut mid-sentence would teach the model to stop mid-sentence, and one
        # cut anywhere would teach it to stop at the budget: trimmed, and marked so that its end of turn
        # is not trained (safety.open_ends)
        answer, outcome = complete_sentences(answer), "helped_trimmed"
        labels["cut"] = True
    if degenerate(answer, min_words):
        labels.pop("cut", None)
        return fallback("degenerate", answer if answer.strip() else None)
    if match_reference_shape and item.get("reference") and count_sentences(item["reference"]) >= 2 \
            and count_sentences(answer) < 2:
        labels.pop("cut", None)
        return fallback("shorter_than_reference")
    refusal = refusals.refusal_for(prompt_text)
    return {**pair, "chosen": [{"role": "assistant", "content": answer}],
            "rejected": [{"role": "assistant", "content": refusal}], "labels": labels}, outcome


def balance(harmful: list[dict], harmless: list[dict], share: float) -> tuple[list[dict], list[dict]]:
    """Trim the longer side (from the end of its ranked list) so harmless/(all) == share, to rounding."""
    if share == 0:
        return harmful, []
    if not harmful or not harmless:
        return [], []
    if len(harmless) > round(len(harmful) * share / (1 - share)):
        return harmful, harmless[:round(len(harmful) * share / (1 - share))]
    return harmful[:max(1, round(len(harmless) * (1 - share) / share))], harmless


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--sft", default="models/sft")
    ap.add_argument("--prompts", default="data/filtered/prompts.jsonl")
    ap.add_argument("--instructions", default="data/filtered/sft.jsonl")
    ap.add_argument("--out", default="data/onpolicy")
    ap.add_argument("--report", default="reports/onpolicy")
    args = ap.parse_args(argv)
    cfg, seed = config.load("onpolicy", args.params)
    out, report = Path(args.out), Path(args.report)

    # ---------------------------------------------------------------- pools and selection
    prompts = list(read_jsonl(args.prompts))
    pools = {
        "harmful": harmful_pool([p for p in prompts if p.get("harmful")], cfg.imperative_fraction, seed),
        "lookalike": lookalike_pool([p for p in prompts if not p.get("harmful")], cfg.lookalike_imperative_fraction,
                                    seed),
        "instruction": instruction_pool(list(read_jsonl(args.instructions))),
    }
    chosen = select(pools, cfg, seed)
    items = [it for pool in ("harmful", "lookalike", "instruction") for it in chosen[pool]]
    print(f"onpolicy: pools {({k: len(v) for k, v in pools.items()})}; answering "
          f"{({k: len(v) for k, v in chosen.items()})}")

    # ---------------------------------------------------------------- answers (the model loads only if needed)
    answers = []
    if items:
        device = training.setup_torch(seed, cfg.threads)
        model, tokenizer = training.load_model(Path(args.sft), cfg.dtype, device)
        model.to(device)
        # Harmful answers only need their opening (does it comply or refuse?) and serve as the rejected
        # side, so they may get a shorter budget than the helpful answers that become chosen replies.
        budget = {"harmful": cfg.harmful_max_new_tokens or cfg.max_new_tokens}
        by_budget: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            by_budget.setdefault(budget.get(it["pool"], cfg.max_new_tokens), []).append(i)
        answers = [("", False)] * len(items)
        for n, idx in sorted(by_budget.items()):
            for i, a in zip(idx, generate(model, tokenizer, [items[i]["prompt"] for i in idx], cfg, n)):
                answers[i] = a

    # ---------------------------------------------------------------- pairs, skips, balance
    sides: dict[str, list[dict]] = {"harmful": [], "harmless": []}
    skipped, outcomes = [], Counter()
    for it, (answer, ended) in zip(items, answers):
        pair, outcome = judge(it, answer, ended, cfg.min_words, cfg.match_reference_shape, cfg.reference_fallback)
        outcomes[f"{it['pool']}_{outcome}"] += 1
        if pair is None:
            skipped.append({"id": it["id"], "source": it["source"], "locator": it["locator"], "pool": it["pool"],
                            "reason": outcome, "prompt": prompt_of(it["prompt"]), "answer": answer})
        else:
            sides["harmful" if it["pool"] == "harmful" else "harmless"].append(pair)
    harmful, harmless = balance(sides["harmful"], sides["harmless"], cfg.harmless_share)
    kept = {p["id"] for p in harmful + harmless}
    for p in sides["harmful"] + sides["harmless"]:
        if p["id"] not in kept:
            skipped.append({"id": p["id"], "source": p["source"], "locator": p["locator"],
                            "pool": p["labels"]["pool"], "reason": "trimmed_for_share",
                            "prompt": prompt_of(p["prompt"]), "answer": None})
    pairs = sorted(harmful + harmless, key=lambda p: p["id"])

    # ---------------------------------------------------------------- write
    write_jsonl(out / "pairs.jsonl", pairs)
    write_jsonl(out / "skipped.jsonl", sorted(skipped, key=lambda s: s["id"]))
    answered = Counter(it["pool"] for it in items)

    def rate(pool: str, outcome: str) -> float | None:
        return round(outcomes[f"{pool}_{outcome}"] / answered[pool], 4) if answered[pool] else None

    summary = {
        "pools": {k: len(v) for k, v in pools.items()},
        "imperative_twins": sum(1 for it in pools["harmful"] if "rewrite" in it["labels"]),
        "answered": dict(sorted(answered.items())),
        "instructions_by_source": dict(sorted(Counter(it["source"] for it in chosen["instruction"]).items())),
        "hard_negatives": round(len(chosen["instruction"]) * cfg.hard_negative_fraction),
        "lookalike_hard_negatives": round(len(chosen["lookalike"]) * cfg.lookalike_hard_negative_fraction),
        "outcomes": dict(sorted(outcomes.items())),
        "sft_compliance_harmful": rate("harmful", "complied"),
        "sft_over_refusal_lookalike": rate("lookalike", "over_refused"),
        "sft_over_refusal_instruction": rate("instruction", "over_refused"),
        "pairs": len(pairs), "pairs_harmful": len(harmful), "pairs_harmless": len(harmless),
        "harmless_share": round(len(harmless) / len(pairs), 4) if pairs else None,
        "skipped": len(skipped),
    }
    if not pools["harmful"]:
        summary["note"] = "no harmful prompts in the input: no pairs (the mix needs both sides)"
    # The folders under an adapter SFT model (models/base) load too, so they are inputs as well.
    inputs = [*training.base_folders(Path(args.sft)), args.sft, args.prompts, args.instructions]
    write_json(report / "summary.json", {**summary, "lineage": lineage.stamp("onpolicy", inputs, cfg, seed)})
    print(f"onpolicy: {summary}")


if __name__ == "__main__":
    main()
