"""instructflow-audit on a tiny tree of real stamps: ingest -> sft -> safety.

A param change and a rerun of only the upstream stage must show up as: the new params in
params.yaml differ from what models/safety was made with, and models/safety's input hash no
longer matches the rerun model; after safety reruns too, the chain is clean again and names
the raw file, its license and the new params."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from instructflow import audit, lineage
from instructflow.records import write_json

DVC = {"stages": {
    "ingest": {"cmd": "x", "deps": ["src/ingest.py", "data/sources"], "params": ["seed", "ingest"],
               "outs": ["data/raw"], "metrics": [{"reports/ingest/summary.json": {"cache": False}}]},
    "sft": {"cmd": "x", "deps": ["src/sft.py", "data/raw/records.jsonl"], "params": ["seed", "sft"],
            "outs": ["models/sft"], "metrics": [{"reports/sft/metrics.json": {"cache": False}}]},
    "safety": {"cmd": "x", "deps": ["src/safety.py", "models/sft"], "params": ["seed", "safety"],
               "outs": ["models/safety"], "metrics": [{"reports/safety/metrics.json": {"cache": False}}]},
}}
PARAMS = {"seed": 1, "ingest": {"limit": 0}, "sft": {"learning_rate": 0.001, "epochs": 2}, "safety": {"beta": 0.1}}


def run_stage(tree: Path, stage: str) -> None:
    """What a stage does for lineage: read params, hash inputs and code, write outputs with the stamp."""
    params = yaml.safe_load((tree / "params.yaml").read_text())
    section = "ingest" if stage == "ingest" else stage
    if stage == "ingest":
        raw = tree / "data/raw/records.jsonl"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text((tree / "data/sources/user.jsonl").read_text())
        stamp = lineage.stamp("ingest", ["data/sources/user.jsonl"], params[section], params["seed"])
        write_json(tree / "reports/ingest/summary.json", {
            "records": 2, "lineage": stamp,
            "sources": {"user": {"license": "CC-BY-4.0", "records": 2, "files": {"data/sources/user.jsonl": 2}}}})
        return
    upstream = {"sft": "data/raw/records.jsonl", "safety": "models/sft"}[stage]
    stamp = lineage.stamp(stage, [upstream], params[section], params["seed"])
    out = tree / "models" / stage
    out.mkdir(parents=True, exist_ok=True)
    # the "weights" depend on the params and the inputs, as real training does
    (out / "model.safetensors").write_text(json.dumps([params[section], stamp["inputs"]], sort_keys=True))
    write_json(out / "lineage.json", stamp)
    write_json(tree / "reports" / stage / "metrics.json", {"loss": 1.0, "lineage": stamp})


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    for name in ("ingest", "sft", "safety"):
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / f"src/{name}.py").write_text(f"# {name} stage\n")
    (tmp_path / "data/sources").mkdir(parents=True)
    (tmp_path / "data/sources/user.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    for stage in ("ingest", "sft", "safety"):
        run_stage(tmp_path, stage)
    return tmp_path


def set_param(tree: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((tree / "params.yaml").read_text())
    params[section][key] = value
    (tree / "params.yaml").write_text(yaml.safe_dump(params))


def test_chain_reaches_the_raw_file_with_its_license(tree):
    result = audit.chain(tree, Path("models/safety"))
    assert [n["stage"] for n in result["stages"]] == ["safety", "sft", "ingest"]
    assert [(r["path"], r["status"]) for r in result["raw_files"]] == [("data/sources/user.jsonl", "ok")]
    assert result["raw_files"][0]["sha256"] == lineage.file_sha256(tree / "data/sources/user.jsonl")
    assert result["sources"]["user"]["license"] == "CC-BY-4.0"
    assert result["mismatches"] == [] and result["params_changed"] == []
    sft = next(n for n in result["stages"] if n["stage"] == "sft")
    assert sft["params"] == {"learning_rate": 0.001, "epochs": 2} and sft["seed"] == 1
    assert {f["path"] for f in sft["code"]["files"]} == {"src/sft.py"}


def test_param_change_and_rerun_of_sft_only(tree):
    set_param(tree, "sft", "learning_rate", 0.01)
    run_stage(tree, "sft")  # `dvc repro sft`: models/sft changes, models/safety is now stale
    result = audit.chain(tree, Path("models/safety"))
    safety = result["stages"][0]
    assert safety["inputs"] == [{"path": "models/sft/model.safetensors", "sha256": safety["inputs"][0]["sha256"],
                                 "status": "MISMATCH", "produced_by": "sft"}]
    assert result["mismatches"] == ["models/sft/model.safetensors (MISMATCH)"]
    # the chain follows the workspace's models/sft, whose stamp has the new params
    sft = next(n for n in result["stages"] if n["stage"] == "sft")
    assert sft["params"]["learning_rate"] == 0.01 and sft["params_changed"] == []
    assert sft["describes_artifact"] is False and result["stages"][0]["describes_artifact"] is True

    run_stage(tree, "safety")  # the rest of the rerun
    result = audit.chain(tree, Path("models/safety"))
    assert result["mismatches"] == [] and all(n["describes_artifact"] for n in result["stages"])
    assert next(n for n in result["stages"] if n["stage"] == "sft")["params"]["learning_rate"] == 0.01
    assert [r["path"] for r in result["raw_files"]] == ["data/sources/user.jsonl"]


def test_param_changed_without_rerun_and_edited_raw_file_and_code(tree):
    set_param(tree, "safety", "beta", 0.5)
    (tree / "data/sources/user.jsonl").write_text('{"a": 1}\n')
    (tree / "src/sft.py").write_text("# changed\n")
    result = audit.chain(tree, Path("models/safety"))
    assert result["params_changed"] == ["safety.beta"]
    safety = result["stages"][0]
    assert safety["params_changed"] == [{"key": "beta", "stamped": 0.1, "now": 0.5}]
    assert result["mismatches"] == ["data/sources/user.jsonl (MISMATCH)", "src/sft.py (MISMATCH)"]
    assert result["raw_files"][0]["status"] == "MISMATCH"


def test_cli_text_json_and_strict(tree, capsys):
    assert audit.main(["reports/safety/metrics.json", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [n["stage"] for n in result["stages"]] == ["safety", "sft", "ingest"]
    (tree / "data/raw/records.jsonl").write_text("tampered\n")
    assert audit.main(["models/safety", "--strict"]) == 1
    text = capsys.readouterr().out
    assert "input data/raw/records.jsonl" in text and "MISMATCH" in text
    assert "user: license CC-BY-4.0" in text and "DOES NOT MATCH the workspace (1)" in text


def test_report_audits_every_stamped_file(tree):
    (tree / "reports/report.md").write_text("# report\n")
    result = audit.chain(tree, Path("reports/report.md"))
    assert sorted({n["stage"] for n in result["stages"]}) == ["ingest", "safety", "sft"]


def test_unstamped_path_is_a_clear_error(tree):
    (tree / "plain.json").write_text("{}")
    with pytest.raises(SystemExit, match="plain.json: no lineage stamp"):
        audit.chain(tree, Path("plain.json"))


# --------------------------------------------------------------------------- adapter chains (real sft/safety runs)
ADAPTER_DVC = {"stages": {
    "base": {"cmd": "x", "deps": ["data/sources/models"], "params": ["seed", "model"], "outs": ["models/base"]},
    "sft": {"cmd": "x", "deps": ["models/base", "data/sft.jsonl"], "params": ["seed", "sft"], "outs": ["models/sft"]},
    "safety": {"cmd": "x", "deps": ["models/base", "models/sft", "data/pairs.jsonl"], "params": ["seed", "safety"],
               "outs": ["models/safety"]},
}}


def test_audit_follows_an_adapter_chain_to_the_base(tmp_path, monkeypatch, capsys):
    """models/safety (LoRA) on models/sft (LoRA) on models/base: the audit goes through both
    adapters to the base, and says so when the base weights under them change."""
    from safetensors.torch import load_file, save_file
    from test_base import PAIRS, write_jsonl, write_model, write_params
    from test_sft import SFT_DATA

    from instructflow import safety, sft

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(ADAPTER_DVC))
    write_model(tmp_path / "models/base")
    write_json(tmp_path / "models/base/lineage.json", lineage.stamp("base", [], {}, 0))
    write_jsonl(tmp_path / "data/sft.jsonl", SFT_DATA)
    write_jsonl(tmp_path / "data/pairs.jsonl", PAIRS * 4)
    recipe = {"epochs": 1.0, "batch_size": 4, "learning_rate": 1e-2, "threads": 1, "validation_fraction": 0.0,
              "max_length": 128, "lora_r": 4, "save_steps": 100}
    write_params(tmp_path / "params.yaml", sft={**recipe, "method": "lora"},
                 safety={**recipe, "lora": True, "method": "refusal_sft"})
    sft.main(["--base", "models/base", "--data", "data/sft.jsonl", "--checkpoints", "ckpt/sft"])
    safety.main(["--data", "data/pairs.jsonl", "--onpolicy", "none.jsonl", "--checkpoints", "ckpt/safety"])

    result = audit.chain(tmp_path, Path("models/safety"))
    assert [n["stage"] for n in result["stages"]] == ["safety", "sft", "base"]
    top = result["stages"][0]
    assert top["adapter"]["base"] == "models/sft" and top["adapter"]["status"] == "ok"
    assert [c["path"] for c in top["adapter"]["chain"]] == ["models/base", "models/sft"]
    assert {i["produced_by"] for i in top["inputs"]} >= {"base", "sft"}  # safety loaded models/base too
    assert result["stages"][1]["adapter"]["base"] == "models/base" and result["mismatches"] == []
    assert audit.main(["models/safety"]) == 0
    assert "lora adapter on models/sft" in capsys.readouterr().out

    weights = load_file(tmp_path / "models/base/model.safetensors")  # new weights under both adapters
    save_file({k: v * 1.01 for k, v in weights.items()}, tmp_path / "models/base/model.safetensors",
              metadata={"format": "pt"})
    result = audit.chain(tmp_path, Path("models/safety"))
    assert "models/base (adapter base MISMATCH)" in result["mismatches"]
    assert "models/base/model.safetensors (MISMATCH)" in result["mismatches"]
    assert audit.main(["models/safety", "--strict"]) == 1
