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
    assert metrics["pairs_by_file"][str(tmp_path / "missing.jsonl")] == 0  # a missing on-policy file is none
    assert (out / "adapter" / "adapter_config.json").is_file() is lora
    before, after = load_file(sft_folder / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not (before[k] == after[k]).all() for k in before)
    if method == "dpo":
        assert "final_reward_accuracy" in metrics
    model, _ = training.load_model_folder(out)  # a plain folder either way
    assert not hasattr(model, "peft_config")


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


def test_onpolicy_pairs_join_and_long_pairs_are_counted(tmp_path):
    onpolicy = write_jsonl(tmp_path / "onpolicy.jsonl", [
        {"id": "o1", "prompt": [{"role": "user", "content": "Say cat two times."}],
         "chosen": [{"role": "assistant", "content": "cat cat"}],
         "rejected": [{"role": "assistant", "content": "I can't help with that."}]},
        {"id": "o2", "prompt": [{"role": "user", "content": "cat " * 200}],
         "chosen": [{"role": "assistant", "content": "cat"}],
         "rejected": [{"role": "assistant", "content": "no"}]}])
    _, metrics = run_safety(tmp_path, onpolicy=onpolicy, method="refusal_sft")
    assert metrics["pairs_by_file"][str(onpolicy)] == 2 and metrics["pairs"] == len(PAIRS) * 6 + 2
    assert metrics["too_long_dropped"] == 1 and metrics["train_pairs"] == len(PAIRS) * 6 + 1


def test_safety_on_a_prompt_tuned_sft_model_trains_the_prompt(tmp_path):
    import torch
    from safetensors.torch import load_file

    from test_sft import run_sft

    base_folder, sft_folder, _ = run_sft(tmp_path / "s", "prompt_tuning")
    out, metrics = run_safety(tmp_path, sft_folder, method="dpo")
    assert (out / "adapter" / "adapter_config.json").is_file()
    before, after = load_file(sft_folder / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)  # only the soft prompt trained
    p_sft = load_file(sft_folder / "adapter" / "adapter_model.safetensors")
    p_safety = load_file(out / "adapter" / "adapter_model.safetensors")
    assert p_sft.keys() == p_safety.keys() and not all(torch.equal(p_sft[k], p_safety[k]) for k in p_sft)
    with pytest.raises(ValueError, match="prompt-tuned"):
        run_safety(tmp_path / "x", sft_folder, method="dpo", lora=True)


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
