"""Stage safety: DPO (+SFT term) and refusal SFT, each with and without LoRA, on
filtered + on-policy pairs."""

import json

import pytest

from instructflow import safety, training

from test_base import PAIRS, chatml_tokenizer, write_jsonl, write_model, write_params


def run_safety(tmp_path, sft_folder=None, onpolicy=None, **extra):
    sft_folder = sft_folder or write_model(tmp_path / "sft")
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS * 6)
    params = write_params(tmp_path / "params.yaml", safety={
        "epochs": 1.0, "batch_size": 4, "learning_rate": 1e-2, "threads": 1, "eval_steps": 2, "save_steps": 2,
        "validation_fraction": 0.0, "max_length": 128, "lora_r": 4, **extra})
    out, report = tmp_path / "models/safety", tmp_path / "reports/safety"
    argv = ["--params", str(params), "--sft", str(sft_folder), "--data", str(data), "--out", str(out),
            "--report", str(report), "--checkpoints", str(tmp_path / "ckpt"),
            "--onpolicy", str(onpolicy or tmp_path / "missing.jsonl")]
    safety.main(argv)
    return out, json.loads((report / "metrics.json").read_text())


@pytest.mark.parametrize("method", ["dpo", "refusal_sft"])
@pytest.mark.parametrize("lora", [False, True])
def test_every_method_runs(tmp_path, method, lora):
    from safetensors.torch import load_file

    sft_folder = write_model(tmp_path / "sft")
    out, metrics = run_safety(tmp_path, sft_folder, method=method, lora=lora)
    assert metrics["method"] == method and metrics["lora"] is lora and metrics["steps"] > 0
    assert metrics["batching"] == "padded"  # refusal_sft on a CPU: mixed batches; DPO pads pairs itself
    assert metrics["pairs_by_file"][str(tmp_path / "missing.jsonl")] == 0  # a missing on-policy file is none
    assert (out / "adapter_config.json").is_file() is lora  # LoRA: the adapter, no full copy
    assert (out / "model.safetensors").is_file() is not lora
    before = load_file(sft_folder / "model.safetensors")
    model, _ = training.load_model(out)  # a plain model either way (LoRA merged in memory)
    assert not hasattr(model, "peft_config")
    after = model.state_dict()
    assert any(not (before[k] == after[k]).all() for k in before)
    if method == "dpo":
        assert "final_reward_accuracy" in metrics


def test_dpo_with_the_supervised_lm_head_ends_where_all_positions_end(tmp_path, monkeypatch):
    """A large vocabulary makes safety score only reply positions (as sft's lm_head: auto); DPO's
    per-sequence log-probs, and so the trained weights, are the same up to float rounding."""
    import torch
    from safetensors.torch import load_file

    sft_folder = write_model(tmp_path / "sft")
    out_all, m_all = run_safety(tmp_path / "all", sft_folder, method="dpo")
    monkeypatch.setattr(training, "effective_lm_head", lambda setting, model: "supervised")
    try:
        out_sup, m_sup = run_safety(tmp_path / "sup", sft_folder, method="dpo")
    finally:
        training.score_positions("all")
    assert (m_all["lm_head"], m_sup["lm_head"]) == ("all", "supervised")
    a, b = load_file(out_all / "model.safetensors"), load_file(out_sup / "model.safetensors")
    before = load_file(sft_folder / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), k
    assert any(not torch.equal(a[k], before[k]) for k in a)


def test_lora_dpo_uses_the_adapter_disabled_model_as_reference(tmp_path, monkeypatch):
    from trl import DPOTrainer

    seen = {}
    original = DPOTrainer.train

    def spy(self, *a, **kw):
        seen["ref_model"], seen["precompute"] = self.ref_model, self.args.precompute_ref_log_probs
        return original(self, *a, **kw)

    monkeypatch.setattr(DPOTrainer, "train", spy)
    run_safety(tmp_path, method="dpo", lora=True)
    assert seen == {"ref_model": None, "precompute": False}  # no second copy, nothing scored up front


@pytest.mark.parametrize("batching", ["auto", "grouped", "padding_free"])
def test_refusal_sft_batching_is_a_param_and_dpo_pads(tmp_path, batching):
    _, metrics = run_safety(tmp_path, method="refusal_sft", batching=batching)
    assert metrics["batching"] == {"auto": "padded"}.get(batching, batching)  # auto: mixed batches on a CPU
    assert metrics["steps"] > 0 and metrics["final_train_loss"] == metrics["final_train_loss"]  # trained, not NaN


def test_effective_batching_per_device_and_for_a_soft_prompt():
    assert training.effective_batching("auto", "cpu") == "grouped"
    assert training.effective_batching("auto", "cuda") == "packed"  # make gpu-check on an H200
    assert training.effective_batching("padded", "cuda") == "padded"
    assert training.effective_batching("auto", "cpu", cpu_auto="padded") == "padded"  # safety's choice
    assert training.effective_batching("auto", "cuda", cpu_auto="padded", gpu_auto="padded") == "padded"
    # a soft prompt drops position ids, so concatenated rows would attend across examples
    assert training.effective_batching("padding_free", "cpu", prompt_tuned=True) == "grouped"
    assert training.effective_batching("packed", "cuda", prompt_tuned=True) == "grouped"


def test_onpolicy_pairs_join_and_long_pairs_are_counted(tmp_path):
    onpolicy = write_jsonl(tmp_path / "onpolicy.jsonl", [
        {"id": "o1", "prompt": [{"role": "user", "content": "Say cat two times."}],
         "chosen": [{"role": "assistant", "content": "cat cat"}],
         "rejected": [{"role": "assistant", "content": "I can't help with that."}]},
        {"id": "o2", "source": "dolly", "prompt": [{"role": "user", "content": "cat " * 200}],
         "chosen": [{"role": "assistant", "content": "cat"}],
         "rejected": [{"role": "assistant", "content": "no"}]}])
    _, metrics = run_safety(tmp_path, onpolicy=onpolicy, method="refusal_sft")
    assert metrics["pairs_by_file"][str(onpolicy)] == 2 and metrics["pairs"] == len(PAIRS) * 6 + 2
    assert metrics["too_long_dropped"] == 1 and metrics["train_pairs"] == len(PAIRS) * 6 + 1
    assert metrics["too_long_dropped_by_source"] == {"dolly": 1}  # which data the length cut fell on


@pytest.mark.parametrize("open_ends", [True, False])
def test_cut_replies_train_without_their_end_of_turn(tmp_path, monkeypatch, open_ends):
    seen = []
    original = training.supervised_dataset

    def spy(tokenizer, conversations, max_length, what, open_ends=None):
        rows, stats = original(tokenizer, conversations, max_length, what, open_ends)
        seen.append((conversations, rows, open_ends))
        return rows, stats

    monkeypatch.setattr(training, "supervised_dataset", spy)
    cut = {"id": "o1", "prompt": [{"role": "user", "content": "Say cat two times."}], "labels": {"cut": True},
           "chosen": [{"role": "assistant", "content": "cat cat."}],
           "rejected": [{"role": "assistant", "content": "I can't help with that."}]}
    onpolicy = write_jsonl(tmp_path / "onpolicy.jsonl", [cut])
    _, metrics = run_safety(tmp_path, onpolicy=onpolicy, method="refusal_sft", open_ends=open_ends)
    assert metrics["open_ends"] == int(open_ends)
    conversations, rows, flags = seen[0]
    (i,) = [n for n, c in enumerate(conversations) if c[-1]["content"] == "cat cat."]
    assert flags[i] is open_ends and sum(flags) == int(open_ends)  # only the cut reply
    last = max(n for n, lab in enumerate(rows[i]["labels"]) if lab != -100)
    # open: the last supervised token ends the reply's text; closed: the end of turn after it is trained too
    assert (last < len(rows[i]["input_ids"]) - 2) is open_ends


def test_safety_on_a_prompt_tuned_sft_model_trains_the_prompt(tmp_path):
    import torch
    from safetensors.torch import load_file

    from test_sft import run_sft

    base_folder, sft_folder, _ = run_sft(tmp_path / "s", "prompt_tuning")
    out, metrics = run_safety(tmp_path, sft_folder, method="dpo")
    pointer = json.loads((out / "adapter_base.json").read_text())
    # the prompt applies to the base weights the SFT prompt was trained on, not to the SFT folder (no weights there)
    assert pointer["method"] == "prompt_tuning" and pointer["base"] == base_folder.as_posix()
    model, _ = training.load_model(out)
    before, inner = load_file(base_folder / "model.safetensors"), model.get_base_model().state_dict()
    assert all(torch.equal(before[k], inner[k]) for k in before)  # only the soft prompt trained
    p_sft = load_file(sft_folder / "adapter_model.safetensors")
    p_safety = load_file(out / "adapter_model.safetensors")
    assert p_sft.keys() == p_safety.keys() and not all(torch.equal(p_sft[k], p_safety[k]) for k in p_sft)
    with pytest.raises(ValueError, match="prompt-tuned"):
        run_safety(tmp_path / "x", sft_folder, method="dpo", lora=True)


@pytest.mark.parametrize("method", ["dpo", "refusal_sft"])
def test_chained_lora_safety_on_an_sft_lora(tmp_path, method):
    """Safety LoRA on top of an SFT LoRA: the SFT adapter is merged in memory, a new adapter
    trains on that; the output names its chain (base -> sft) and loads as base + both."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from test_sft import folder_bytes, run_sft

    base_folder, sft_folder, _ = run_sft(tmp_path / "s", "lora")
    out, metrics = run_safety(tmp_path, sft_folder, method=method, lora=True)
    assert not (out / "model.safetensors").exists() and folder_bytes(out) < 0.6 * folder_bytes(base_folder)
    pointer = json.loads((out / "adapter_base.json").read_text())
    assert pointer["base"] == sft_folder.as_posix() and pointer["base_sha256"] == training.folder_digest(sft_folder)
    assert [(c["path"], c["method"]) for c in pointer["chain"]] == [(base_folder.as_posix(), "full"),
                                                                    (sft_folder.as_posix(), "lora")]
    assert training.base_folders(out) == [base_folder, sft_folder]
    stamp = json.loads((out / "lineage.json").read_text())
    assert any(k.startswith(base_folder.as_posix() + "/") for k in stamp["inputs"])  # base hashed as an input
    # by hand: base, + SFT adapter merged, + safety adapter merged
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])
    m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_folder), sft_folder).merge_and_unload()
    m = PeftModel.from_pretrained(m, out).merge_and_unload().eval()
    sft_only, _ = training.load_model(sft_folder)
    loaded, _ = training.load_model(out)
    with torch.no_grad():
        want, got = m(input_ids=ids).logits, loaded.eval()(input_ids=ids).logits
        sft_logits = sft_only.eval()(input_ids=ids).logits
    assert (want - got).abs().max() <= 1e-5
    assert (got - sft_logits).abs().max() > 1e-4  # the safety adapter did something on top of the SFT one


@pytest.mark.slow
def test_killed_safety_run_resumes_to_the_same_model(tmp_path):
    from test_training import assert_kill_resume_matches

    for d in ("clean", "killed"):
        write_model(tmp_path / d / "models/sft")
        write_jsonl(tmp_path / d / "data/filtered/pairs.jsonl", PAIRS * 12)
        write_params(tmp_path / d / "params.yaml", safety={
            "epochs": 1.0, "batch_size": 2, "learning_rate": 1e-2, "threads": 1, "eval_steps": 3, "save_steps": 3,
            "validation_fraction": 0.0, "max_length": 128, "lora": True, "lora_r": 4})
    assert_kill_resume_matches("safety", [], tmp_path / "clean", tmp_path / "killed", 12, "models/safety",
                               "checkpoints/safety", seed=2)
