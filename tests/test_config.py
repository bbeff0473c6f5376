from pathlib import Path

import pytest
import yaml

from instructflow import config

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, mutate):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_scientific_notation_is_a_float(tmp_path):
    path = _write(tmp_path, lambda p: p["sft"].update(learning_rate=0.123456))
    path.write_text(path.read_text().replace("0.123456", "3e-4"))  # as `dvc exp run -S` may write it
    assert "learning_rate: 3e-4" in path.read_text()
    cfg, _ = config.load("sft", path)
    assert cfg.learning_rate == pytest.approx(3e-4)


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, lambda p: p["sft"].update(learning_rat=0.1))
    with pytest.raises(config.ParamsError, match="sft.*learning_rat"):
        config.load("sft", path)


def test_wrong_type_is_named(tmp_path):
    path = _write(tmp_path, lambda p: p["safety"].update(beta="high"))
    with pytest.raises(config.ParamsError, match="safety.beta"):
        config.load("safety", path)


def test_bad_method_is_named(tmp_path):
    path = _write(tmp_path, lambda p: p["safety"].update(method="ppo"))
    with pytest.raises(config.ParamsError, match="safety.method"):
        config.load("safety", path)


def test_schema_has_help_for_every_field():
    schema = config.params_schema()
    for name, section in schema["properties"].items():
        if name == "seed":
            continue
        for key, prop in section["properties"].items():
            assert prop["description"], f"{name}.{key} has no help text"
