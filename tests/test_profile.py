"""Applying a params profile: keys merge one by one, lists replace, comments stay,
a bad key changes nothing, and the shipped profiles fit the schema."""

import shutil

import pytest

from instructflow import config, profile

from conftest import ROOT


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    return path


def test_apply_merges_key_by_key_and_keeps_comments(params, tmp_path):
    before = config.read_params(params)
    prof = tmp_path / "p.yaml"
    prof.write_text("onpolicy:\n  max_prompts: 12\n  harmless_share: 0.25\n"
                    "ingest:\n  sources:\n    - {name: dolly, path: data/sources/x.csv, format: dolly, license: MIT}\n")
    profile.main(["apply", str(prof), "--params", str(params)])
    after = config.read_params(params)
    assert after["onpolicy"]["max_prompts"] == 12 and after["onpolicy"]["harmless_share"] == 0.25
    assert after["onpolicy"]["batch_size"] == before["onpolicy"]["batch_size"], "untouched keys stay"
    assert after["ingest"]["sources"] == [{"name": "dolly", "path": "data/sources/x.csv", "format": "dolly",
                                           "license": "MIT"}], "a list replaces the old one"
    assert after["ingest"]["generator"] == before["ingest"]["generator"]
    assert {k: v for k, v in after.items() if k not in ("onpolicy", "ingest")} == \
        {k: v for k, v in before.items() if k not in ("onpolicy", "ingest")}
    first = (ROOT / "params.yaml").read_text().splitlines()[0]
    assert first.startswith("#") and params.read_text().splitlines()[0] == first, "comments survive"


def test_strings_that_look_like_booleans_stay_strings(params, tmp_path):
    # DICES labels are the strings "Yes"/"No"; YAML 1.1 (the stages' reader) would make them booleans
    prof = tmp_path / "p.yaml"
    prof.write_text('ingest:\n  sources:\n    - {name: dices, path: data/sources/d.json, format: labelled,\n'
                    '       license: CC-BY-4.0, positive: ["Yes"], negative: ["No", "off"]}\n')
    profile.main(["apply", str(prof), "--params", str(params)])
    source = config.read_params(params)["ingest"]["sources"][0]
    assert source["positive"] == ["Yes"] and source["negative"] == ["No", "off"]


def test_bad_profile_changes_nothing_and_names_the_key(params, tmp_path):
    prof = tmp_path / "bad.yaml"
    prof.write_text("onpolicy:\n  max_promts: 12\n")
    text = params.read_text()
    with pytest.raises(SystemExit) as err:
        profile.main(["apply", str(prof), "--params", str(params)])
    assert "max_promts" in str(err.value) and str(prof) in str(err.value)
    assert params.read_text() == text
    prof.write_text("onpolicy:\n  harmless_share: 1.5\n")
    with pytest.raises(SystemExit, match="harmless_share"):
        profile.main(["apply", str(prof), "--params", str(params)])


def test_flags_spell_the_profile_for_dvc_exp_run(tmp_path, capsys):
    prof = tmp_path / "p.yaml"
    prof.write_text("sft:\n  learning_rate: 1.0e-4\n  method: lora\nonpolicy:\n  max_prompts: 12\n")
    profile.main(["flags", str(prof)])
    assert capsys.readouterr().out.split() == ["-S", "sft.learning_rate=0.0001", "-S", 'sft.method="lora"',
                                                "-S", "onpolicy.max_prompts=12"]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "profiles" / "params").glob("*.yaml")))
def test_shipped_profiles_apply_to_params(name, params):
    text = profile.applied(ROOT / "profiles" / "params" / name, params)
    assert text != params.read_text()


@pytest.mark.parametrize("name, target", [("smollm2.yaml", "smollm2-data"), ("detector-shared.yaml", "detector-shared")])
def test_the_make_target_copies_every_shared_file_the_profile_reads(name, target):
    """A source added to a profile but not to its Makefile copy list would only fail in a user's `dvc repro`."""
    import re
    import shutil as sh
    import subprocess

    import yaml

    if not sh.which("make"):
        pytest.skip("make is not installed")
    # the target's recipe, printed (-n), not run: its `cp --parents` line names every file it copies
    out = subprocess.run(["make", "-n", target, "SHARED=/nonexistent"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    copied = set()
    for line in out.splitlines():
        if "cp --parents" in line:
            copied |= set(re.findall(r"(\S+/\S+)", line.split("cp --parents", 1)[1]))
    sources = yaml.safe_load((ROOT / "profiles" / "params" / name).read_text())["ingest"]["sources"]
    wanted = {s["path"].removeprefix("data/sources/shared/") for s in sources
              if s["path"].startswith("data/sources/shared/")}
    assert wanted and not wanted - copied, f"not copied by `make {target}`: {sorted(wanted - copied)}"
