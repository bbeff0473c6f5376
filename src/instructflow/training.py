"""What the training stages share: device set-up, the recipe, loss masks, curves, saving.

Kept in one place so base, sft and safety make the same choices:
- CUDA with bf16 weights when the GPU supports it; plain fp32 on the CPU (a bf16
  checkpoint is upcast: bf16 matmuls on a CPU are slow and lossy), overridable.
- The seed's recipe (AdamW weight decay, schedule and warm-up, dropout,
  accumulation, clipping, early stopping, checkpoint interval and count) from
  each stage's params section, the same way for every stage.
- Loss on assistant tokens only, for any chat template: labels are built here,
  from `{% generation %}` markers when the template has them, otherwise from
  where each assistant turn starts and ends in the rendering.
- Deterministic: fixed seeds, deterministic kernels, a fixed thread count.
- Training curves go to dvclive without timestamps (they are DVC-tracked plots).
- Model folders are Hugging Face folders (safetensors) with a lineage stamp and
  a model card; nothing pickled (no training_args.bin) goes into them. LoRA and
  prompt tuning store only the PEFT adapter and a pointer to the folder it
  applies to (`adapter_base.json`: workspace path + sha256); `load_model` loads
  base + adapter(s) for every consumer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from . import malloc
from .lineage import native_bf16
from .records import write_json

CURVE_KEYS = ("loss", "eval_loss", "learning_rate", "grad_norm", "rewards/accuracies", "rewards/margins")


# --------------------------------------------------------------------------- device
def free_cores(samples: int = 5, interval: float = 0.05) -> int:
    """Cores this process may use that other work is not already using (at least 1).

    Two threads per process on a 2-core machine shared with another job ran about
    6x slower than one: threads beyond the idle cores only contend. Busy cores are
    the threads runnable right now (/proc/loadavg's running count, less this one,
    median of a few samples), not the 1-minute load average: that lags, so a stage
    started right after another saw the finished stage's load and took one thread
    on an idle machine. Without /proc, the load average it is."""
    import statistics
    import time

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        running = []
        for i in range(samples):
            if i:
                time.sleep(interval)
            with open("/proc/loadavg") as fh:
                running.append(int(fh.read().split()[3].split("/")[0]))
        busy = statistics.median(running) - 1
    except (OSError, ValueError, IndexError):
        try:
            busy = os.getloadavg()[0]
        except OSError:
            busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def setup_torch(seed: int, threads: int) -> str:
    """Seed everything, pin the thread count (0 = the free cores), return 'cuda' or 'cpu'."""
    import torch
    from transformers import set_seed

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    n = threads if threads > 0 else free_cores()
    torch.set_num_threads(n)
    set_seed(seed, deterministic=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"training: device {device}, {n} torch thread(s), allocator {malloc.current()}")
    return device


def resolve_dtype(name: str, device: str) -> str:
    """A stage's `dtype` param as run here: `fast` is bfloat16 where the hardware runs it natively
    and float32 elsewhere (a profile that must fit a time budget on any machine); the others as given."""
    if name == "fast":
        name = "bfloat16" if native_bf16(device) else "float32"
        if device not in _ANNOUNCED:  # a stage resolves it more than once (weights, autocast): say it once
            _ANNOUNCED.add(device)
            print(f"training: dtype fast -> {name} on this {device}", flush=True)
    return name


_ANNOUNCED: set[str] = set()


def torch_dtype(name: str, device: str, train: bool = False):
    """The weight dtype: `auto` = bf16 on a CUDA GPU that supports it, float32 elsewhere;
    `fast` = bf16 wherever it is native (`resolve_dtype`).

    On a CPU, `bfloat16` for training keeps float32 weights (the optimizer's master copy) and
    runs the steps under bf16 autocast (`cpu_autocast`); for generation the weights themselves
    are bf16. On this project's CPU (AVX512-BF16) either is about twice as fast as float32
    (README, "Mixed precision on a CPU")."""
    import torch

    name = resolve_dtype(name, device)
    if name == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if device == "cpu" and name == "bfloat16":
        if train:
            return torch.float32
        warn_emulated_bf16()
    return getattr(torch, name)


def cpu_autocast(name: str, device: str) -> bool:
    """Whether a training stage on a CPU runs its steps under bf16 autocast (its `dtype` is bfloat16,
    or `fast` on a CPU with native bf16)."""
    if device == "cpu" and resolve_dtype(name, device) == "bfloat16":
        warn_emulated_bf16()
        return True
    return False


def warn_emulated_bf16() -> None:
    """bf16 on a CPU without native bf16 instructions is emulated: slower than float32, say so."""
    if not native_bf16("cpu"):
        print("training: warning: dtype bfloat16 on a CPU without native bf16 (AVX512-BF16 or AMX) is emulated "
              "and slower than float32; set the stage's `dtype: auto`", flush=True)


def device_args(device: str, dtype=None, autocast: bool = False) -> dict:
    """TrainingArguments fields that depend on the device (and the weight dtype); `autocast`: bf16
    mixed precision on a CPU (float32 weights, bf16 compute)."""
    import torch

    if device == "cuda":
        dtype = dtype or torch_dtype("auto", device)
        return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16, "use_cpu": False}
    return {"bf16": bool(autocast), "fp16": False, "use_cpu": True}


def common_args(out_dir: Path, seed: int, device: str, dtype=None, autocast: bool = False) -> dict:
    """Defaults every trainer shares. Checkpoints live outside the DVC outputs."""
    return {
        "output_dir": str(out_dir), "seed": seed, "data_seed": seed,
        "report_to": "none", "disable_tqdm": True, "logging_steps": 10,
        "dataloader_num_workers": 0,
        "lr_scheduler_type": "cosine", "warmup_steps": 0.05, "weight_decay": 0.0,
        **device_args(device, dtype, autocast),
    }


# --------------------------------------------------------------------------- recipe
def recipe_args(cfg, validation: bool) -> dict:
    """TrainingArguments for the seed's recipe, from a stage's RecipeConfig section."""
    args = {
        "optim": "adamw_torch", "weight_decay": cfg.weight_decay, "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_ratio, "gradient_accumulation_steps": cfg.grad_accumulation,
        "max_grad_norm": cfg.max_grad_norm, "save_strategy": "steps", "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
    }
    if validation:
        args |= {"eval_strategy": "steps", "eval_steps": cfg.eval_steps}
        if cfg.patience:
            args |= {"load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False}
    return args


def recipe_callbacks(cfg, validation: bool, live_dir: Path) -> list:
    from transformers import EarlyStoppingCallback

    out = [live_callback(live_dir)]
    if validation and cfg.patience:
        out.insert(0, EarlyStoppingCallback(early_stopping_patience=cfg.patience))
    return out


DROPOUT_FIELDS = ("attention_dropout", "hidden_dropout", "dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop",
                  "hidden_dropout_prob", "attention_probs_dropout_prob", "activation_dropout")


def apply_dropout(model, p: float) -> list[str]:
    """Set dropout on the model config and on the built modules (which copied it at
    construction); return the config fields set. Llama-style models have only
    attention dropout."""
    import torch

    conf = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    names = [n for n in DROPOUT_FIELDS if isinstance(getattr(conf, n, None), (int, float))
             and not isinstance(getattr(conf, n), bool)]
    for n in names:
        setattr(conf, n, p)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        for n in names:
            if isinstance(getattr(module, n, None), float):
                setattr(module, n, p)
    return names


def model_max_length(model, tokenizer, wanted: int) -> int:
    """`wanted` when set (> 0), else the model's context length."""
    if wanted > 0:
        return wanted
    conf = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limits = [getattr(conf, "max_position_embeddings", None), tokenizer.model_max_length]
    return min(x for x in limits if isinstance(x, int) and 0 < x < 10**7)


# --------------------------------------------------------------------------- loss masks
class TemplateError(ValueError):
    """The chat template cannot give an assistant-only loss mask for an example."""


def has_generation_markers(template: str | None) -> bool:
    """True when the template marks assistant text with {% generation %} ... {% endgeneration %}."""
    import re

    return bool(template) and re.search(r"\{%-?\s*generation\s*-?%\}", template) is not None


def _ids(tokenizer, messages, **kw) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)["input_ids"])


def supervised_rows(tokenizer, messages: list[dict], open_end: bool = False) -> list[dict]:
    """`input_ids` + `labels` (-100 outside assistant text) for one conversation.

    With `{% generation %}` markers the template's own assistant mask is used.
    Otherwise each assistant turn i is located by rendering the messages before
    it (with the generation prompt) and up to it: the tokens in between are the
    reply and its end of turn. Every assistant turn is supervised, not just the
    last. A template that renders earlier turns differently once later ones
    follow (not prefix-preserving) gets one row per assistant turn instead.

    `open_end`: the last reply was cut at a generation budget (then trimmed to its last whole
    sentence), so its end of turn is not supervised: training on it would teach the model to stop
    wherever the budget happened to fall. See `unsupervise_end`."""
    rows = _supervised_rows(tokenizer, messages)
    if open_end and messages[-1]["role"] == "assistant":
        # rows[0] is the whole conversation, which always holds the last reply (the other rows
        # are earlier turns of a template that rewrites history)
        rows[0] = unsupervise_end(tokenizer, rows[0], messages[-1]["content"])
    return rows


def unsupervise_end(tokenizer, row: dict, reply: str) -> dict:
    """`row` with the tokens after the last supervised reply's text (its end of turn) unlabelled.

    The boundary is found by decoding: the longest supervised prefix of the last span whose text
    ends with the reply. A template that renders the reply so that it cannot be found raises."""
    labels = list(row["labels"])
    end = max(i for i, t in enumerate(labels) if t != -100) + 1
    start = end
    while start > 0 and labels[start - 1] != -100:
        start -= 1
    tail = reply.rstrip()[-40:]
    ids = row["input_ids"]
    for cut in range(end, start, -1):
        if tokenizer.decode(ids[start:cut], skip_special_tokens=False,
                            clean_up_tokenization_spaces=False).endswith(tail):
            labels[cut:end] = [-100] * (end - cut)
            return {**row, "labels": labels}
    raise TemplateError("the chat template does not render the cut-off reply's text as given: "
                        "its end of turn cannot be left out of the loss")


def _supervised_rows(tokenizer, messages: list[dict]) -> list[dict]:
    if has_generation_markers(tokenizer.chat_template):
        enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
        if 1 not in mask:
            raise TemplateError("the chat template's {% generation %} markers mark no token of the reply")
        return [{"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}]
    full = _ids(tokenizer, messages)
    labels, rows = [-100] * len(full), []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _ids(tokenizer, messages[:i], add_generation_prompt=True)
        upto = _ids(tokenizer, messages[:i + 1])
        start = len(os.path.commonprefix([before, upto]))
        if start == len(upto):
            raise TemplateError(f"the chat template renders assistant turn {i} as no tokens")
        if full[:len(upto)] == upto:
            labels[start:len(upto)] = full[start:len(upto)]
        else:  # not prefix-preserving: this turn becomes its own row
            rows.append({"input_ids": upto, "labels": [-100] * start + upto[start:]})
    if any(t != -100 for t in labels):
        rows.insert(0, {"input_ids": full, "labels": labels})
    return rows


def supervised_dataset(tokenizer, conversations: list[list[dict]], max_length: int, what: str,
                       open_ends: list[bool] | None = None, sources: list[str] | None = None):
    """Tokenized rows with assistant-only labels; rows longer than `max_length` are
    dropped and counted (never silently cut out of the loss), per source when `sources[n]` names
    conversation n's. `open_ends[n]`: conversation n's last reply was cut at a budget
    (`supervised_rows`). Returns (rows, stats)."""
    from collections import Counter

    rows, too_long, supervised, tokens = [], 0, 0, 0
    by_source: Counter = Counter()
    for n, messages in enumerate(conversations):
        try:
            made = supervised_rows(tokenizer, messages, bool(open_ends and open_ends[n]))
        except TemplateError as err:
            raise TemplateError(f"{what}: example {n + 1}: {err}") from None
        for row in made:
            if len(row["input_ids"]) > max_length:
                too_long += 1
                if sources is not None:
                    by_source[sources[n]] += 1
                continue
            rows.append(row)
            tokens += len(row["input_ids"])
            supervised += sum(t != -100 for t in row["labels"])
    if too_long:
        print(f"{what}: {too_long} example(s) longer than max_length={max_length} tokens dropped (counted in metrics)")
    stats = {"rows": len(rows), "too_long_dropped": too_long, "tokens": tokens, "supervised_tokens": supervised}
    if sources is not None:
        stats["too_long_dropped_by_source"] = dict(sorted(by_source.items()))
    if open_ends is not None:
        stats["open_ends"] = sum(map(bool, open_ends))
    return rows, stats


def effective_batching(batching: str, device: str, prompt_tuned: bool = False, cpu_auto: str = "grouped",
                       gpu_auto: str = "packed") -> str:
    """The batching mode to use (`sft.batching`, `safety.batching`). `auto`: `cpu_auto` on a CPU (for
    sft length-grouped batches had the most supervised tokens/s, `make bench`: concatenated batches
    pay for a block-diagonal mask there), `gpu_auto` on a GPU (for sft best-fit packing: on an H200
    with SmolLM2-shaped weights, batches of 16, `make gpu-check`, 8054 supervised tokens/s against
    4249 grouped, 4133 padded and 3674 padding-free, every step about as long, so the mode that puts
    the most tokens in a step wins). PEFT prompt tuning drops position ids, so concatenated batches
    would attend across examples: a soft prompt pads instead."""
    if batching == "auto":
        batching = cpu_auto if device == "cpu" else gpu_auto
    if prompt_tuned and batching in ("packed", "padding_free"):
        return "grouped"
    return batching


# On CUDA every new batch length costs a new attention plan (cuDNN's SDPA builds and caches one per
# shape): with batches padded to their longest row a 135M step took 275 ms on an H200, against 121 ms
# when the same shapes came again and 123 ms with lengths padded to a multiple of 64 (`make gpu-check`'s
# measurement, README). A CPU has no such cache, and padding there is wasted work.
CUDA_PAD_MULTIPLE = 64


def batching_args(batching: str, device: str = "cpu") -> dict:
    """SFTConfig fields for a batching mode (see `sft.batching`; chosen by `make bench` and `make gpu-check`)."""
    args = {
        "padded": {"packing": False, "padding_free": False, "train_sampling_strategy": "random"},
        "grouped": {"packing": False, "padding_free": False, "train_sampling_strategy": "group_by_length"},
        "packed": {"packing": True, "packing_strategy": "bfd", "padding_free": True},
        "padding_free": {"packing": False, "padding_free": True},
    }[batching]
    return args | pad_args(device)


def pad_args(device: str) -> dict:
    """Trainer-config padding for a device: lengths to a multiple of `CUDA_PAD_MULTIPLE` on CUDA."""
    return {"pad_to_multiple_of": CUDA_PAD_MULTIPLE} if device == "cuda" else {}


# Vocabulary from which `lm_head: auto` scores only the supervised positions: every real
# pretrained model (SmolLM2: 49152 tokens, where the head is ~20 % of a step's compute). The
# tiny from-scratch default (1024) keeps scoring every position so that its committed
# outputs stay bit-identical, although it gains too (`make bench`: 2.3x on padded batches);
# `sft.lm_head: supervised` opts in.
SUPERVISED_HEAD_VOCAB = 8192


def effective_lm_head(setting: str, model) -> str:
    """`all` or `supervised` for an `lm_head` setting (see `sft.lm_head`)."""
    if setting != "auto":
        return setting
    conf = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return "supervised" if getattr(conf, "vocab_size", 0) >= SUPERVISED_HEAD_VOCAB else "all"


def score_positions(which: str) -> None:
    """Which positions TRL's fused LM head projects in this process: `supervised` or `all`.

    TRL (>= 1.14) computes the SFT loss with a tiled LM head that never builds the full
    logits, and projects only the positions with a label on Triton devices; elsewhere it
    projects every position (to keep tile shapes fixed for compiled backends), so on a CPU
    prompt and padding positions pay for a vocab-wide projection whose result the loss
    discards. The loss is the same either way (tested); the choice is a module switch in
    TRL, so it holds for every trainer this process builds after the call."""
    import trl.trainer.utils as trl_utils

    if not hasattr(trl_utils, "_use_triton"):
        raise RuntimeError("this TRL has no fused-LM-head switch (trl.trainer.utils._use_triton); set "
                           "`sft.lm_head: all`")
    original = getattr(trl_utils, "_instructflow_original_use_triton", trl_utils._use_triton)
    trl_utils._instructflow_original_use_triton = original
    trl_utils._use_triton = _always_compact if which == "supervised" else original


def _always_compact(device) -> bool:
    return True


# --------------------------------------------------------------------------- lineage of the base model
def origin_of(folder: Path) -> dict | None:
    """The base model's identity carried in a model folder's lineage (path + hashes, or hub id + revision)."""
    path = Path(folder) / "lineage.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("origin")


def new_token_ids(folder: Path, tokenizer) -> list[int]:
    """Ids of the tokens the base stage added to a user's tokenizer (chat template, pad).

    Their embedding rows start at the mean of the others (transformers' resize).
    LoRA does not train them: TRL computes the loss from `lm_head.weight` directly,
    so PEFT's trainable-token wrapper on a (tied) head is unsupported. The stages
    report how many there are; `method: full` trains them."""
    tokens = (origin_of(folder) or {}).get("added_tokens") or []
    return sorted(tokenizer.convert_tokens_to_ids(tokens))


def lora_config(r: int, dropout: float):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")


# --------------------------------------------------------------------------- checkpoints
def prepare_checkpoints(directory: Path, stamp: dict) -> bool:
    """Make `directory` ready for this run; True when a killed run with the same
    inputs, params, seed and code left a checkpoint to resume from.

    Checkpoints live outside the DVC outputs (DVC deletes those before a rerun);
    a fingerprint of the lineage stamp keeps a run from resuming someone else's."""
    fingerprint = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()
    marker = directory / "fingerprint.txt"
    if marker.is_file() and marker.read_text() == fingerprint and any(directory.glob("checkpoint-*")):
        return True
    if int(os.environ.get("RANK", "0")) != 0:
        # Another process of a distributed run (torchrun/accelerate) only reads: the
        # first process clears the folder, and both decide "fresh start" either way.
        return False
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    marker.write_text(fingerprint)
    return False


def finish_checkpoints(directory: Path) -> None:
    """A finished run needs no checkpoints: the next run with the same inputs starts clean."""
    shutil.rmtree(directory, ignore_errors=True)


def end_processes() -> None:
    """Close a distributed run (torchrun/accelerate) cleanly: every process waits for
    the first to finish saving, then the process group is destroyed.

    Left open, gloo's worker threads are still joinable when the interpreter exits,
    and a rank can abort ("terminate called without an active exception") after the
    model was saved, failing the launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def live_callback(live_dir: Path):
    """A TrainerCallback that writes loss curves with dvclive, step-indexed, no timestamps.

    A resumed run replays the restored log history first, so its curves are the
    same as those of a run that was never interrupted."""
    from dvclive import Live
    from transformers import TrainerCallback

    class LiveCurves(TrainerCallback):
        # Only the main process writes the curves: with several processes (torchrun,
        # accelerate) every rank would otherwise clear and rewrite the same dvclive
        # files, and one rank could read a file another is truncating.
        def __init__(self):
            self.live = None

        def _log(self, logs: dict, step: int) -> None:
            values = {k: logs[k] for k in CURVE_KEYS if k in logs}
            if self.live is None or not values:
                return
            self.live.step = step
            for key, value in values.items():
                self.live.log_metric(key.replace("/", "_"), round(float(value), 6), timestamp=False)
            self.live.next_step()

        def on_train_begin(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            self.live = Live(str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)
            for logs in state.log_history:
                self._log(logs, logs.get("step", 0))

        def on_log(self, args, state, control, logs=None, **kw):
            self._log(logs or {}, state.global_step)

        def on_train_end(self, args, state, control, **kw):
            if self.live is not None:
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


# --------------------------------------------------------------------------- adapter folders
# A LoRA or prompt-tuning stage stores its PEFT adapter (adapter_model.safetensors +
# adapter_config.json), the tokenizer, lineage.json and the model card, plus this
# pointer to the folder the adapter applies to. A merged copy would cost a full model
# per stage in the DVC cache (538 MB for SmolLM2-135M); the adapter is a few MB.
POINTER = "adapter_base.json"
POINTER_FORMAT = 1


def is_adapter_folder(path: Path) -> bool:
    return (Path(path) / POINTER).is_file()


def read_pointer(path: Path) -> dict | None:
    f = Path(path) / POINTER
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of the files that make up a model folder, keyed by name inside it.
    The lineage stamp and the model card are left out: they describe the weights,
    and a re-rendered card must not orphan every adapter trained on the folder."""
    from .lineage import file_sha256, files_under
    folder = Path(folder)
    return {f.relative_to(folder).as_posix(): file_sha256(f) for f in files_under(folder)
            if f.name not in ("lineage.json", "README.md")}


def folder_digest(folder: Path, hashes: dict[str, str] | None = None) -> str:
    """One sha256 over a model folder's (name, sha256) pairs, as the lineage digests code."""
    from .lineage import code_digest
    return code_digest(folder_hashes(folder) if hashes is None else hashes)


def resolve_base(folder: Path, base: str) -> Path:
    """Where the folder a pointer names lives. A relative path is a path in the DVC
    workspace: looked up from the adapter folder's parents first (its own workspace,
    wherever the command runs from), then from the working directory."""
    p = Path(base)
    if p.is_absolute() and p.is_dir():
        return p
    for root in [] if p.is_absolute() else [*Path(folder).resolve().parents, Path.cwd()]:
        if (root / p).is_dir():
            cand = root / p
            try:
                return cand.relative_to(Path.cwd())  # keeps lineage keys workspace-relative (models/base/...)
            except ValueError:
                return cand
    raise FileNotFoundError(f"{folder}: its adapter applies to {base}, which is not in its workspace "
                            f"nor under {Path.cwd()}")


def base_folders(path: Path) -> list[Path]:
    """The folders loaded under an adapter folder, from the full weights up to its direct base
    ([] for a plain folder). A stage that loads `path` depends on every one of them."""
    pointer = read_pointer(path)
    if pointer is None:
        return []
    base = resolve_base(path, pointer["base"])
    return [*base_folders(base), base]


def load_model(path: Path, dtype: str = "auto", device: str = "cpu", verify: bool = True, train: bool = False):
    """(model, tokenizer) from any model folder this project writes, safely (safetensors only,
    no remote code).

    - a plain Hugging Face folder (base, full fine-tunes): loaded as it is;
    - a LoRA adapter folder: the base it names is loaded (itself possibly an adapter
      folder: chains of adapters load recursively) and the adapter merged in memory,
      so callers get a plain model, with the logits the merged folder used to have;
    - a prompt-tuning folder: a PEFT model with the soft prompt applied (a prompt
      cannot be merged into weights).
    With `verify`, the base's files must still hash to what the adapter was trained
    on: an adapter applied to other weights gives a different model without any error.
    `train`: the weights a training stage starts from (see `torch_dtype`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    pointer = read_pointer(path)
    if pointer is None:
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False, use_safetensors=True,
                                                     dtype=torch_dtype(dtype, device, train))
        return model, tokenizer
    from peft import PeftModel

    base = resolve_base(path, pointer["base"])
    if verify and (digest := folder_digest(base)) != pointer["base_sha256"]:
        raise ValueError(f"{path}: its adapter was trained on {pointer['base']} with sha256 "
                         f"{pointer['base_sha256'][:12]}, but {base} now hashes to {digest[:12]}; rerun the stage "
                         "that made it (`dvc repro`) or restore the base")
    model, _ = load_model(base, dtype, device, verify, train)
    if getattr(model, "peft_config", None):
        raise ValueError(f"{path}: its base {base} is itself prompt-tuned; an adapter cannot stack on a soft prompt")
    model = PeftModel.from_pretrained(model, path, is_trainable=False)
    if pointer["method"] == "lora":
        model = model.merge_and_unload()
    return model, tokenizer




def is_prompt_tuned(path: Path) -> bool:
    return (read_pointer(path) or {}).get("method") == "prompt_tuning"


def save_adapter_folder(peft_model, tokenizer, out: Path, base: Path, stamp: dict, summary: str, metrics: dict,
                        chain: list[dict] | None = None) -> None:
    """A LoRA/prompt-tuning stage's output: the PEFT adapter (safetensors), tokenizer, the
    pointer to `base` (workspace path + sha256), lineage.json and the model card.

    `chain` names the folders beneath `base` (from the full weights up), for readers:
    loading follows `base` alone, recursively."""
    from . import modelcard

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for conf in peft_model.peft_config.values():  # what plain PEFT readers load it on (the model's own path otherwise)
        conf.base_model_name_or_path = Path(base).as_posix()
    # No embedding copy: adapters never train the embeddings (all-linear leaves them out), and
    # the base folder already holds any rows the base stage added.
    peft_model.save_pretrained(out, safe_serialization=True, save_embedding_layers=False)
    tokenizer.save_pretrained(out)
    peft_type = str(getattr(peft_model.peft_config["default"], "peft_type", "")).rsplit(".", 1)[-1]
    files = folder_hashes(base)
    digest = folder_digest(base, files)
    pointer = {
        "format": POINTER_FORMAT, "method": {"LORA": "lora", "PROMPT_TUNING": "prompt_tuning"}[peft_type],
        "base": Path(base).as_posix(), "base_sha256": digest, "base_files": files,
        "chain": [*(chain or []), {"path": Path(base).as_posix(), "sha256": digest,
                                   "method": (read_pointer(base) or {}).get("method", "full")}],
    }
    write_json(out / POINTER, pointer)
    write_json(out / "lineage.json", {**stamp, "metrics": metrics, "base": Path(base).as_posix(),
                                      "adapter": {k: pointer[k] for k in ("method", "base", "base_sha256", "chain")}})
    modelcard.write(out, stamp, summary, Path(base).as_posix(), metrics, adapter=pointer)


def adapter_chain(path: Path) -> list[dict]:
    """The chain entries beneath an adapter folder's base ([] for a plain folder), for a new adapter on it."""
    return (read_pointer(path) or {}).get("chain", [])
