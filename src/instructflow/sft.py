"""Stage sft: supervised instruction fine-tuning with TRL.

Reads `params.yaml: sft` (+ seed), models/base/ and data/filtered/sft.jsonl.
Writes models/sft/ (Hugging Face folder + lineage + model card) and
reports/sft/ (metrics.json, dvclive curves).

Loss is on assistant tokens only (the chat template's `{% generation %}` markers
give TRL the mask). A slice of the training split, chosen by content hash, is
held back for validation loss; training stops early when it stops improving
and the best checkpoint is kept. Checkpoints go to checkpoints/sft, outside the
DVC outputs: a killed run resumes from the last one when it is rerun with the
same inputs, and a finished run deletes them.
"""

from __future__ import annotations

import argparse
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
    if cfg.method != "lora":
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--base", default="models/base")
    ap.add_argument("--data", default="data/filtered/sft.jsonl")
    ap.add_argument("--out", default="models/sft")
    ap.add_argument("--report", default="reports/sft")
    args = ap.parse_args(argv)
    cfg, seed = config.load("sft", args.params)
    out, report, checkpoints = Path(args.out), Path(args.report), Path("checkpoints/sft")

    # ---- data
    examples = [{"messages": ex["messages"]} for ex in read_jsonl(args.data)]
    train, val = split_train_validation(examples, cfg.validation_fraction)
    print(f"sft: {len(train)} training and {len(val)} validation examples")

    # ---- model and trainer
    from datasets import Dataset
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    device = training.setup_torch(seed, cfg.threads)
    model, tokenizer = training.load_model_folder(Path(args.base))
    stamp = lineage.stamp("sft", [args.base, args.data], cfg, seed)
    resume = training.prepare_checkpoints(checkpoints, stamp)
    sft_args = SFTConfig(
        **training.common_args(checkpoints, seed, device),
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size * 2,
        max_length=cfg.max_length, assistant_only_loss=True, packing=False, gradient_checkpointing=False,
        eval_strategy="steps", eval_steps=cfg.eval_steps, save_strategy="steps", save_steps=cfg.eval_steps,
        save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=False, dataset_num_proc=None,
    )
    trainer = SFTTrainer(
        model=model, args=sft_args, processing_class=tokenizer,
        train_dataset=Dataset.from_list(train), eval_dataset=Dataset.from_list(val),
        peft_config=peft_config(cfg),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience),
                   training.live_callback(report / "live")],
    )
    if resume:
        print(f"sft: resuming the killed run from {checkpoints}")
    trainer.train(resume_from_checkpoint=True if resume else None)

    # ---- save
    model = trainer.model
    if cfg.method == "lora":
        model = model.merge_and_unload()  # a plain folder that loads without PEFT
    metrics = training.final_metrics(trainer.state.log_history) | {
        "train_examples": len(train), "validation_examples": len(val),
        "best_step": int(trainer.state.best_global_step or 0),
    }
    training.save_model_folder(model, tokenizer, out, stamp,
                               "Supervised instruction fine-tuning (loss on assistant tokens only).",
                               args.base, metrics)
    write_json(report / "metrics.json", {**metrics, "lineage": stamp})
    training.finish_checkpoints(checkpoints)
    print(f"sft: saved to {out}; {metrics}")


if __name__ == "__main__":
    main()
