"""Stage sft: supervised instruction fine-tuning with TRL.

Reads `params.yaml: sft` (+ seed), models/base/ and data/filtered/sft.jsonl.
Writes models/sft/ (Hugging Face folder + lineage + model card; with LoRA or
prompt tuning the PEFT adapter instead of the weights, with a pointer to
models/base) and reports/sft/ (metrics.json, dvclive curves).

Loss is on assistant tokens only, for any chat template: labels are built by
`training.supervised_dataset` (the template's `{% generation %}` markers where
present, otherwise the span of every assistant turn in the rendering).
Examples longer than `max_length` are dropped and counted in the metrics.

Methods: full (all weights), lora (adapters) and prompt_tuning (the seed's
prompt learning: only a soft prompt trains). An adapter method's folder holds
the adapter and `adapter_base.json` naming models/base by path and sha256, not a
merged copy of the weights (538 MB per stage for SmolLM2-135M in the DVC cache);
`training.load_model` loads base + adapter for every later stage.

Batching (`sft.batching`): padded to the longest, length-grouped, packed, or
padding-free (examples concatenated, position ids restart per example). With a
large vocabulary the LM head scores only the supervised positions
(`sft.lm_head`; the prompt's positions carry no loss). A slice
of the training split, chosen by content hash, is held back for validation
loss; early stopping keeps the best checkpoint. Checkpoints go to
checkpoints/sft, outside the DVC outputs: a killed run resumes from the last one
when it is rerun with the same inputs, and a finished run deletes them.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from . import config, lineage, training
from .records import hash_fraction, prompt_of, read_jsonl, write_json


def split_train_validation(examples: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """Validation slice by content hash of the prompt: stable when data is added."""
    train, val = [], []
    for ex in examples:
        prompt = prompt_of(ex["messages"])
        # Salted so this slice is independent of format's eval split.
        (val if hash_fraction("validation\x00" + prompt) < fraction else train).append(ex)
    return train, val


def peft_config(cfg: config.SFTConfig):
    if cfg.method == "lora":
        return training.lora_config(cfg.lora_r, cfg.dropout)
    if cfg.method == "prompt_tuning":
        from peft import PromptTuningConfig

        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.prompt_tokens,
                                  prompt_tuning_init="RANDOM")
    return None


def effective_batching(cfg: config.SFTConfig, device: str) -> str:
    """The batching mode to use (see `training.effective_batching`)."""
    return training.effective_batching(cfg.batching, device, cfg.method == "prompt_tuning")


def build_trainer(cfg: config.SFTConfig, seed: int, device: str, model, tokenizer, train_rows: list[dict],
                  val_rows: list[dict], max_length: int, checkpoints: Path, live: Path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    batching = effective_batching(cfg, device)
    training.score_positions(training.effective_lm_head(cfg.lm_head, model))
    sft_args = SFTConfig(
        **(training.common_args(checkpoints, seed, device, model.dtype, training.cpu_autocast(cfg.dtype, device))
           | training.recipe_args(cfg, bool(val_rows))
           | training.batching_args(batching, device)),
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size * 2,
        # Rows are already tokenized and within max_length (longer ones dropped and counted);
        # padding-free without packing wants no max_length at all.
        max_length=None if batching == "padding_free" else max_length,
        gradient_checkpointing=False, dataset_num_proc=None,
    )
    return SFTTrainer(
        model=model, args=sft_args, processing_class=tokenizer,
        train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
        peft_config=peft_config(cfg), callbacks=training.recipe_callbacks(cfg, bool(val_rows), live),
    )


def save(cfg, trainer, tokenizer, out: Path, stamp: dict, base: str, metrics: dict, summary: str) -> None:
    """full: the model folder; lora and prompt_tuning: the adapter + a pointer to `base`."""
    if cfg.method == "full":
        training.save_model_folder(trainer.model, tokenizer, out, stamp, summary, base, metrics)
    else:
        training.save_adapter_folder(trainer.model, tokenizer, out, Path(base), stamp, summary, metrics)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--base", default="models/base")
    ap.add_argument("--data", default="data/filtered/sft.jsonl")
    ap.add_argument("--out", default="models/sft")
    ap.add_argument("--report", default="reports/sft")
    ap.add_argument("--checkpoints", default="checkpoints/sft")
    args = ap.parse_args(argv)
    cfg, seed = config.load("sft", args.params)
    out, report, checkpoints = Path(args.out), Path(args.report), Path(args.checkpoints)

    # ---- data
    examples = [{"messages": ex["messages"], "source": ex.get("source", "")} for ex in read_jsonl(args.data)]
    train, val = split_train_validation(examples, cfg.validation_fraction)
    print(f"sft: {len(train)} training and {len(val)} validation examples")

    # ---- model and tokenized rows (assistant-only labels)
    device = training.setup_torch(seed, cfg.threads)
    if training.is_adapter_folder(Path(args.base)):
        raise ValueError(f"sft: {args.base} is an adapter folder; sft needs a plain base model folder "
                         "(an adapter is stored against it)")
    model, tokenizer = training.load_model(Path(args.base), cfg.dtype, device, train=True)
    training.apply_dropout(model, cfg.dropout)
    max_length = training.model_max_length(model, tokenizer, cfg.max_length)
    train_rows, train_stats = training.supervised_dataset(tokenizer, [e["messages"] for e in train], max_length,
                                                          f"sft: {args.data} (training split)",
                                                          sources=[e["source"] for e in train])
    val_rows, val_stats = training.supervised_dataset(tokenizer, [e["messages"] for e in val], max_length,
                                                      f"sft: {args.data} (validation split)",
                                                      sources=[e["source"] for e in val])
    if not train_rows:
        raise ValueError(f"sft: no training example of {args.data} fits max_length={max_length}")

    # ---- train (resuming a killed run with the same inputs)
    stamp = lineage.stamp("sft", [args.base, args.data], cfg, seed) | {"origin": training.origin_of(Path(args.base))}
    resume = training.prepare_checkpoints(checkpoints, stamp)
    trainer = build_trainer(cfg, seed, device, model, tokenizer, train_rows, val_rows, max_length, checkpoints,
                            report / "live")
    if resume:
        print(f"sft: resuming the killed run from {checkpoints}")
    trainer.train(resume_from_checkpoint=True if resume else None)

    # ---- save (one process)
    metrics = training.final_metrics(trainer.state.log_history) | {
        "method": cfg.method, "batching": effective_batching(cfg, device),
        "lm_head": training.effective_lm_head(cfg.lm_head, model), "max_length": max_length,
        "train_examples": len(train), "validation_examples": len(val),
        "train_rows": train_stats["rows"], "validation_rows": val_stats["rows"],
        "too_long_dropped": train_stats["too_long_dropped"] + val_stats["too_long_dropped"],
        # a length cut can fall on one source only (long reference texts): say which
        "too_long_dropped_by_source": dict(sorted((Counter(train_stats["too_long_dropped_by_source"])
                                                   + Counter(val_stats["too_long_dropped_by_source"])).items())),
        "supervised_tokens": train_stats["supervised_tokens"], "train_tokens": train_stats["tokens"],
        "best_step": int(trainer.state.best_global_step or 0),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }
    if cfg.method != "full" and (new := training.new_token_ids(Path(args.base), tokenizer)):
        metrics["added_tokens_not_trained"] = len(new)
        print(f"sft: warning: {len(new)} token(s) added by base (chat template) keep their initial embeddings "
              f"under {cfg.method}; use `sft.method: full` to train them")
    if trainer.is_world_process_zero():
        save(cfg, trainer, tokenizer, out, stamp, args.base, metrics,
             f"Supervised instruction fine-tuning ({cfg.method}; loss on assistant tokens only).")
        write_json(report / "metrics.json", {**metrics, "lineage": stamp})
        training.finish_checkpoints(checkpoints)
    print(f"sft: saved to {out}; {metrics}")
    training.end_processes()


if __name__ == "__main__":
    main()
