"""Model cards: Hub-format front matter, the lineage in prose, the evaluation table when given."""

from huggingface_hub import ModelCard

from instructflow import modelcard

STAMP = {"stage": "safety", "inputs": {"data/filtered/pairs.jsonl": "ab" * 32}, "params": {"beta": 0.1},
         "seed": 7, "code": {"sha256": "cd" * 32, "files": {"src/instructflow/safety.py": "ef" * 32}},
         "libraries": {"torch": "2.13.0"}, "machine": {"cpu": "Test CPU", "cores": 2}}
EVAL = {"models": {"safety": {"refusal": {"value": 0.9, "low": 0.8, "high": 0.95, "n": 120},
                              "task_em": 0.5, "lineage": {"stage": "evaluate"}},
                   "sft": {"refusal": {"value": 0.1, "n": 120}}}}


def test_card_carries_lineage_and_reads_back_as_a_hub_card(tmp_path):
    modelcard.write(tmp_path, STAMP, "A test model.", "models/sft", {"steps": 3})
    text = (tmp_path / "README.md").read_text()
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.tags == ["instructflow", "safety"] and card.data.library_name == "transformers"
    for fact in ("data/filtered/pairs.jsonl", "ab" * 32, "cd" * 32, "src/instructflow/safety.py", "beta: 0.1",
                 "seed 7", "Test CPU", "torch 2.13.0", '"steps": 3'):
        assert fact in text, fact
    assert "## Evaluation" not in text and card.data.eval_results is None


def test_evaluation_table_and_model_index_for_this_model_only():
    card = modelcard.build(STAMP, "s", "models/sft", {}, EVAL)
    text = str(card)
    assert "| refusal | 0.9000 | [0.8000, 0.9500] | 120 |" in text
    assert "| task_em | 0.5000 | n/a | n/a |" in text
    assert "0.1000" not in text  # the sft row belongs to another model
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {("refusal", 0.9), ("task_em", 0.5)}


def test_cli_writes_a_publishing_card_with_evaluation(tmp_path):
    import json

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "lineage.json").write_text(json.dumps({**STAMP, "metrics": {"steps": 3}, "base": "b"}))
    (tmp_path / "ev.json").write_text(json.dumps(EVAL))
    modelcard.main([str(tmp_path / "m"), "--evaluation", str(tmp_path / "ev.json"), "--out", str(tmp_path / "c.md")])
    assert "| refusal | 0.9000 | [0.8000, 0.9500] | 120 |" in (tmp_path / "c.md").read_text()


POINTER = {"format": 1, "method": "lora", "base": "models/sft", "base_sha256": "12" * 32, "base_files": {},
           "chain": [{"path": "models/base", "sha256": "34" * 32, "method": "full"},
                     {"path": "models/sft", "sha256": "12" * 32, "method": "lora"}]}


def test_adapter_card_names_its_base_chain_and_how_to_load_it(tmp_path):
    import json

    modelcard.write(tmp_path, STAMP, "A test adapter.", "models/sft", {"steps": 3}, adapter=POINTER)
    text = (tmp_path / "README.md").read_text()
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    assert "PEFT lora adapter, not full weights" in text and "12" * 32 in text
    assert "1. `models/base` (full), sha256 `" + "34" * 32 in text and "2. `models/sft` (lora)" in text
    assert 'training.load_model("<this folder>")' in text and "and merges" in text
    assert "AutoModelForCausalLM.from_pretrained(\"<this folder>\")" not in text  # that would fail: no weights here
    # the CLI finds the pointer beside lineage.json
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "lineage.json").write_text(json.dumps({**STAMP, "metrics": {}, "base": "models/sft"}))
    (tmp_path / "m" / "adapter_base.json").write_text(json.dumps(POINTER))
    modelcard.main([str(tmp_path / "m"), "--evaluation", str(tmp_path / "none.json"), "--out", str(tmp_path / "c.md")])
    assert "PEFT lora adapter" in (tmp_path / "c.md").read_text()
