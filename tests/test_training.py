"""Training on a tiny model built from a config: every trainable parameter moves,
model folders are safe Hugging Face folders with lineage, generation is greedy."""

import json

import pytest

from instructflow import base, config, lineage, training
from instructflow.tokenizer import train_tokenizer

TEXTS = ["What is the opposite of hot?", "cold", "Say cat two times.", "cat cat", "I can't help with that."] * 10
CHATS = [{"messages": [{"role": "user", "content": "What is the opposite of hot?"},
                       {"role": "assistant", "content": "cold"}]},
         {"messages": [{"role": "user", "content": "Say cat two times."},
                       {"role": "assistant", "content": "cat cat"}]}] * 8


@pytest.fixture(scope="module")
def tiny():
    training.setup_torch(0, 1)
    tok = train_tokenizer(TEXTS, 300)
    cfg = config.ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=64)
    return base.tiny_llama(tok, cfg), tok


def test_sft_step_changes_every_parameter(tiny, tmp_path):
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = tiny
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = SFTConfig(**training.common_args(tmp_path, 0, "cpu"), max_steps=3, learning_rate=1e-2,
                     per_device_train_batch_size=4, assistant_only_loss=True, gradient_checkpointing=False,
                     save_strategy="no", max_length=64)
    trainer = SFTTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(CHATS))
    trainer.train()
    for name, p in trainer.model.named_parameters():
        assert not torch.equal(before[name], p.detach()), f"{name} did not change"


def test_model_folder_is_safe_and_stamped(tiny, tmp_path):
    model, tok = tiny
    out = tmp_path / "model"
    stamp = lineage.stamp("sft", [], config.SFTConfig(), 0)
    training.save_model_folder(model, tok, out, stamp, "test model", "from scratch", {"steps": 3})
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "lineage.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "instructflow `sft` model" in card and "learning_rate" in card
    assert json.loads((out / "lineage.json").read_text())["metrics"] == {"steps": 3}
    loaded, loaded_tok = training.load_model(out)
    assert loaded_tok.chat_template == tok.chat_template and loaded_tok.eos_token == "<|end|>"


def test_final_metrics_are_deterministic_fields():
    history = [{"loss": 2.0, "step": 10}, {"eval_loss": 1.5, "step": 10}, {"loss": 1.0, "step": 20},
               {"eval_loss": 1.7, "step": 20}, {"train_runtime": 12.3, "step": 20}]
    assert training.final_metrics(history) == {"steps": 20, "final_train_loss": 1.0, "best_eval_loss": 1.5,
                                               "final_eval_loss": 1.7}


def _sft_run(tok, out, stamp, crash_at=None):
    """Train a fresh tiny model for 12 steps with checkpoints every 3; optionally die at a step."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class Crash(TrainerCallback):
        start_step = None

        def on_train_begin(self, args, state, control, **kw):
            Crash.start_step = state.global_step

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == crash_at:
                raise KeyboardInterrupt("killed")

    training.setup_torch(0, 1)
    cfg = config.ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=64)
    model = base.tiny_llama(tok, cfg)
    resume = training.prepare_checkpoints(out, stamp)
    args = SFTConfig(**training.common_args(out, 0, "cpu"), max_steps=12, learning_rate=1e-2,
                     per_device_train_batch_size=4, assistant_only_loss=True, gradient_checkpointing=False,
                     save_strategy="steps", save_steps=3, max_length=64)
    trainer = SFTTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(CHATS),
                         callbacks=[Crash()])
    trainer.train(resume_from_checkpoint=True if resume else None)
    return Crash.start_step, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


def test_killed_run_resumes_to_the_same_model(tiny, tmp_path):
    import torch

    _, tok = tiny
    stamp = {"stage": "sft", "inputs": {"x": "1"}, "params": {"lr": 0.01}, "seed": 0}
    start, clean = _sft_run(tok, tmp_path / "a", stamp)
    assert start == 0
    with pytest.raises(KeyboardInterrupt):
        _sft_run(tok, tmp_path / "b", stamp, crash_at=7)
    assert (tmp_path / "b" / "checkpoint-6").is_dir()
    start, after = _sft_run(tok, tmp_path / "b", stamp)
    assert start == 6  # picked up at the last checkpoint, not from scratch
    for name in clean:
        assert torch.allclose(clean[name], after[name], atol=1e-6), name
    # other inputs must not resume from these checkpoints
    assert training.prepare_checkpoints(tmp_path / "b", {**stamp, "seed": 1}) is False
    assert not list((tmp_path / "b").glob("checkpoint-*"))


# --------------------------------------------------------------------------- SIGKILL and resume (shared by stage tests)
KILL_DRIVER = """
import os, signal, sys
from transformers import TrainerCallback
from instructflow import training
step, stage = int(sys.argv[1]), sys.argv[2]

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handlers: a hard kill

original = training.recipe_callbacks
training.recipe_callbacks = lambda *a, **k: original(*a, **k) + [Kill()]
import importlib
importlib.import_module("instructflow." + stage).main(sys.argv[3:])
"""


def run_stage(stage: str, argv: list[str], cwd, kill_at: int = 0):
    """Run a stage in a fresh process (1 thread); with kill_at > 0 it is SIGKILLed at that step."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-c", KILL_DRIVER, str(kill_at), stage, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def assert_kill_resume_matches(stage: str, argv: list[str], clean_dir, killed_dir, total_steps: int, out: str,
                               checkpoints: str, seed: int = 0, save_steps: int = 3):
    """SIGKILL at a random step, rerun: it resumes from its checkpoint and ends with the
    weights of an uninterrupted run; the finished run leaves no checkpoints."""
    import random
    import signal

    from safetensors.torch import load_file

    done = run_stage(stage, argv, clean_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    step = random.Random(seed).randint(save_steps + 1, total_steps - 1)  # after the first checkpoint
    killed = run_stage(stage, argv, killed_dir, kill_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert list((killed_dir / checkpoints).glob("checkpoint-*")) and not (killed_dir / out).exists()
    resumed = run_stage(stage, argv, killed_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the killed run" in resumed.stdout + resumed.stderr
    # the weights, or the adapter where the stage stores one (LoRA)
    name = "adapter_model.safetensors" if (clean_dir / out / "adapter_model.safetensors").is_file() \
        else "model.safetensors"
    a, b = load_file(clean_dir / out / name), load_file(killed_dir / out / name)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-6, k
    assert not (killed_dir / checkpoints).exists()
    return step


# --------------------------------------------------------------------------- device, dtype, recipe
def test_dtype_is_float32_on_cpu_even_for_a_bf16_checkpoint(tiny, tmp_path):
    import torch

    model, tok = tiny
    model.to(torch.bfloat16).save_pretrained(tmp_path / "m")
    model.to(torch.float32)
    tok.save_pretrained(tmp_path / "m")
    assert training.torch_dtype("auto", "cpu") == torch.float32
    loaded, _ = training.load_model(tmp_path / "m", "auto", "cpu")
    assert loaded.dtype == torch.float32
    assert training.load_model(tmp_path / "m", "bfloat16", "cpu")[0].dtype == torch.bfloat16  # overridable
    # a training stage asking for bfloat16 on a CPU keeps float32 master weights (bf16 autocast)
    assert training.load_model(tmp_path / "m", "bfloat16", "cpu", train=True)[0].dtype == torch.float32
    assert training.torch_dtype("bfloat16", "cpu", train=True) == torch.float32
    assert training.torch_dtype("bfloat16", "cpu") == torch.bfloat16  # generation: bf16 weights


def test_dtype_fast_is_bfloat16_only_where_the_hardware_has_it(monkeypatch):
    """`fast`: bf16 (autocast in training) on a CPU with native bf16, float32 on one without."""
    import torch

    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    assert training.resolve_dtype("fast", "cpu") == "bfloat16"
    assert training.cpu_autocast("fast", "cpu")
    assert training.torch_dtype("fast", "cpu", train=True) == torch.float32  # master weights
    assert training.torch_dtype("fast", "cpu") == torch.bfloat16             # generation
    monkeypatch.setattr(training, "native_bf16", lambda device: False)
    assert training.resolve_dtype("fast", "cpu") == "float32"
    assert not training.cpu_autocast("fast", "cpu")
    assert training.torch_dtype("fast", "cpu") == torch.float32
    assert [training.resolve_dtype(d, "cpu") for d in ("auto", "bfloat16", "float32")] == \
        ["auto", "bfloat16", "float32"]
    assert "fast" in config.DTYPES


def test_dtype_fast_says_what_it_chose_once_per_device(monkeypatch, capsys):
    """A stage resolves `fast` several times (weights, autocast, generation): one log line each device."""
    monkeypatch.setattr(training, "_ANNOUNCED", set())
    monkeypatch.setattr(training, "native_bf16", lambda device: device == "cuda")
    for _ in range(3):
        training.resolve_dtype("fast", "cpu")
    training.resolve_dtype("fast", "cuda")
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["training: dtype fast -> float32 on this cpu", "training: dtype fast -> bfloat16 on this cuda"]


def test_bfloat16_on_cpu_trains_float32_weights_under_bf16_autocast(tiny, tmp_path):
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    _, tok = tiny
    # a model no other test's trainer has prepared (accelerate wraps a prepared model's forward once)
    model = base.tiny_llama(tok, config.ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                                                    max_length=64))
    assert training.cpu_autocast("bfloat16", "cpu") and not training.cpu_autocast("auto", "cpu")
    assert not training.cpu_autocast("bfloat16", "cuda")  # CUDA: bf16 weights, as before
    assert training.device_args("cpu", torch.float32, autocast=True) == {"bf16": True, "fp16": False, "use_cpu": True}
    assert training.device_args("cpu", torch.float32)["bf16"] is False
    seen = []

    def record(module, inputs):  # what dtype the matmuls run in during a step
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)

    hook = model.model.layers[0].register_forward_pre_hook(record)
    rows, _ = training.supervised_dataset(tok, [c["messages"] for c in CHATS], 64, "test")
    args = SFTConfig(**(training.common_args(tmp_path, 0, "cpu", torch.float32, autocast=True)
                        | training.batching_args("padded", "cpu")),
                     max_steps=2, per_device_train_batch_size=4, max_length=64, save_strategy="no")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = SFTTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(rows))
    trainer.train()
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # the master weights stay float32
    assert any(not torch.equal(before[n], p.detach()) for n, p in trainer.model.named_parameters())


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_trains_in_bf16_where_supported(tiny, tmp_path):
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = tiny
    dtype = training.torch_dtype("auto", "cuda")
    assert dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
    assert training.device_args("cuda", dtype)["bf16"] is (dtype == torch.bfloat16)
    rows, _ = training.supervised_dataset(tok, [c["messages"] for c in CHATS], 64, "test")
    args = SFTConfig(**(training.common_args(tmp_path, 0, "cuda", dtype) | training.batching_args("padding_free", "cuda")),
                     max_steps=2, per_device_train_batch_size=4, max_length=None, save_strategy="no")
    trainer = SFTTrainer(model=model.to(dtype), args=args, processing_class=tok, train_dataset=Dataset.from_list(rows))
    trainer.train()
    assert next(trainer.model.parameters()).is_cuda


@pytest.mark.parametrize("mode", ["padded", "grouped", "packed", "padding_free"])
def test_cuda_batches_pad_lengths_to_a_multiple_and_cpu_batches_do_not(tiny, tmp_path, mode):
    # On CUDA each new batch length costs a new attention plan (make gpu-check: 275 -> 123 ms a step)
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = tiny
    rows, _ = training.supervised_dataset(tok, [c["messages"] for c in CHATS], 64, "test")
    widths = {}
    for device in ("cuda", "cpu"):
        extra = training.batching_args(mode, device)
        assert ("pad_to_multiple_of" in extra) is (device == "cuda")
        args = SFTConfig(**(training.common_args(tmp_path, 0, "cpu") | extra), max_steps=1,
                         per_device_train_batch_size=3, max_length=None if mode == "padding_free" else 64,
                         save_strategy="no")
        trainer = SFTTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(rows))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
        widths[device] = batch["input_ids"].shape[1]
        assert (batch["labels"] != -100).sum() > 0
    # the same rows: CUDA's batch is the CPU's widened to the next multiple, no more
    assert widths["cuda"] % training.CUDA_PAD_MULTIPLE == 0 and widths["cpu"] % training.CUDA_PAD_MULTIPLE != 0
    assert widths["cpu"] < widths["cuda"] < widths["cpu"] + training.CUDA_PAD_MULTIPLE


def test_gpu_check_times_generation_batch_sizes_side_by_side(tiny):
    """gpu-check's generation figures come from the onpolicy stage's own loop, one entry per batch
    size, with the answers compared to the first size's (runs on a CPU too; only the timing is GPU's)."""
    from instructflow import gpucheck

    model, tok = tiny
    prompts = [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(6)]
    out = gpucheck.generation(model, tok, prompts, [1, 3, 6], max_new_tokens=4)
    assert out["prompts"] == 6 and list(out["by_batch_size"]) == ["1", "3", "6"]
    first = out["by_batch_size"]["1"]
    assert first["answers_equal_to_first"] == 6 and first["speedup_vs_first"] == 1.0
    for figures in out["by_batch_size"].values():
        assert 0 <= figures["answers_equal_to_first"] <= 6
        assert figures["seconds"] > 0 and figures["prompts_per_s"] > 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA path")
def test_gpu_check_skips_politely_without_cuda(capsys):
    from instructflow import gpucheck

    assert gpucheck.main([]) == 0
    assert "gpu-check: skipped: no CUDA device" in capsys.readouterr().out


def test_threads_zero_means_the_free_cores(monkeypatch):
    import builtins
    import io
    import os

    n = training.free_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))
    # what is runnable now counts, not the lagging 1-minute average (a just-finished stage's load)
    cores = len(os.sched_getaffinity(0))
    real_open = builtins.open

    def fake(running):
        return lambda path, *a, **k: (io.StringIO(f"{cores + 3}.00 2.00 1.00 {running}/300 4242\n")
                                      if path == "/proc/loadavg" else real_open(path, *a, **k))

    monkeypatch.setattr(builtins, "open", fake(1))  # only this process runs: every core is free
    assert training.free_cores(interval=0) == cores
    monkeypatch.setattr(builtins, "open", fake(cores + 5))  # all busy: still one thread
    assert training.free_cores(interval=0) == 1


def test_recipe_reaches_the_trainer_and_the_model(tiny, tmp_path):
    from transformers import TrainingArguments

    model, _ = tiny
    cfg = config.SFTConfig(weight_decay=0.1, lr_scheduler="linear", warmup_ratio=0.1, grad_accumulation=4,
                           max_grad_norm=0.5, eval_steps=20, save_steps=40, save_total_limit=3, patience=2)
    args = TrainingArguments(**(training.common_args(tmp_path, 0, "cpu") | training.recipe_args(cfg, True)))
    assert (args.weight_decay, args.lr_scheduler_type.value, args.gradient_accumulation_steps, args.max_grad_norm,
            args.save_steps, args.save_total_limit, args.eval_steps) == (0.1, "linear", 4, 0.5, 40, 3, 20)
    assert args.get_warmup_steps(1000) == 100 and args.load_best_model_at_end
    assert training.recipe_args(cfg, False).get("load_best_model_at_end") is None  # no validation, no early stop
    assert [type(c).__name__ for c in training.recipe_callbacks(cfg, True, tmp_path / "live")][0] == \
        "EarlyStoppingCallback"
    assert training.apply_dropout(model, 0.2) == ["attention_dropout"]
    assert model.config.attention_dropout == 0.2
    assert all(layer.self_attn.attention_dropout == 0.2 for layer in model.model.layers)
    training.apply_dropout(model, 0.0)


# --------------------------------------------------------------------------- LM head positions
def test_supervised_head_scores_only_labelled_positions_with_the_same_loss(tiny, monkeypatch):
    """`sft.lm_head: supervised` projects only the positions with a next-token label (TRL
    projects all of them off Triton devices); loss and gradients stay the same."""
    import copy

    import torch
    import trl.trainer.utils as trl_utils
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model, tok = tiny
    model = copy.deepcopy(model)
    trl_utils.add_fused_lm_head(model)
    rows, _ = training.supervised_dataset(tok, [c["messages"] for c in CHATS[:4]], 64, "test")
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(rows)
    supervised = int((batch["labels"][:, 1:] != -100).sum())
    positions = batch["input_ids"].shape[0] * (batch["input_ids"].shape[1] - 1)
    assert 0 < supervised < positions / 3  # most positions are prompt or padding

    projected = []
    original = trl_utils._ChunkedLogProbFunction

    class Spy:
        @staticmethod
        def apply(hidden, *args):
            projected.append(hidden.shape[0])
            return original.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Spy)
    results = {}
    try:
        for which in ("all", "supervised"):
            training.score_positions(which)
            model.zero_grad()
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                        fused_lm_head=True, use_cache=False)
            out.loss.backward()
            results[which] = (out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()})
    finally:
        training.score_positions("all")
    assert projected == [positions, supervised]
    assert results["supervised"][0] == pytest.approx(results["all"][0], rel=1e-6)
    for name, grad in results["all"][1].items():
        assert torch.allclose(results["supervised"][1][name], grad, atol=1e-6), name
    assert trl_utils._use_triton is trl_utils._instructflow_original_use_triton  # `all` restores TRL's own choice


def test_lm_head_auto_follows_the_vocabulary(tiny):
    from transformers import LlamaConfig, LlamaForCausalLM

    model, _ = tiny
    assert training.effective_lm_head("auto", model) == "all"  # the default's small vocabulary: unchanged arithmetic
    big = LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=2))
    assert training.effective_lm_head("auto", big) == "supervised"  # SmolLM2's vocabulary
    assert training.effective_lm_head("all", big) == "all" and training.effective_lm_head("supervised", model) == \
        "supervised"
