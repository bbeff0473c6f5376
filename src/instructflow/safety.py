"""Stage safety: safety training on preference pairs, the SFT model as reference.

Reads `params.yaml: safety` (+ seed), models/sft/, data/filtered/pairs.jsonl and
data/onpolicy/pairs.jsonl (the SFT model's own answers made into pairs by the
onpolicy stage; a missing or empty file counts as none). Writes models/safety/
(Hugging Face folder + lineage + model card; with LoRA the adapter instead of
the weights, with a pointer to models/sft, which may itself be an adapter on
models/base) and reports/safety/ (metrics.json, dvclive curves).

Methods:
- dpo (default): TRL's DPOTrainer with an added SFT term on the chosen replies
  (`loss_type=["sigmoid", "sft"]`). Plain DPO cannot create a refusal the SFT
  model never produces: reward accuracy reaches 1.0 while the chosen reply also
  gets less likely. The SFT term keeps the chosen replies likely.
- refusal_sft: SFT on the chosen replies (assistant tokens only).
Either with `safety.lora: true`: LoRA adapters train, and DPO's reference is the
same model with the adapters disabled (no second copy in memory). An SFT LoRA
adapter is merged in memory first (`training.load_model`), so the new adapter
trains on the SFT model and is stored against models/sft. Reference
log-probs are computed per batch unless `precompute_ref_log_probs` asks for one
pass over every pair first (worth it only over several epochs).

A validation slice of the pairs (by content hash of the prompt) gives the
validation loss for early stopping. Pairs longer than `max_length` are dropped
and counted, never truncated out of the loss.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from . import config, lineage, training
from .records import hash_fraction, prompt_of, read_jsonl, write_json


def load_pairs(*paths: str) -> tuple[list[dict], dict]:
    """Pairs from each file that exists (a missing or empty file is none); counts per file."""
    pairs, counts = [], {}
    for path in paths:
        rows = list(read_jsonl(path)) if Path(path).is_file() else []
        counts[path] = len(rows)
        # `cut`: onpolicy cut the chosen reply at its token budget (refusal_sft leaves its end of turn untrained)
        pairs += [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
                   "cut": bool((p.get("labels") or {}).get("cut")), "source": p.get("source", "")} for p in rows]
    return pairs, counts


def dpo_rows(pairs: list[dict]) -> list[dict]:
    return [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]


def split_pairs(pairs: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    train, val = [], []
    for p in pairs:
        (val if hash_fraction("validation\x00" + prompt_of(p["prompt"])) < fraction else train).append(p)
    return train, val


def fits(tokenizer, pair: dict, max_length: int) -> bool:
    """Both prompt+chosen and prompt+rejected render within max_length tokens."""
    return all(len(training._ids(tokenizer, pair["prompt"] + pair[side])) <= max_length
               for side in ("chosen", "rejected"))


def peft_config(cfg: config.SafetyConfig):
    return training.lora_config(cfg.lora_r, cfg.dropout) if cfg.lora else None


def train_dpo(cfg: config.SafetyConfig, seed: int, device: str, model, tokenizer, train, val, max_length: int,
              checkpoints: Path, report: Path, resume: bool):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        **(training.common_args(checkpoints, seed, device, model.dtype, training.cpu_autocast(cfg.dtype, device))
           | training.recipe_args(cfg, bool(val))
           | training.pad_args(device)),
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        beta=cfg.beta, loss_type=["sigmoid", "sft"], loss_weights=[1.0, cfg.sft_weight],
        max_length=max_length, gradient_checkpointing=False, disable_dropout=cfg.dropout == 0,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
    )
    trainer = DPOTrainer(model=model, ref_model=None, args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list(dpo_rows(train)),
                         eval_dataset=Dataset.from_list(dpo_rows(val)) if val else None,
                         peft_config=peft_config(cfg), callbacks=training.recipe_callbacks(cfg, bool(val), report / "live"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    return trainer


def train_refusal_sft(cfg: config.SafetyConfig, seed: int, device: str, model, tokenizer, train, val,
                      max_length: int, checkpoints: Path, report: Path, resume: bool, batching: str = "padded"):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    def rows(pairs):
        cut = [cfg.open_ends and p["cut"] for p in pairs]
        return training.supervised_dataset(tokenizer, [p["prompt"] + p["chosen"] for p in pairs], max_length,
                                           "safety: refusal_sft", open_ends=cut)[0]

    train_rows, val_rows = rows(train), rows(val)
    args = SFTConfig(
        **(training.common_args(checkpoints, seed, device, model.dtype, training.cpu_autocast(cfg.dtype, device))
           | training.recipe_args(cfg, bool(val_rows))
           | training.batching_args(batching, device)),
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, gradient_checkpointing=False, dataset_num_proc=None,
        # rows are tokenized and within max_length already; padding-free without packing wants none
        max_length=None if batching == "padding_free" else max_length,
    )
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(train_rows),
                         eval_dataset=Dataset.from_list(val_rows) if val_rows else None, peft_config=peft_config(cfg),
                         callbacks=training.recipe_callbacks(cfg, bool(val_rows), report / "live"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    return trainer


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--sft", default="models/sft")
    ap.add_argument("--data", default="data/filtered/pairs.jsonl")
    ap.add_argument("--onpolicy", default="data/onpolicy/pairs.jsonl")
    ap.add_argument("--out", default="models/safety")
    ap.add_argument("--report", default="reports/safety")
    ap.add_argument("--checkpoints", default="checkpoints/safety")
    args = ap.parse_args(argv)
    cfg, seed = config.load("safety", args.params)
    out, report, checkpoints = Path(args.out), Path(args.report), Path(args.checkpoints)

    # ---- pairs
    pairs, counts = load_pairs(args.data, args.onpolicy)
    print(f"safety: {len(pairs)} preference pairs ({counts}), method {cfg.method}{' + LoRA' if cfg.lora else ''}")

    # ---- model
    device = training.setup_torch(seed, cfg.threads)
    prompt_tuned = training.is_prompt_tuned(Path(args.sft))
    if prompt_tuned and cfg.lora:
        raise ValueError(f"safety: {args.sft} was prompt-tuned (sft.method prompt_tuning); LoRA cannot stack on a "
                         "soft prompt here. Set `safety.lora: false` (the soft prompt then trains further).")
    model, tokenizer = training.load_model(Path(args.sft), cfg.dtype, device, train=True)
    if prompt_tuned:  # the soft prompt trains on; the reference is a frozen copy of it (TRL's "ref" adapter)
        for name, p in model.named_parameters():
            p.requires_grad = "prompt_encoder" in name
    training.apply_dropout(model, cfg.dropout)
    max_length = training.model_max_length(model, tokenizer, cfg.max_length)
    kept = [p for p in pairs if fits(tokenizer, p, max_length)]
    too_long = len(pairs) - len(kept)
    # Per source: a length cut can fall on one kind of data only (long reference texts), and a model
    # that never trains on it learns nothing about it (README, "Real models").
    too_long_by_source = Counter(p["source"] for p in pairs) - Counter(p["source"] for p in kept)
    if too_long:
        print(f"safety: {too_long} pair(s) longer than max_length={max_length} tokens dropped (counted in metrics): "
              + ", ".join(f"{s or '?'} {n} of {sum(p['source'] == s for p in pairs)}"
                          for s, n in sorted(too_long_by_source.items())))
    if not kept:
        raise ValueError(f"safety: no preference pair in {args.data} / {args.onpolicy} fits max_length={max_length}")
    train, val = split_pairs(kept, cfg.validation_fraction)

    # ---- train (resuming a killed run with the same inputs)
    # The folders under an adapter-trained SFT model (models/base) are inputs too: they are what loads.
    inputs = [*training.base_folders(Path(args.sft)), args.sft, args.data] + (
        [args.onpolicy] if Path(args.onpolicy).is_file() else [])
    stamp = lineage.stamp("safety", inputs, cfg, seed) | {"origin": training.origin_of(Path(args.sft))}
    resume = training.prepare_checkpoints(checkpoints, stamp)
    if resume:
        print(f"safety: resuming the killed run from {checkpoints}")
    # As sft's `lm_head: auto`: with a large vocabulary the fused LM head scores only the reply's positions.
    lm_head = training.effective_lm_head("auto", model)
    training.score_positions(lm_head)
    run = (cfg, seed, device, model, tokenizer, train, val, max_length, checkpoints, report, resume)
    if cfg.method == "refusal_sft":
        # On a CPU, random padded batches: length-grouped batches hold only short refusals or only long
        # answers, and on the SmolLM2 pairs that model refused 58 % of held-out look-alikes against 29 %
        # with mixed batches (README, "Real models"); padding-free batches were no faster there. On a GPU
        # too: padded batches (lengths to a multiple of 64) measured faster than padding-free on an H200.
        batching = training.effective_batching(cfg.batching, device, prompt_tuned, cpu_auto="padded", gpu_auto="padded")
        trainer = train_refusal_sft(*run, batching)
    else:  # DPO pads its pairs itself
        batching = "padded"
        trainer = train_dpo(*run)

    # ---- save (one process)
    history = trainer.state.log_history
    metrics = training.final_metrics(history) | {
        "pairs": len(pairs), "pairs_by_file": counts, "too_long_dropped": too_long,
        "too_long_dropped_by_source": dict(sorted(too_long_by_source.items())), "train_pairs": len(train),
        "validation_pairs": len(val), "method": cfg.method, "lora": cfg.lora, "lm_head": lm_head, "batching": batching,
        "max_length": max_length,
        "open_ends": sum(p["cut"] for p in train) if cfg.method == "refusal_sft" and cfg.open_ends else 0,
        "best_step": int(trainer.state.best_global_step or 0)}
    accuracies = [h["rewards/accuracies"] for h in history if "rewards/accuracies" in h]
    if accuracies:
        metrics["final_reward_accuracy"] = round(accuracies[-1], 4)
    if trainer.is_world_process_zero():
        model = trainer.model
        summary = (f"Safety training ({cfg.method}{', LoRA' if cfg.lora else ''}) on preference pairs; the SFT "
                   "model is the reference.")
        if cfg.lora:  # the adapter, stored against the SFT folder (merged in memory under it)
            training.save_adapter_folder(model, tokenizer, out, Path(args.sft), stamp, summary, metrics,
                                         chain=training.adapter_chain(Path(args.sft)))
        elif prompt_tuned:  # the soft prompt trained on; it applies to the SFT prompt's own base weights
            if "ref" in getattr(model, "peft_config", {}):
                model.delete_adapter("ref")
            under = training.base_folders(Path(args.sft))
            training.save_adapter_folder(model, tokenizer, out, under[-1], stamp, summary, metrics,
                                         chain=training.adapter_chain(under[-1]))
        else:
            training.save_model_folder(model, tokenizer, out, stamp, summary, args.sft, metrics)
        write_json(report / "metrics.json", {**metrics, "lineage": stamp})
        training.finish_checkpoints(checkpoints)
    print(f"safety: saved to {out}; {metrics}")
    training.end_processes()


if __name__ == "__main__":
    main()
