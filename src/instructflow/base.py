"""Stage base: prepare the base model and tokenizer.

Reads `params.yaml: model` (+ seed). Writes models/base/ (a Hugging Face folder
with safetensors, tokenizer, chat template, lineage.json and a model card),
reports/base/metrics.json and reports/base/live/ (pretraining curves; empty for
a model brought by the user).

`model.base` is one of:
- empty: the embedded default, a BPE tokenizer trained on the corpus and a tiny
  Llama-style model pretrained from scratch on data/raw/pretrain.txt;
- a local Hugging Face folder under data/sources/models/ (safetensors only: a
  pickle-only checkpoint is refused);
- a `.gguf` file under data/sources/models/, read by transformers through the
  `gguf` package and dequantised to a normal folder;
- a hub id (with `model.revision`), where the network allows.
Local weights must live under data/sources/models/, a dependency of this stage
in dvc.yaml: new weights at the same path rerun base and everything after it.
The base model's identity (path + file hashes, or hub id + revision) is the
`origin` in the lineage of models/base and of every model trained from it.

A user's tokenizer is made ready for training (tokenizer.prepare_tokenizer):
a chat template, no silent default system prompt, EOS = end of turn, a pad
token that is not EOS; the decisions are in reports/base/metrics.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import config, lineage, training
from .records import hash_fraction, read_jsonl, write_json
from .tokenizer import END, train_tokenizer

# Local base models must live here: a DVC dependency of this stage (dvc.yaml).
MODELS_DIR = Path("data/sources/models")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


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


# --------------------------------------------------------------------------- from scratch
def split_blocks(blocks: list[list[int]], fraction: float) -> tuple[list, list]:
    """Validation blocks by content hash (stable when the corpus grows)."""
    train, val = [], []
    for b in blocks:
        (val if hash_fraction("validation\x00" + ",".join(map(str, b))) < fraction else train).append(b)
    return train, val


def pretrain(cfg: config.ModelConfig, seed: int, raw_dir: Path, report: Path, stamp: dict):
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    device = training.setup_torch(seed, cfg.threads)
    tokenizer = train_tokenizer(corpus_texts(raw_dir), cfg.vocab_size)
    model = tiny_llama(tokenizer, cfg)
    training.apply_dropout(model, cfg.dropout)
    lines = (raw_dir / "pretrain.txt").read_text(encoding="utf-8").splitlines()
    blocks, val = split_blocks(pretrain_blocks(tokenizer, lines, cfg.pretrain_block_size), cfg.validation_fraction)
    print(f"base: tokenizer {len(tokenizer)} tokens; model {model.num_parameters():,} parameters; "
          f"{len(blocks)} training and {len(val)} validation blocks of {cfg.pretrain_block_size} tokens")

    checkpoints = Path("checkpoints/base")
    resume = training.prepare_checkpoints(checkpoints, stamp)
    args = TrainingArguments(
        **(training.common_args(checkpoints, seed, device, autocast=training.cpu_autocast(cfg.dtype, device))
           | training.recipe_args(cfg, bool(val))),
        max_steps=cfg.pretrain_steps, per_device_train_batch_size=cfg.pretrain_batch_size,
        per_device_eval_batch_size=cfg.pretrain_batch_size, learning_rate=cfg.learning_rate,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": blocks}),
        eval_dataset=Dataset.from_dict({"input_ids": val}) if val else None,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=training.recipe_callbacks(cfg, bool(val), report / "live"),
    )
    if resume:
        print(f"base: resuming the killed run from {checkpoints}")
    trainer.train(resume_from_checkpoint=True if resume else None)
    training.finish_checkpoints(checkpoints)
    return trainer.model, tokenizer, training.final_metrics(trainer.state.log_history) | {
        "parameters": model.num_parameters(), "vocab_size": len(tokenizer), "pretrain_blocks": len(blocks),
        "validation_blocks": len(val)}


# --------------------------------------------------------------------------- a user's model
class BaseModelError(ValueError):
    """`model.base` names something this stage cannot (or must not) load; the message says why."""


def _digest(files: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256("".join(f"{p}\0{h}\n" for p, h in sorted(files.items())).encode()).hexdigest()


def resolve_base(cfg: config.ModelConfig) -> dict:
    """What `model.base` names, as the origin recorded in every later lineage.

    Local: {kind: folder|gguf, path, sha256 over its files, files}. Hub: {kind: hub, id, revision}."""
    import os

    name, path = cfg.base, Path(cfg.base)
    is_hub_id = not path.exists() and name.count("/") == 1 and not name.startswith((".", "/", "data/")) \
        and not name.endswith(".gguf")
    if is_hub_id:
        return {"kind": "hub", "id": name, "revision": cfg.revision or "main"}
    if not path.exists():
        raise BaseModelError(f"params.yaml: `model.base`: {name} does not exist (a folder or .gguf file under "
                             f"{MODELS_DIR}/, or a hub id like `org/name`)")
    inside = Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(MODELS_DIR)))
    if not inside:
        raise BaseModelError(f"params.yaml: `model.base`: {name} is outside {MODELS_DIR}/, which is the base "
                             f"stage's DVC dependency: new weights there would rerun nothing. Copy it into "
                             f"{MODELS_DIR}/ and point `model.base` at the copy.")
    if path.is_file():
        if path.suffix != ".gguf":
            raise BaseModelError(f"params.yaml: `model.base`: {name} is a file but not a .gguf; give a Hugging Face "
                                 "model folder (safetensors) or a .gguf file")
        kind = "gguf"
    else:
        weights = sorted(p.name for p in path.iterdir() if p.is_file())
        if not any(w.endswith(".safetensors") for w in weights):
            pickled = [w for w in weights if w.endswith(PICKLE_SUFFIXES)]
            why = (f"it holds only pickled weights ({', '.join(pickled)}), which can run code when loaded; "
                   "convert them to safetensors (e.g. `save_pretrained(..., safe_serialization=True)` where you "
                   "trust the file)") if pickled else "it holds no *.safetensors weights"
            raise BaseModelError(f"params.yaml: `model.base`: refused {name}: {why}")
        if not (path / "config.json").is_file():
            raise BaseModelError(f"params.yaml: `model.base`: {name} has no config.json (not a Hugging Face folder)")
        kind = "folder"
    files = lineage.hash_inputs([path])
    return {"kind": kind, "path": name, "sha256": _digest(files), "files": files}


def load_gguf(path: Path, dtype=None):
    """A .gguf file as a plain transformers model (dequantised by the `gguf` package) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, trust_remote_code=False,
                                                 dtype=dtype)
    # Dequantised on load: the weights are plain tensors now. A model that still says
    # "gguf quantization" refuses training and saves a folder that does not load as a normal one.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.hf_quantizer, model.is_quantized = None, False
    return model, tokenizer


def load_given(cfg: config.ModelConfig, origin: dict, device: str = "cpu"):
    """A user's base model, in the stage's dtype, with its tokenizer made ready for training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .tokenizer import prepare_tokenizer

    # the folder later stages train from: on a CPU float32 even for bfloat16 (bf16 autocast in training)
    kw = {"trust_remote_code": False, "dtype": training.torch_dtype(cfg.dtype, device, train=True)}
    if origin["kind"] == "gguf":
        model, tokenizer = load_gguf(Path(origin["path"]), kw["dtype"])
    elif origin["kind"] == "hub":
        revision = cfg.revision or None
        tokenizer = AutoTokenizer.from_pretrained(origin["id"], revision=revision, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(origin["id"], revision=revision, use_safetensors=True, **kw)
        origin["commit"] = getattr(model.config, "_commit_hash", None)
    else:
        tokenizer = AutoTokenizer.from_pretrained(origin["path"], trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(origin["path"], use_safetensors=True, **kw)
    decisions = prepare_tokenizer(tokenizer, model, cfg.default_system_prompt)
    conf = model.config.get_text_config()
    return model, tokenizer, {"parameters": model.num_parameters(), "vocab_size": len(tokenizer),
                              "context_length": getattr(conf, "max_position_embeddings", None),
                              "dtype": str(model.dtype).removeprefix("torch."), "tokenizer": decisions}


# --------------------------------------------------------------------------- stage
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
        origin = resolve_base(cfg)
        device = training.setup_torch(seed, cfg.threads)
        inputs = [cfg.base] if origin["kind"] != "hub" else []
        model, tokenizer, metrics = load_given(cfg, origin, device)
        summary = f"A base model brought by the user ({origin['kind']}), made ready for chat training."
        base = cfg.base + (f"@{origin['revision']}" if origin["kind"] == "hub" else "")
        (report / "live").mkdir(parents=True, exist_ok=True)  # no pretraining curves; the output still exists
        print(f"base: {cfg.base} ({origin['kind']}); tokenizer: {metrics['tokenizer']}")
    else:
        inputs = [raw / "pretrain.txt", raw / "records.jsonl"]
        origin = {"kind": "scratch"}
        model, tokenizer, metrics = pretrain(cfg, seed, raw, report, lineage.stamp("base", inputs, cfg, seed))
        summary = "A tiny Llama-style model pretrained from scratch on the instructflow default corpus."
        base = "from scratch"
    if metrics.get("tokenizer", {}).get("added_tokens"):
        origin["added_tokens"] = metrics["tokenizer"]["added_tokens"]
    stamp = lineage.stamp("base", inputs, cfg, seed) | {"origin": {k: v for k, v in origin.items() if k != "files"}}
    training.save_model_folder(model, tokenizer, out, stamp, summary, base, metrics)
    write_json(report / "metrics.json", {**metrics, "origin": stamp["origin"], "lineage": stamp})
    print(f"base: saved to {out}; {metrics}")


if __name__ == "__main__":
    main()
