"""What the training stages share: device set-up, trainer defaults, curves, saving.

Kept in one place so base, sft and safety make the same choices:
- CUDA with bf16 when there is a GPU; plain fp32 on the CPU, where TRL's
  defaults (bf16, gradient checkpointing) are wrong.
- Deterministic: fixed seeds, deterministic kernels, a fixed thread count.
- Training curves go to dvclive without timestamps (they are DVC-tracked plots).
- Model folders are Hugging Face folders (safetensors) with a lineage stamp and
  a model card; nothing pickled (no training_args.bin) goes into them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .records import write_json

CURVE_KEYS = ("loss", "eval_loss", "learning_rate", "grad_norm", "rewards/accuracies", "rewards/margins")


def setup_torch(seed: int, threads: int) -> str:
    """Seed everything, pin the thread count, return the device kind ('cuda' or 'cpu')."""
    import torch
    from transformers import set_seed

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(max(1, threads))
    set_seed(seed, deterministic=True)
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_args(device: str) -> dict:
    """TrainingArguments fields that depend on the device."""
    import torch

    if device == "cuda":
        return {"bf16": torch.cuda.is_bf16_supported(), "fp16": False, "use_cpu": False}
    return {"bf16": False, "fp16": False, "use_cpu": True}


def common_args(out_dir: Path, seed: int, device: str) -> dict:
    """Defaults every trainer shares. Checkpoints live outside the DVC outputs."""
    return {
        "output_dir": str(out_dir), "seed": seed, "data_seed": seed,
        "report_to": "none", "disable_tqdm": True, "logging_steps": 10,
        "dataloader_num_workers": 0,
        "lr_scheduler_type": "cosine", "warmup_steps": 0.05, "weight_decay": 0.0,
        **device_args(device),
    }


def prepare_checkpoints(directory: Path, stamp: dict) -> bool:
    """Make `directory` ready for this run; True when a killed run with the same
    inputs, params, seed and code left a checkpoint to resume from.

    Checkpoints live outside the DVC outputs (DVC deletes those before a rerun);
    a fingerprint of the lineage stamp keeps a run from resuming someone else's."""
    fingerprint = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()
    marker = directory / "fingerprint.txt"
    if marker.is_file() and marker.read_text() == fingerprint and any(directory.glob("checkpoint-*")):
        return True
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    marker.write_text(fingerprint)
    return False


def finish_checkpoints(directory: Path) -> None:
    """A finished run needs no checkpoints: the next run with the same inputs starts clean."""
    shutil.rmtree(directory, ignore_errors=True)


def live_callback(live_dir: Path):
    """A TrainerCallback that writes loss curves with dvclive, step-indexed, no timestamps.

    A resumed run replays the restored log history first, so its curves are the
    same as those of a run that was never interrupted."""
    from dvclive import Live
    from transformers import TrainerCallback

    class LiveCurves(TrainerCallback):
        def __init__(self):
            self.live = Live(str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)

        def _log(self, logs: dict, step: int) -> None:
            values = {k: logs[k] for k in CURVE_KEYS if k in logs}
            if not values:
                return
            self.live.step = step
            for key, value in values.items():
                self.live.log_metric(key.replace("/", "_"), round(float(value), 6), timestamp=False)
            self.live.next_step()

        def on_train_begin(self, args, state, control, **kw):
            for logs in state.log_history:
                self._log(logs, logs.get("step", 0))

        def on_log(self, args, state, control, logs=None, **kw):
            self._log(logs or {}, state.global_step)

        def on_train_end(self, args, state, control, **kw):
            self.live.end()

    return LiveCurves()


def final_metrics(log_history: list[dict]) -> dict:
    """Deterministic summary of a trainer's log: last train loss, best eval loss, steps."""
    train = [h["loss"] for h in log_history if "loss" in h]
    evals = [h["eval_loss"] for h in log_history if "eval_loss" in h]
    steps = max((h.get("step", 0) for h in log_history), default=0)
    out = {"steps": steps, "final_train_loss": round(train[-1], 4) if train else None}
    if evals:
        out |= {"best_eval_loss": round(min(evals), 4), "final_eval_loss": round(evals[-1], 4)}
    return out


def save_model_folder(model, tokenizer, out: Path, stamp: dict, summary: str, base: str, metrics: dict) -> None:
    """save_pretrained (safetensors) + tokenizer + lineage.json + README.md model card."""
    from . import modelcard

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    write_json(out / "lineage.json", {**stamp, "metrics": metrics, "base": base})
    modelcard.write(out, stamp, summary, base, metrics)


def load_model_folder(path: Path):
    """Load a Hugging Face model folder safely (safetensors only, no remote code)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False, use_safetensors=True)
    return model, tokenizer
