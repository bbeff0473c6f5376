"""instructflow-chat on a tiny model folder: the chat template, streaming equal to plain greedy
generation, history across turns, a clear error for a folder that cannot chat."""

from __future__ import annotations

import io
import sys

import pytest

from instructflow import base, chat, config
from instructflow.tokenizer import train_tokenizer

TEXTS = ["What is the opposite of hot?", "cold", "Say cat two times.", "cat cat", "I can't help with that."] * 10


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    tok = train_tokenizer(TEXTS, 300)
    cfg = config.ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=64)
    model = base.tiny_llama(tok, cfg)
    # a few steps on two chats, so the model says something (a random one repeats one token)
    chats = [[{"role": "user", "content": "What is the opposite of hot?"}, {"role": "assistant", "content": "cold"}],
             [{"role": "user", "content": "Say cat two times."}, {"role": "assistant", "content": "cat cat"}]]
    batch = [tok.apply_chat_template(c, return_tensors="pt", return_dict=True)["input_ids"][0] for c in chats]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        for ids in batch:
            loss = model(input_ids=ids[None], labels=ids[None]).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    out = tmp_path_factory.mktemp("chat") / "model"
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def greedy(folder, messages, n):
    """The reference: plain greedy generate on the chat-templated prompt, no streamer."""
    import torch

    model, tok = chat.load(folder)
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=n, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.eos_token_id)
    return tok.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_one_shot_streams_the_greedy_reply(folder, capsys):
    assert chat.main([str(folder), "--prompt", "What is the opposite of hot?", "--max-new-tokens", "12"]) == 0
    printed = capsys.readouterr().out
    expected = greedy(folder, [{"role": "user", "content": "What is the opposite of hot?"}], 12)
    assert expected and printed.strip() == expected
    assert "cold" in expected  # it learned its two chats: the template is applied as in training


def test_streaming_writes_pieces_as_they_come(folder):
    class Pieces(io.StringIO):
        writes = 0

        def write(self, s):
            Pieces.writes += 1
            return super().write(s)

    model, tok = chat.load(folder)
    out = Pieces()
    text = chat.reply(model, tok, [{"role": "user", "content": "Say cat two times."}], 12, out=out)
    assert out.getvalue().strip() == text and Pieces.writes > 1


def test_interactive_keeps_the_conversation(folder, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Say cat two times.\nWhat is the opposite of hot?\n/exit\n"))
    assert chat.main([str(folder), "--max-new-tokens", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = greedy(folder, [{"role": "user", "content": "Say cat two times."}], 8)
    second = greedy(folder, [{"role": "user", "content": "Say cat two times."}, {"role": "assistant", "content": first},
                             {"role": "user", "content": "What is the opposite of hot?"}], 8)
    assert [ln.strip() for ln in lines] == [first, second]


def test_folder_without_chat_template_is_a_clear_error(folder, tmp_path):
    import shutil

    bad = tmp_path / "nochat"
    shutil.copytree(folder, bad)
    cfg = bad / "tokenizer_config.json"
    import json

    data = json.loads(cfg.read_text())
    data.pop("chat_template", None)
    cfg.write_text(json.dumps(data))
    (bad / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(SystemExit, match="no chat template"):
        chat.load(bad)
    with pytest.raises(SystemExit, match="not a model folder"):
        chat.load(tmp_path)


def test_chat_with_an_adapter_folder(tmp_path, capsys):
    """A LoRA stage's output (adapter + pointer, no config.json) chats: base + adapter, merged in memory."""
    import shutil

    from test_sft import run_sft

    from instructflow import training

    _, out, _ = run_sft(tmp_path, "lora")
    capsys.readouterr()  # the training log
    assert not (out / "config.json").exists()
    model, tok = chat.load(out)
    assert not hasattr(model, "peft_config") and tok.chat_template
    assert chat.main([str(out), "--prompt", "Say cat two times.", "--max-new-tokens", "6"]) == 0
    printed = capsys.readouterr().out.strip()
    merged, _ = training.load_model(out)
    assert printed == chat.reply(merged, tok, [{"role": "user", "content": "Say cat two times."}], 6)
    shutil.rmtree(tmp_path / "base")
    with pytest.raises(SystemExit, match="not in its workspace"):
        chat.load(out)
