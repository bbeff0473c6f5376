"""Prompts in, replies and perplexities out.

- Few-shot prompts: k examples from the training split (data/filtered/sft.jsonl)
  as earlier user/assistant turns, drawn for each prompt from the same task
  family (any family when it has too few), seeded by the prompt's id, so the
  same prompt always gets the same shots. Shots that would not fit the model's
  context are dropped, longest prompt first, and the number used is recorded.
- Generation: batched, left-padded, greedy by default (`evaluate.decoding`),
  prompts sorted by length so batches carry little padding; results come back
  in input order.
- Perplexity: mean token negative log-likelihood, exponentiated, on plain text
  (held-out pretraining lines) and on reference answers given their prompt
  (the alignment tax: how much fine-tuning costs on text it did not train on).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

from ..progress import progress
from ..records import prompt_of


# --------------------------------------------------------------------------- few-shot
def shot_pool(train_rows: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """(user, assistant) pairs from single-answer training examples, by family ('' = all)."""
    pool: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in sorted(train_rows, key=lambda r: str(r.get("id"))):
        msgs = row.get("messages") or []
        if not msgs or msgs[-1].get("role") != "assistant":
            continue
        user, reply = prompt_of(msgs[:-1]), msgs[-1].get("content", "")
        if not user or not reply:
            continue
        family = (row.get("labels") or {}).get("family", "")
        pool[family].append((user, reply))
        pool[""].append((user, reply))
    return dict(pool)


def pick_shots(pool: dict[str, list[tuple[str, str]]], family: str, k: int, key: str, seed: int) -> list:
    """k examples for one prompt: from its family if it has k, else from all; deterministic per key."""
    if k <= 0 or not pool:
        return []
    cands = pool.get(family) if len(pool.get(family, [])) >= k else pool.get("", [])
    rng = random.Random(f"{seed}:{key}")
    return rng.sample(cands, min(k, len(cands)))


def few_shot_prompt(prompt: list[dict], shots: list[tuple[str, str]]) -> list[dict]:
    """The prompt's turns with the shots as earlier exchanges (after any system turn)."""
    system = [m for m in prompt[:1] if m["role"] == "system"]
    turns = []
    for user, reply in shots:
        turns += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return system + turns + prompt[len(system):]


# --------------------------------------------------------------------------- generation
def context_budget(model, tokenizer, max_new_tokens: int) -> int:
    """Prompt tokens that fit beside the reply in the model's context."""
    limit = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length or 2048
    return max(8, min(int(limit), 1 << 16) - max_new_tokens)


def render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def fit_shots(tokenizer, prompt: list[dict], shots: list, budget: int) -> tuple[str, int]:
    """The rendered prompt with as many of the shots as fit in `budget` tokens; (text, shots used)."""
    shots = list(shots)
    while True:
        text = render(tokenizer, few_shot_prompt(prompt, shots))
        if not shots or len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= budget:
            return text, len(shots)
        shots.pop()


def generate(model, tokenizer, texts: list[str], *, max_new_tokens: int, batch_size: int, decoding: str,
             temperature: float, top_p: float, budget: int, seed: int) -> tuple[list, int]:
    """Replies for rendered prompts, in input order; also how many prompts were cut to fit."""
    import torch

    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"  # keep the end of a long prompt: the question and the reply slot
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    truncated = sum(n > budget for n in lengths)
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    replies: list[str] = [""] * len(texts)
    sample = decoding == "sample"
    torch.manual_seed(seed)
    for b in progress(range(0, len(order), batch_size), desc="generate", unit="batch"):
        idx = order[b:b + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                        max_length=budget, add_special_tokens=False).to(model.device)
        extra = {"do_sample": True, "temperature": temperature, "top_p": top_p} if sample else {"do_sample": False}
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id, **extra)
        for i, row in zip(idx, out[:, enc["input_ids"].shape[1]:]):
            replies[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return replies, truncated


# --------------------------------------------------------------------------- perplexity
def perplexity(model, tokenizer, contexts: list[str], targets: list[str], *, batch_size: int,
               max_tokens: int) -> dict:
    """exp(mean NLL) of the target tokens given their context (context may be empty).

    Context and target are tokenised separately and joined, so the loss covers
    exactly the target's tokens; pairs longer than `max_tokens` keep the target's
    end. Returns {ppl, nll, tokens, texts}."""
    import torch

    tokenizer.padding_side = "right"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    seqs = []
    for ctx, tgt in zip(contexts, targets):
        c = tokenizer(ctx, add_special_tokens=False)["input_ids"] if ctx else []
        t = tokenizer(tgt, add_special_tokens=False)["input_ids"]
        if not c and tokenizer.bos_token_id is not None:
            c = [tokenizer.bos_token_id]
        ids = (c + t)[-max_tokens:]
        n_t = min(len(t), len(ids) - 1)  # the first token has nothing to be predicted from
        if n_t > 0:
            seqs.append((ids, n_t))
    total_nll, total_tokens = 0.0, 0
    model.eval()
    for b in range(0, len(seqs), batch_size):
        chunk = seqs[b:b + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (ids, n_t) in enumerate(chunk):
            input_ids[r, :len(ids)] = torch.tensor(ids)
            mask[r, :len(ids)] = 1
            labels[r, len(ids) - n_t:len(ids)] = torch.tensor(ids[len(ids) - n_t:])
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        gold = labels[:, 1:].to(logp.device)
        keep = gold != -100
        nll = -logp.gather(-1, gold.clamp(min=0).unsqueeze(-1)).squeeze(-1)[keep]
        total_nll += float(nll.sum())
        total_tokens += int(keep.sum())
    if not total_tokens:
        return {"ppl": None, "nll": None, "tokens": 0, "texts": 0}
    mean = total_nll / total_tokens
    return {"ppl": round(math.exp(mean), 4), "nll": round(mean, 5), "tokens": total_tokens, "texts": len(seqs)}
