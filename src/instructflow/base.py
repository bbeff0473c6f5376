"""Stage base: prepare the base model and tokenizer.

Reads `params.yaml: model` (+ seed). Writes models/base/ (a Hugging Face folder
with safetensors, tokenizer, chat template, lineage.json and a model card) and
reports/base/metrics.json.

Embedded default (`model.base` empty): a BPE tokenizer trained on the corpus and
a tiny Llama-style model pretrained from scratch on data/raw/pretrain.txt.
Otherwise `model.base` names a local Hugging Face model folder (or a hub id,
where the network allows), which is copied in with a chat template added if it
has none.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import config, lineage, training
from .records import read_jsonl, write_json
from .tokenizer import END, train_tokenizer


# --------------------------------------------------------------------------- data
def corpus_texts(raw_dir: Path) -> list[str]:
    """Text the tokenizer learns from: the pretraining lines plus every raw string field."""
    texts = (raw_dir / "pretrain.txt").read_text(encoding="utf-8").splitlines()
    for rec in read_jsonl(raw_dir / "records.jsonl"):
        for m in rec.get("messages") or []:
            if isinstance(m, dict) and isinstance(m.get("content"), str):
                texts.append(m["content"])
        texts += [rec[k] for k in ("chosen", "rejected") if isinstance(rec.get(k), str)]
    return texts


def pretrain_blocks(tokenizer, lines: list[str], block_size: int) -> list[list[int]]:
    """Concatenate lines (each ended by the end token) and cut into equal blocks."""
    ids: list[int] = []
    for enc in tokenizer(lines, add_special_tokens=False)["input_ids"]:
        ids.extend(enc + [tokenizer.convert_tokens_to_ids(END)])
    return [ids[i:i + block_size] for i in range(0, len(ids) - block_size + 1, block_size)]


def tiny_llama(tokenizer, cfg: config.ModelConfig):
    from transformers import LlamaConfig, LlamaForCausalLM

    conf = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_length, tie_word_embeddings=True, rms_norm_eps=1e-5,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(conf)


# --------------------------------------------------------------------------- stage
# Steps between checkpoints a killed pretraining run can resume from (checkpoints/base).
SAVE_STEPS = 100


def pretrain(cfg: config.ModelConfig, seed: int, raw_dir: Path, report: Path, stamp: dict):
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    device = training.setup_torch(seed, cfg.threads)
    tokenizer = train_tokenizer(corpus_texts(raw_dir), cfg.vocab_size)
    model = tiny_llama(tokenizer, cfg)
    lines = (raw_dir / "pretrain.txt").read_text(encoding="utf-8").splitlines()
    blocks = pretrain_blocks(tokenizer, lines, cfg.pretrain_block_size)
    print(f"base: tokenizer {len(tokenizer)} tokens; model {model.num_parameters():,} parameters; "
          f"{len(blocks)} blocks of {cfg.pretrain_block_size} tokens; device {device}")

    checkpoints = Path("checkpoints/base")
    resume = training.prepare_checkpoints(checkpoints, stamp)
    args = TrainingArguments(
        **training.common_args(checkpoints, seed, device),
        max_steps=cfg.pretrain_steps, per_device_train_batch_size=cfg.pretrain_batch_size,
        learning_rate=cfg.learning_rate, save_strategy="steps", save_steps=SAVE_STEPS,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": blocks}),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[training.live_callback(report / "live")],
    )
    if resume:
        print(f"base: resuming the killed run from {checkpoints}")
    trainer.train(resume_from_checkpoint=True if resume else None)
    training.finish_checkpoints(checkpoints)
    return trainer.model, tokenizer, training.final_metrics(trainer.state.log_history) | {
        "parameters": model.num_parameters(), "vocab_size": len(tokenizer), "pretrain_blocks": len(blocks)}


def load_given(cfg: config.ModelConfig):
    """A user's base model: a local folder, or a hub id where the network allows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .tokenizer import ensure_chat_template

    tokenizer = AutoTokenizer.from_pretrained(cfg.base, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(cfg.base, trust_remote_code=False, use_safetensors=True)
    before = len(tokenizer)
    ensure_chat_template(tokenizer)
    if len(tokenizer) != before:
        model.resize_token_embeddings(len(tokenizer))
    if model.generation_config is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, {"parameters": model.num_parameters(), "vocab_size": len(tokenizer)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--raw", default="data/raw")
    ap.add_argument("--out", default="models/base")
    ap.add_argument("--report", default="reports/base")
    args = ap.parse_args(argv)
    cfg, seed = config.load("model", args.params)
    raw, out, report = Path(args.raw), Path(args.out), Path(args.report)

    if cfg.base:
        model, tokenizer, metrics = load_given(cfg)
        inputs, summary, base = ([cfg.base] if Path(cfg.base).exists() else []), "A base model brought by the user.", cfg.base
    else:
        inputs = [raw / "pretrain.txt", raw / "records.jsonl"]
        model, tokenizer, metrics = pretrain(cfg, seed, raw, report, lineage.stamp("base", inputs, cfg, seed))
        summary = "A tiny Llama-style model pretrained from scratch on the instructflow default corpus."
        base = "from scratch"
    stamp = lineage.stamp("base", inputs, cfg, seed)
    training.save_model_folder(model, tokenizer, out, stamp, summary, base, metrics)
    write_json(report / "metrics.json", {**metrics, "lineage": stamp})
    print(f"base: saved to {out}; {metrics}")


if __name__ == "__main__":
    main()
