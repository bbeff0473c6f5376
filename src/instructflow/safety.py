"""Stage safety: safety training on preference pairs, the SFT model as reference.

Reads `params.yaml: safety` (+ seed), models/sft/ and data/filtered/pairs.jsonl.
Writes models/safety/ (Hugging Face folder + lineage + model card) and
reports/safety/ (metrics.json, dvclive curves).

Methods:
- dpo (default): TRL's DPOTrainer with an added SFT term on the chosen replies
  (`loss_type=["sigmoid", "sft"]`). Plain DPO cannot create a refusal the SFT
  model never produces: reward accuracy reaches 1.0 while the chosen reply also
  gets less likely. The SFT term keeps the chosen replies likely.
- refusal_sft: plain SFT on the chosen replies (a simpler baseline).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import config, lineage, training
from .records import read_jsonl, write_json


def load_pairs(path: str) -> list[dict]:
    return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in read_jsonl(path)]


# Steps between checkpoints a killed run can resume from (checkpoints/safety).
SAVE_STEPS = 50


def train_dpo(cfg: config.SafetyConfig, seed: int, device: str, model, tokenizer, pairs, checkpoints, report,
              resume: bool):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        **training.common_args(checkpoints, seed, device),
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        beta=cfg.beta, loss_type=["sigmoid", "sft"], loss_weights=[1.0, cfg.sft_weight],
        max_length=cfg.max_length, gradient_checkpointing=False, save_strategy="steps", save_steps=SAVE_STEPS,
        precompute_ref_log_probs=True,  # the reference is frozen: score it once, not every step
    )
    trainer = DPOTrainer(model=model, ref_model=None, args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list(pairs), callbacks=[training.live_callback(report / "live")])
    trainer.train(resume_from_checkpoint=True if resume else None)
    return trainer


def train_refusal_sft(cfg: config.SafetyConfig, seed: int, device: str, model, tokenizer, pairs, checkpoints, report,
                      resume: bool):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    chats = [{"messages": p["prompt"] + p["chosen"]} for p in pairs]
    args = SFTConfig(
        **training.common_args(checkpoints, seed, device),
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_length, assistant_only_loss=True, gradient_checkpointing=False,
        save_strategy="steps", save_steps=SAVE_STEPS,
    )
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(chats),
                         callbacks=[training.live_callback(report / "live")])
    trainer.train(resume_from_checkpoint=True if resume else None)
    return trainer


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--sft", default="models/sft")
    ap.add_argument("--data", default="data/filtered/pairs.jsonl")
    ap.add_argument("--out", default="models/safety")
    ap.add_argument("--report", default="reports/safety")
    args = ap.parse_args(argv)
    cfg, seed = config.load("safety", args.params)
    out, report, checkpoints = Path(args.out), Path(args.report), Path("checkpoints/safety")

    pairs = load_pairs(args.data)
    print(f"safety: {len(pairs)} preference pairs, method {cfg.method}")
    device = training.setup_torch(seed, cfg.threads)
    model, tokenizer = training.load_model_folder(Path(args.sft))
    stamp = lineage.stamp("safety", [args.sft, args.data], cfg, seed)
    resume = training.prepare_checkpoints(checkpoints, stamp)
    if resume:
        print(f"safety: resuming the killed run from {checkpoints}")
    train = {"dpo": train_dpo, "refusal_sft": train_refusal_sft}[cfg.method]
    trainer = train(cfg, seed, device, model, tokenizer, pairs, checkpoints, report, resume)

    history = trainer.state.log_history
    metrics = training.final_metrics(history) | {"pairs": len(pairs), "method": cfg.method}
    accuracies = [h["rewards/accuracies"] for h in history if "rewards/accuracies" in h]
    if accuracies:
        metrics["final_reward_accuracy"] = round(accuracies[-1], 4)
    training.save_model_folder(trainer.model, tokenizer, out, stamp,
                               f"Safety training ({cfg.method}) on preference pairs; the SFT model is the reference.",
                               args.sft, metrics)
    write_json(report / "metrics.json", {**metrics, "lineage": stamp})
    training.finish_checkpoints(checkpoints)
    print(f"safety: saved to {out}; {metrics}")


if __name__ == "__main__":
    main()
