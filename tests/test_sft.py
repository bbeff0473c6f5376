"""Stage sft: assistant-only loss masks for any template, every method, every batching."""

import json
from pathlib import Path

import pytest

from instructflow import sft, training
from instructflow.tokenizer import train_tokenizer

from test_base import CHATS, TEXTS, chatml_tokenizer, tiny_model, write_jsonl, write_model, write_params


def supervised_text(tok, row) -> str:
    """The supervised tokens of a row, decoded, with a '|' where supervision breaks."""
    out, prev = [], False
    for t, label in zip(row["input_ids"], row["labels"]):
        if label != -100:
            assert label == t
            out.append(tok.convert_ids_to_tokens(t))
        elif prev:
            out.append("|")
        prev = label != -100
    return tok.convert_tokens_to_string(out)


# --------------------------------------------------------------------------- masks
def test_mask_without_markers_covers_every_assistant_turn():
    tok = chatml_tokenizer()
    tok.chat_template = tok.chat_template.replace("You are a tiny test model.", "")  # as base leaves it
    rows = training.supervised_rows(tok, CHATS[1])  # two assistant turns
    assert len(rows) == 1
    ids, labels = rows[0]["input_ids"], rows[0]["labels"]
    assert ids == tok.apply_chat_template(CHATS[1], tokenize=True, return_dict=True)["input_ids"]
    # token by token: exactly each reply and its end of turn, nothing of the prompt or the user turns
    # (byte-level decoding puts a space before a lone newline; compare without whitespace)
    assert "".join(supervised_text(tok, rows[0]).split()) == "catcat<|im_end|>|Youarewelcome.<|im_end|>"
    assert supervised_text(tok, rows[0]).count("\n") == 2  # each turn's closing newline is part of it
    supervised = [tok.convert_ids_to_tokens(t) for t, lab in zip(ids, labels) if lab != -100]
    assert supervised.count("<|im_end|>") == 2 and "<|im_start|>" not in supervised
    first_user = tok.apply_chat_template(CHATS[1][:1], tokenize=True, add_generation_prompt=True,
                                         return_dict=True)["input_ids"]
    assert all(lab == -100 for lab in labels[:len(first_user)])


def test_mask_with_generation_markers():
    tok = train_tokenizer(TEXTS, 300)  # the embedded template has {% generation %} markers
    rows = training.supervised_rows(tok, CHATS[1])
    assert len(rows) == 1
    assert supervised_text(tok, rows[0]) == " cat cat<|end|>| You are welcome.<|end|>"  # prefix spaces
    ids = rows[0]["input_ids"]
    assert [tok.convert_ids_to_tokens(t) for t, lab in zip(ids, rows[0]["labels"]) if lab == -100][:1] == ["<|user|>"]


def test_open_end_leaves_only_the_last_end_of_turn_out_of_the_loss():
    """A reply cut at a generation budget trains its text, not the stop after it; earlier turns keep theirs."""
    tok = chatml_tokenizer()
    tok.chat_template = tok.chat_template.replace("You are a tiny test model.", "")
    closed = training.supervised_rows(tok, CHATS[1])[0]
    (row,) = training.supervised_rows(tok, CHATS[1], open_end=True)
    assert row["input_ids"] == closed["input_ids"]
    assert "".join(supervised_text(tok, row).split()) == "catcat<|im_end|>|Youarewelcome.|"
    dropped = [tok.convert_ids_to_tokens(t) for t, a, b in zip(row["input_ids"], closed["labels"], row["labels"])
               if a != b]
    assert dropped[0] == "<|im_end|>" and tok.convert_tokens_to_string(dropped[1:]).strip() == ""  # + its newline
    assert all(b == -100 for a, b in zip(closed["labels"], row["labels"]) if a != b)
    # with {% generation %} markers too
    tok2 = train_tokenizer(TEXTS, 300)
    (row2,) = training.supervised_rows(tok2, CHATS[1], open_end=True)
    assert supervised_text(tok2, row2) == " cat cat<|end|>| You are welcome.|"
    # and counted by the dataset builder
    _, stats = training.supervised_dataset(tok2, [CHATS[1], CHATS[0]], 64, "test", open_ends=[True, False])
    assert stats["open_ends"] == 1


def test_open_end_refuses_a_template_that_rewrites_the_reply():
    tok = chatml_tokenizer()
    tok.chat_template = tok.chat_template.replace("message['content']", "message['content'] | upper")
    with pytest.raises(training.TemplateError, match="end of turn"):
        training.supervised_rows(tok, CHATS[1], open_end=True)


def test_template_that_rewrites_history_gets_a_row_per_turn():
    tok = chatml_tokenizer()
    # earlier assistant turns rendered without their text once later turns follow (as reasoning templates do)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
                         "{{ '<|im_start|>assistant\n<|im_end|>\n' }}{% else %}"
                         "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}"
                         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    rows = training.supervised_rows(tok, CHATS[1])
    texts = sorted(supervised_text(tok, r) for r in rows)
    assert ["".join(t.split()) for t in texts] == ["Youarewelcome.<|im_end|>", "catcat<|im_end|>"]
    # a cut last reply loses only its own end of turn, not the earlier turn's row's
    texts = sorted(supervised_text(tok, r) for r in training.supervised_rows(tok, CHATS[1], open_end=True))
    assert ["".join(t.split()) for t in texts] == ["Youarewelcome.|", "catcat<|im_end|>"]


def test_too_long_examples_are_dropped_and_counted():
    tok = train_tokenizer(TEXTS, 300)
    long_chat = [{"role": "user", "content": "cat " * 80}, {"role": "assistant", "content": "cold"}]
    rows, stats = training.supervised_dataset(tok, [CHATS[0], long_chat], 32, "test")
    assert stats["too_long_dropped"] == 1 and stats["rows"] == 1 and len(rows) == 1
    assert stats["supervised_tokens"] == sum(lab != -100 for lab in rows[0]["labels"])
    assert "too_long_dropped_by_source" not in stats
    # per source when the caller names each conversation's: which data the cut fell on
    _, stats = training.supervised_dataset(tok, [CHATS[0], long_chat, long_chat], 32, "test",
                                           sources=["alpaca", "dolly", "dolly"])
    assert stats["too_long_dropped_by_source"] == {"dolly": 2} and stats["too_long_dropped"] == 2


def test_padding_free_batch_has_the_same_loss_as_padded():
    """Concatenated examples with restarting position ids attend only within their
    own example (transformers builds the block-diagonal mask from position ids
    when there is no attention mask and no cache)."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tok = train_tokenizer(TEXTS, 300)
    model = tiny_model(tok).eval()
    rows, _ = training.supervised_dataset(tok, CHATS, 128, "test")
    losses = {}
    for free in (False, True):
        batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=free)(rows)
        batch = {k: v for k, v in batch.items() if k in ("input_ids", "labels", "attention_mask", "position_ids")}
        with torch.no_grad():  # no KV cache, as SFTTrainer.compute_loss runs it
            losses[free] = model(**batch, use_cache=False).loss.item()
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


# --------------------------------------------------------------------------- the stage, per method
SFT_DATA = [{"messages": c} for c in CHATS] * 6


def run_sft(tmp_path, method, base=None, **extra):
    base = base or write_model(tmp_path / "base")
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_DATA)
    params = write_params(tmp_path / "params.yaml", sft={
        "method": method, "epochs": 2.0, "batch_size": 4, "learning_rate": 1e-2, "threads": 1, "eval_steps": 5,
        "save_steps": 5, "validation_fraction": 0.0, "max_length": 128, "lora_r": 4, "prompt_tokens": 4, **extra})
    out, report = tmp_path / "models/sft", tmp_path / "reports/sft"
    sft.main(["--params", str(params), "--base", str(base), "--data", str(data), "--out", str(out),
              "--report", str(report), "--checkpoints", str(tmp_path / "ckpt")])
    return base, out, json.loads((report / "metrics.json").read_text())


@pytest.mark.parametrize("batching", ["padded", "grouped", "packed", "padding_free"])
def test_full_sft_every_batching(tmp_path, batching):
    _, out, metrics = run_sft(tmp_path, "full", batching=batching)
    assert metrics["batching"] == batching and metrics["steps"] > 0 and metrics["too_long_dropped"] == 0
    assert metrics["too_long_dropped_by_source"] == {}
    assert metrics["supervised_tokens"] > 0 and metrics["final_train_loss"] is not None
    assert not (tmp_path / "ckpt").exists()  # a finished run leaves no checkpoints
    training.load_model(out)


@pytest.mark.parametrize("method", ["full", "lora", "prompt_tuning"])
def test_supervised_lm_head_trains_every_method(tmp_path, method):
    """`lm_head: supervised` (the auto choice for a large vocabulary) runs with every method;
    the default's small vocabulary keeps every position scored."""
    _, _, metrics = run_sft(tmp_path / "s", method, lm_head="supervised", batching="padded")
    assert metrics["lm_head"] == "supervised" and metrics["steps"] > 0 and metrics["final_train_loss"] is not None
    _, _, auto = run_sft(tmp_path / "a", method, batching="padded")
    assert auto["lm_head"] == "all"
    # same examples, same order, same loss up to float rounding
    assert metrics["final_train_loss"] == pytest.approx(auto["final_train_loss"], abs=2e-3)


def folder_bytes(folder) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_lora_stores_the_adapter_and_a_pointer_to_its_base(tmp_path):
    """No full copy of the weights per stage: the adapter, the tokenizer and a pointer
    (path + sha256) to the base; loading merges it in memory."""
    from safetensors.torch import load_file

    base, out, metrics = run_sft(tmp_path, "lora")
    assert not list(out.glob("model*.safetensors")) and not (out / "config.json").exists()
    assert {"adapter_model.safetensors", "adapter_config.json", "adapter_base.json", "lineage.json", "README.md",
            "tokenizer.json", "tokenizer_config.json"} <= {f.name for f in out.iterdir()}
    adapter, weights = load_file(out / "adapter_model.safetensors"), load_file(base / "model.safetensors")
    assert all("lora_" in k for k in adapter)  # only LoRA matrices: no embedding or head copied in
    # a fraction of the base even for this 2-layer toy (rank 4 on hidden 32); ~1 % on SmolLM2 (README)
    assert (out / "adapter_model.safetensors").stat().st_size < 0.3 * (base / "model.safetensors").stat().st_size
    assert folder_bytes(out) < 0.6 * folder_bytes(base)
    pointer = json.loads((out / "adapter_base.json").read_text())
    assert pointer["method"] == "lora" and pointer["base"] == base.as_posix()
    assert pointer["base_sha256"] == training.folder_digest(base)
    assert pointer["chain"] == [{"path": base.as_posix(), "sha256": pointer["base_sha256"], "method": "full"}]
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == base.as_posix()
    assert json.loads((out / "lineage.json").read_text())["adapter"]["base_sha256"] == pointer["base_sha256"]
    assert "adapter" in (out / "README.md").read_text()
    merged, _ = training.load_model(out)
    assert not hasattr(merged, "peft_config")  # a plain model for every consumer
    after = merged.state_dict()
    assert any(not (after[k] == weights[k]).all() for k in weights if "proj" in k)
    assert metrics["trainable_parameters"] < sum(v.numel() for v in weights.values())


def test_base_plus_adapter_gives_the_logits_of_the_old_merged_folder(tmp_path):
    """What the stage used to save (merge_and_unload, save_pretrained) and what load_model
    builds in memory are the same model; so is the unmerged PEFT model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, out, _ = run_sft(tmp_path, "lora")
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out).eval()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])
    with torch.no_grad():
        unmerged = peft(input_ids=ids).logits
        peft.merge_and_unload().save_pretrained(tmp_path / "old_merged", safe_serialization=True)
        old = AutoModelForCausalLM.from_pretrained(tmp_path / "old_merged").eval()(input_ids=ids).logits
        new = training.load_model(out)[0].eval()(input_ids=ids).logits
    assert (new - old).abs().max() <= 1e-5 and (new - unmerged).abs().max() <= 1e-5
    assert (new - AutoModelForCausalLM.from_pretrained(base)(input_ids=ids).logits).abs().max() > 1e-3  # trained


def test_an_adapter_refuses_a_changed_or_missing_base(tmp_path):
    import shutil

    base, out, _ = run_sft(tmp_path, "lora")
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved / "sft")
    training.load_model(moved / "sft")  # an absolute base path loads from anywhere
    from safetensors.torch import load_file, save_file

    weights = load_file(base / "model.safetensors")
    save_file({k: v + 0.01 if "q_proj" in k else v for k, v in weights.items()}, base / "model.safetensors",
              metadata={"format": "pt"})  # other weights at the same path: the adapter would mean nothing
    with pytest.raises(ValueError, match="now hashes to"):
        training.load_model(out)
    shutil.rmtree(base)
    with pytest.raises(OSError):
        training.load_model(out)


def test_a_relative_base_is_found_in_the_adapters_workspace(tmp_path, monkeypatch):
    """The pointer holds the workspace path (models/base); the folder loads from any working directory."""
    ws = tmp_path / "ws"
    write_model(ws / "models/base")
    monkeypatch.chdir(ws)
    run_sft(ws, "lora", base=Path("models/base"))
    assert json.loads((ws / "models/sft/adapter_base.json").read_text())["base"] == "models/base"
    assert training.base_folders(Path("models/sft")) == [Path("models/base")]
    monkeypatch.chdir(tmp_path)
    model, tok = training.load_model(ws / "models/sft")
    assert tok.chat_template and not hasattr(model, "peft_config")


def test_prompt_tuning_trains_only_the_soft_prompt(tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    base, out, metrics = run_sft(tmp_path, "prompt_tuning", batching="padding_free")
    assert metrics["batching"] == "grouped"  # prompt tuning cannot use position ids
    assert metrics["trainable_parameters"] == 4 * 32  # prompt_tokens x hidden_size
    assert not list(out.glob("model*.safetensors"))  # the base weights are not copied
    assert list(load_file(out / "adapter_model.safetensors")) == ["prompt_embeddings"]
    assert json.loads((out / "adapter_base.json").read_text())["method"] == "prompt_tuning"
    # loading applies the prompt to the base weights, unchanged
    model, _ = training.load_model(out)
    assert isinstance(model, PeftModel)
    before = load_file(base / "model.safetensors")
    inner = model.get_base_model().state_dict()
    assert all((inner[k] == before[k]).all() for k in before)


def test_prompt_tuning_moves_the_prompt_and_nothing_else(tmp_path):
    """In-process, before and after: the soft prompt changes, every other parameter is bit-identical."""
    import torch

    from instructflow import config

    tok = train_tokenizer(TEXTS, 300)
    model = tiny_model(tok)
    rows, _ = training.supervised_dataset(tok, [e["messages"] for e in SFT_DATA], 128, "test")
    cfg = config.SFTConfig(method="prompt_tuning", prompt_tokens=4, epochs=1.0, batch_size=4, learning_rate=1e-1,
                           validation_fraction=0.0, patience=0, save_steps=1000)
    trainer = sft.build_trainer(cfg, 0, "cpu", model, tok, rows, [], 128, tmp_path / "ckpt", tmp_path / "live")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    prompt = [n for n in before if "prompt_encoder" in n]
    assert prompt and all(not torch.equal(before[n], after[n].detach()) for n in prompt)
    assert all(torch.equal(before[n], after[n].detach()) for n in before if n not in prompt)

@pytest.mark.slow
def test_killed_sft_run_resumes_to_the_same_model(tmp_path):
    from test_training import assert_kill_resume_matches

    for d in ("clean", "killed"):
        write_model(tmp_path / d / "models/base")
        write_jsonl(tmp_path / d / "data/filtered/sft.jsonl", SFT_DATA)
        write_params(tmp_path / d / "params.yaml", sft={
            "epochs": 2.0, "batch_size": 4, "learning_rate": 1e-2, "threads": 1, "eval_steps": 3, "save_steps": 3,
            "validation_fraction": 0.2, "patience": 0, "max_length": 128})
    assert_kill_resume_matches("sft", [], tmp_path / "clean", tmp_path / "killed", 10, "models/sft",
                               "checkpoints/sft", seed=3)


# --------------------------------------------------------------------------- distribution
@pytest.mark.slow
def test_two_processes_match_one_with_twice_the_accumulation(tmp_path):
    """sft with 2 CPU processes (torchrun, gloo; what `accelerate launch` starts on GPUs) ends where one process
    with grad_accumulation 2 ends: the same examples per optimizer step, gradients
    averaged across processes instead of across micro-batches."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from conftest import ROOT

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    recipe = {"epochs": 1.0, "batch_size": 4, "learning_rate": 3e-3, "threads": 1, "batching": "padded",
              "validation_fraction": 0.0, "patience": 0, "save_steps": 1000, "max_length": 128}
    runs = {"one": (["-m", "instructflow.sft"], 2),
            "two": (["-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "instructflow.sft"], 1)}
    for name, (launcher, accumulation) in runs.items():
        d = tmp_path / name
        write_model(d / "models/base")
        write_jsonl(d / "data/filtered/sft.jsonl", SFT_DATA * 2)
        write_params(d / "params.yaml", sft={**recipe, "grad_accumulation": accumulation})
        done = subprocess.run([sys.executable, *launcher], cwd=d, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    metrics = {n: json.loads((tmp_path / n / "reports/sft/metrics.json").read_text()) for n in runs}
    assert metrics["one"]["steps"] == metrics["two"]["steps"] == 6  # 48 rows / (4 x 2) per optimizer step
    a = load_file(tmp_path / "one/models/sft/model.safetensors")
    b = load_file(tmp_path / "two/models/sft/model.safetensors")
    base = load_file(tmp_path / "one/models/base/model.safetensors")
    for k in a:
        moved = (a[k] - base[k]).abs().max()
        assert (a[k] - b[k]).abs().max() <= 1e-3 * max(1.0, float(moved) * 10), k
    assert any((a[k] - base[k]).abs().max() > 1e-3 for k in a)  # training did move the weights


def test_lora_reports_the_tokens_base_added(tmp_path, monkeypatch):
    """A template-less model gets instructflow's template tokens from base (recorded in
    the origin); LoRA leaves their rows as initialised, and the metrics say so."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from instructflow import base

    monkeypatch.chdir(tmp_path)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=True), decoders.ByteLevel()
    bpe.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"], show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bare = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>")  # no chat template, no role tokens
    folder = tmp_path / "data/sources/models/bare"
    model = tiny_model(bare)
    model.save_pretrained(folder)
    bare.save_pretrained(folder)
    params = write_params(tmp_path / "params.yaml", model={"base": "data/sources/models/bare", "threads": 1})
    base.main(["--params", str(params)])
    origin = json.loads((tmp_path / "models/base/lineage.json").read_text())["origin"]
    assert {"<|user|>", "<|assistant|>", "<|end|>", "<|pad|>"} <= set(origin["added_tokens"])
    _, out, metrics = run_sft(tmp_path, "lora", base=tmp_path / "models/base")
    merged, tok = training.load_model(out)
    new = training.new_token_ids(out, tok)  # the origin travels into every later lineage
    assert new == sorted(tok.convert_tokens_to_ids(origin["added_tokens"]))
    assert metrics["added_tokens_not_trained"] == len(new) == len(origin["added_tokens"])
    before = load_file(tmp_path / "models/base/model.safetensors")["model.embed_tokens.weight"]
    assert (before == merged.state_dict()["model.embed_tokens.weight"]).all()
