"""`make bench`: time a clean `dvc repro` of the default pipeline, side by side per stage.

Copies the tracked tree into a throwaway git repo (so the workspace's outputs and
DVC cache are untouched), runs `dvc repro` there `--repeats` times from clean,
and writes the median wall time of the whole run and of each stage (from
Snakemake's benchmark files) to `benchmarks/bench.json`. Timing never goes into
DVC-tracked files and is never asserted in tests.

`--batching` instead measures SFT batching variants (batching mode x which
positions the LM head scores, and bf16 autocast on the CPU) against today's padded batching in the same run,
on the default corpus and on Dolly with SmolLM2-135M-Instruct, and writes the
medians of interleaved repeats to `benchmarks/batching.json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("ingest", "validate", "format", "filter", "base", "sft", "safety", "evaluate", "report")


def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        if Path(f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dst / f)


def one_run(work: Path, env: dict) -> dict:
    for d in ("data/raw", "data/validated", "data/formatted", "data/filtered", "models", "benchmarks", ".dvc/cache"):
        shutil.rmtree(work / d, ignore_errors=True)
    (work / "dvc.lock").unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(["dvc", "repro"], cwd=work, env=env, check=True, capture_output=True)
    total = time.perf_counter() - start
    stages = {}
    for s in STAGES:
        with open(work / "benchmarks" / f"{s}.tsv") as fh:
            stages[s] = float(next(csv.DictReader(fh, delimiter="\t"))["s"])
    return {"total_s": total, "stages_s": stages}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/bench.json")
    ap.add_argument("--repeats", type=int, default=1, help="clean runs to take the median of")
    ap.add_argument("--batching", action="store_true",
                    help="instead: sft batching modes (supervised tokens/s, real-token fraction) vs padded")
    ap.add_argument("--batching-steps", type=int, default=30, help="optimizer steps per mode, default corpus")
    ap.add_argument("--dolly-steps", type=int, default=5, help="optimizer steps per mode, Dolly on SmolLM2")
    ap.add_argument("--cases", nargs="+", default=["default", "dolly_smollm2"], help="which batching cases to run")
    ap.add_argument("--batching-repeats", type=int, default=3, help="interleaved repeats per variant (median kept)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                    help="batching variants to measure (padded, today's batching, always runs)")
    ap.add_argument("--malloc", action="store_true",
                    help="instead: LoRA training steps of a SmolLM2-shaped model under glibc's malloc and under the "
                         "allocator the Snakefile preloads, in interleaved child processes")
    ap.add_argument("--malloc-steps", type=int, default=7, help="steps per child (the first 2 are warm-up)")
    ap.add_argument("--malloc-repeats", type=int, default=2, help="interleaved children per allocator")
    ap.add_argument("--malloc-layers", type=int, default=SMOLLM2_SHAPE["num_hidden_layers"],
                    help="decoder layers of the SmolLM2-shaped model (tests use fewer)")
    ap.add_argument("--malloc-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.malloc_child:
        print(json.dumps(malloc_child(args.malloc_steps, args.malloc_layers)))
        return
    if args.malloc:
        result = malloc_bench(Path(args.out), args.malloc_steps, args.malloc_repeats, args.malloc_layers)
        print(json.dumps({k: result[k] for k in ("allocators", "ratio_vs_glibc", "same_weights")}, indent=2))
        return
    if args.batching:
        variants = ("padded", *[v for v in args.variants if v != "padded"])
        result = batching_bench(Path(args.out), args.batching_steps, args.dolly_steps, args.batching_repeats,
                                tuple(args.cases), variants)
        print(json.dumps({k: v.get("modes", v) for k, v in result.items() if isinstance(v, dict)}, indent=2))
        return
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for who in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{who}_NAME", "instructflow-bench")
        env.setdefault(f"GIT_{who}_EMAIL", "bench@instructflow.invalid")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "repo"
        copy_tree(work)
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
            subprocess.run(cmd, cwd=work, env=env, check=True)
        runs = [one_run(work, env) for _ in range(args.repeats)]
    result = {
        "what": "clean `dvc repro` of the default params.yaml",
        "cpu_count": os.cpu_count(), "repeats": args.repeats,
        "total_s_median": round(statistics.median(r["total_s"] for r in runs), 1),
        "stages_s_median": {s: round(statistics.median(r["stages_s"][s] for r in runs), 1) for s in STAGES},
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("total_s_median", "stages_s_median")}, indent=2))



# --------------------------------------------------------------------------- batching (`--batching`)
def _default_corpus_case(tmp: Path, n: int):
    """The default corpus's SFT examples, the from-scratch tokenizer and the tiny default model (random init:
    the same arithmetic as the pretrained one)."""
    from . import base, config, generator
    from .tokenizer import train_tokenizer

    cfg = config.load("ingest")[0].generator
    paths = generator.generate(cfg, 1234, tmp / "corpus")
    chats = []
    for t in json.loads(paths["tasks"].read_text(encoding="utf-8")):
        if not (isinstance(t.get("instruction"), str) and isinstance(t.get("output"), str) and t["output"]):
            continue  # the generator's deliberately malformed records
        user = t["instruction"] + (f"\n\n{t['input']}" if t.get("input") else "")
        chats.append([{"role": "user", "content": user}, {"role": "assistant", "content": t["output"]}])
    for line in paths["chats"].read_text(encoding="utf-8").splitlines():
        try:
            chats.append(json.loads(line)["messages"])
        except (ValueError, KeyError, TypeError):
            continue  # the generator's deliberately broken lines
    texts = [m["content"] for c in chats for m in c if isinstance(m.get("content"), str)]
    tokenizer = train_tokenizer(texts + paths["pretrain"].read_text(encoding="utf-8").splitlines(), 1024)
    model_cfg = config.ModelConfig()
    return chats[:n], tokenizer, lambda: base.tiny_llama(tokenizer, model_cfg), model_cfg.max_length


def _dolly_case(n: int):
    """Dolly closed-QA (instruction + context -> response) on SmolLM2-135M-Instruct (the GGUF, dequantised)."""
    import csv as csv_mod

    from . import base
    from .tokenizer import prepare_tokenizer

    dolly = Path(__file__).resolve().parents[2].parent / "shared/data/dolly/dolly_closed_qa_1000.csv"
    gguf = Path(os.environ.get("INSTRUCTFLOW_CACHE", Path.home() / ".cache/instructflow")) / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not dolly.is_file() or not gguf.is_file():
        return None, f"needs {dolly} and {gguf}"
    with open(dolly, newline="", encoding="utf-8") as fh:
        rows = list(csv_mod.DictReader(fh))[:n]
    chats = [[{"role": "user", "content": f"{r['instruction']}\n\n{r['context']}"},
              {"role": "assistant", "content": r["response"]}] for r in rows]
    model, tokenizer = base.load_gguf(gguf)
    prepare_tokenizer(tokenizer, model)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def fresh():
        model.load_state_dict(state)
        return model

    return (chats, tokenizer, fresh, 512), None


def counting_collator(collate, sink: list):
    """`collate`, also appending (real tokens, token slots, supervised tokens, examples) of every
    batch it makes to `sink`. The k-th step trains on sink[k - 1]; the loader fetches one batch
    ahead, so the sink can hold one batch more than the steps taken (never trained on)."""
    def counting(examples):
        batch = collate(examples)
        sink.append((sum(len(e["input_ids"]) for e in examples), batch["input_ids"].numel(),
                     int((batch["labels"] != -100).sum()), len(examples)))
        return batch

    return counting


def _measure(mode: str, rows, tokenizer, make_model, max_length: int, batch_size: int, steps: int, out: Path,
             lm_head: str = "all", dtype: str = "auto"):
    """Train `steps` optimizer steps with one batching mode; time the steps after the first."""
    import time as time_mod

    from transformers import TrainerCallback

    from . import config, sft

    cfg = config.SFTConfig(batching=mode, lm_head=lm_head, batch_size=batch_size, learning_rate=1e-5, epochs=1.0,
                           max_length=max_length, validation_fraction=0.0, patience=0, save_steps=10**6, threads=1,
                           dtype=dtype)
    counts = {"real": 0, "slots": 0, "supervised": 0, "examples": 0}

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.wall = [], []

        # CPU seconds of this process, not wall time: the machine is shared, and other
        # jobs' load would otherwise decide the ranking. With one thread they agree when idle.
        def on_step_begin(self, args, state, control, **kw):
            self.t0, self.w0 = time_mod.process_time(), time_mod.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time_mod.process_time() - self.t0)
            self.wall.append(time_mod.perf_counter() - self.w0)
            if state.global_step >= steps:
                control.should_training_stop = True

    trainer = sft.build_trainer(cfg, 1234, "cpu", make_model(), tokenizer, rows, [], max_length,
                                out / f"{mode}-{lm_head}-{dtype}", out / "live")
    clock, seen = Clock(), []
    trainer.data_collator = counting_collator(trainer.data_collator, seen)
    trainer.add_callback(clock)
    trainer.train()
    timed = seen[1:len(clock.times)]  # the timed steps' batches (all but the first; not the one fetched ahead)
    for real, slots, supervised, n in timed:
        counts["real"] += real
        counts["slots"] += slots
        counts["supervised"] += supervised
        counts["examples"] += n
    seconds = sum(clock.times[1:])
    return {"timed_steps": len(clock.times) - 1, "cpu_seconds": round(seconds, 2),
            "wall_seconds": round(sum(clock.wall[1:]), 2),
            "supervised_tokens_per_s": round(counts["supervised"] / seconds, 1),
            "real_token_fraction": round(counts["real"] / max(1, counts["slots"]), 3),
            "examples_per_s": round(counts["examples"] / seconds, 2)}


# (batching, lm_head, dtype) per measured variant; "padded" with every position scored, in float32, is
# today's batching. `+bf16`: the sft stage's `dtype: bfloat16` on a CPU (float32 weights, bf16 autocast).
VARIANTS = {
    "padded": ("padded", "all", "auto"),
    "grouped": ("grouped", "all", "auto"),
    "packed": ("packed", "all", "auto"),
    "padding_free": ("padding_free", "all", "auto"),
    "padded+supervised_head": ("padded", "supervised", "auto"),
    "grouped+supervised_head": ("grouped", "supervised", "auto"),
    "grouped+supervised_head+bf16": ("grouped", "supervised", "bfloat16"),
}


def summarize(runs: dict[str, list[dict]], baseline: str = "padded") -> dict:
    """Per variant: the median of the repeats (supervised tokens/s, CPU seconds), every repeat's
    tokens/s, and the median's ratio to the baseline's median."""
    import statistics

    out = {}
    for name, reps in runs.items():
        rates = [r["supervised_tokens_per_s"] for r in reps]
        out[name] = {"supervised_tokens_per_s": round(statistics.median(rates), 1),
                     "repeats_tokens_per_s": rates,
                     "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in reps), 2),
                     "wall_seconds": round(statistics.median(r["wall_seconds"] for r in reps), 2),
                     "real_token_fraction": reps[0]["real_token_fraction"], "timed_steps": reps[0]["timed_steps"],
                     "load_average": [r["load_average"] for r in reps]}
    base = out[baseline]["supervised_tokens_per_s"]
    for m in out.values():
        m["speedup_vs_padded"] = round(m["supervised_tokens_per_s"] / base, 2)
    return out


def batching_bench(out: Path, steps: int, dolly_steps: int, repeats: int = 3,
                   cases: tuple = ("default", "dolly_smollm2"), variants: tuple = tuple(VARIANTS)) -> dict:
    """Supervised tokens/s and real-token fraction per batching variant, today's padded batching side by side."""
    import torch

    from . import training

    torch.set_num_threads(1)  # the measurement condition: one thread, as stages run side by side here
    result = {"what": "sft batching variants (batching mode x LM-head positions), 1 torch thread, CPU seconds of "
                      "the timed steps (after the first); median of interleaved repeats; `padded` (every position "
                      "scored) is today's batching",
              "cpu_count": os.cpu_count(), "repeats": repeats, "load_average_at_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        todo = {}
        if "default" in cases:
            todo["default"] = (_default_corpus_case(tmp, 4000), None, 32, steps)
        if "dolly_smollm2" in cases:
            # Batches of 4 at up to 512 tokens: 135M in float32 peaks near 6 GB on a CPU (8 went past 12 GB).
            dolly, why = _dolly_case(200)
            todo["dolly_smollm2"] = (dolly, why, 4, dolly_steps)
        for name, (case, why, batch_size, n_steps) in todo.items():
            if case is None:
                result[name] = {"skipped": why}
                continue
            chats, tokenizer, make_model, max_length = case
            rows, stats = training.supervised_dataset(tokenizer, chats, max_length, f"bench {name}")
            runs: dict[str, list[dict]] = {v: [] for v in variants}
            # Interleaved repeats, the median kept: the machine is shared, and one
            # slow repeat (another job's burst) must not decide a ranking.
            for _ in range(repeats):
                for variant in variants:
                    mode, head, dtype = VARIANTS[variant]
                    training.setup_torch(1234, 1)
                    m = _measure(mode, rows, tokenizer, make_model, max_length, batch_size, n_steps, tmp / name, head,
                                 dtype)
                    m["load_average"] = round(os.getloadavg()[0], 2)
                    print(f"bench batching {name} {variant}: {m}", flush=True)
                    runs[variant].append(m)
            modes = summarize(runs)
            model = make_model()
            result[name] = {"rows": stats["rows"], "too_long_dropped": stats["too_long_dropped"],
                            "supervised_token_share": round(stats["supervised_tokens"] / stats["tokens"], 3),
                            "batch_size": batch_size, "max_length": max_length,
                            "vocab_size": model.config.vocab_size,
                            "auto_picks": f"{sft_auto_batching()}"
                                          f"{'+supervised_head' if training.effective_lm_head('auto', model) == 'supervised' else ''}",
                            "modes": modes,
                            "best": max(modes, key=lambda k: modes[k]["supervised_tokens_per_s"])}
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def sft_auto_batching() -> str:
    """What `sft.batching: auto` picks on this machine's device."""
    import torch

    from . import config, sft

    return sft.effective_batching(config.SFTConfig(), "cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- allocator (`--malloc`)
# SmolLM2-135M's shapes (its config.json): the allocator's effect depends on tensor sizes, so the
# tiny default model would not show it; random weights need no download.
SMOLLM2_SHAPE = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                     tie_word_embeddings=True, rms_norm_eps=1e-5)


MALLOC_REPLY = 48  # tokens per row the LM head is applied to, as a reply of the stages' SFT data


def malloc_child(steps: int, layers: int = SMOLLM2_SHAPE["num_hidden_layers"], batch: int = 8,
                 length: int = 200, reply: int = MALLOC_REPLY) -> dict:
    """One process: LoRA (r 16) steps on a SmolLM2-shaped model, bf16 autocast where the CPU has it
    natively; the median step time after 2 warm-up steps, the last loss and a hash of the trained weights."""
    import hashlib

    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from . import malloc, training
    from .lineage import native_bf16

    training.setup_torch(1234, 0)
    model = LlamaForCausalLM(LlamaConfig(**(SMOLLM2_SHAPE | {"num_hidden_layers": layers})))
    model = get_peft_model(model, training.lora_config(16, 0.0))
    causal = model.base_model.model  # the LlamaForCausalLM under the adapters
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(100, SMOLLM2_SHAPE["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(1))
    bf16 = native_bf16("cpu")
    times, loss = [], None
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            # as the stages' fused LM head (`lm_head: supervised`): the decoder on every position, the
            # vocab-wide projection only on the reply's (the last `reply` tokens of each row)
            hidden = causal.model(input_ids=ids).last_hidden_state[:, -reply - 1:-1]
            logits = causal.lm_head(hidden).float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     ids[:, -reply:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    trained = b"".join(p.detach().float().numpy().tobytes() for p in model.parameters() if p.requires_grad)
    return {"allocator": malloc.current(), "bf16_autocast": bf16, "step_s": [round(t, 3) for t in times],
            "median_step_s": round(statistics.median(times[2:] or times), 3), "loss": loss.item(),
            "weights_sha256": hashlib.sha256(trained).hexdigest()}


def malloc_bench(out: Path, steps: int, repeats: int, layers: int = SMOLLM2_SHAPE["num_hidden_layers"]) -> dict:
    """glibc against the preloaded allocator, children interleaved (glibc, other, glibc, other, ...)."""
    from . import malloc

    lib = malloc.preload()
    variants = {"glibc": ""} | ({lib: lib} if lib else {})
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, preload in variants.items():
            env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | ({"LD_PRELOAD": preload} if preload else {})
            child = subprocess.run([sys.executable, "-m", "instructflow.bench", "--malloc-child",
                                    "--malloc-steps", str(steps), "--malloc-layers", str(layers)], env=env, capture_output=True, text=True)
            if child.returncode:  # say why: a bare CalledProcessError hides the child's traceback
                raise RuntimeError(f"malloc bench child ({name}) exited {child.returncode}:\n{child.stderr[-3000:]}")
            runs[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
    medians = {k: statistics.median(r["median_step_s"] for r in v) for k, v in runs.items()}
    result = {
        "what": f"LoRA r 16 training steps, SmolLM2-135M shapes ({layers} layers, random weights), 8 x 200 tokens "
                f"(the LM head on the last {MALLOC_REPLY} of each), AdamW, "
                "one child process per run, interleaved; median step after 2 warm-up steps",
        "allocators": {k: {"median_step_s": round(v, 3), "ran_with": sorted({r["allocator"] for r in runs[k]})}
                       for k, v in medians.items()},
        "ratio_vs_glibc": {k: round(medians["glibc"] / v, 2) for k, v in medians.items()},
        "same_weights": len({r["weights_sha256"] for v in runs.values() for r in v}) == 1,
        "note": "" if lib else "no tcmalloc on this machine (Debian: libtcmalloc-minimal4): glibc only",
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
