"""Lineage stamps: inputs, params and code named by content, no commit and no clock inside."""

import json
import shutil
import subprocess
from pathlib import Path

from instructflow import lineage
from instructflow.config import FormatConfig

ROOT = Path(__file__).resolve().parents[1]


def test_stamp_hashes_inputs_and_carries_params(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    (tmp_path / "d" / ".snakemake_timestamp").write_text("")
    (tmp_path / "d" / "lineage.json").write_text("{}")
    (tmp_path / "b.txt").write_text("b")
    stamp = lineage.stamp("format", [tmp_path / "d", tmp_path / "b.txt"], FormatConfig(eval_fraction=0.2), 7)
    assert stamp["stage"] == "format" and stamp["seed"] == 7
    assert stamp["params"]["eval_fraction"] == 0.2
    names = [p.rsplit("/", 1)[-1] for p in stamp["inputs"]]
    assert sorted(names) == ["a.txt", "b.txt"]
    assert stamp["inputs"][(tmp_path / "b.txt").as_posix()] == lineage.file_sha256(tmp_path / "b.txt")
    assert {"torch", "transformers", "trl"} <= set(stamp["libraries"])
    assert stamp["machine"]["cores"] >= 1 and stamp["machine"]["cpu"]
    # no clocks: the same inputs stamp the same way
    assert lineage.stamp("format", [tmp_path / "d", tmp_path / "b.txt"], FormatConfig(eval_fraction=0.2), 7) == stamp


def test_code_is_named_by_the_content_of_the_files_dvc_yaml_lists(monkeypatch):
    monkeypatch.chdir(ROOT)
    stamp = lineage.stamp("format", [], {}, 1)
    assert "commit" not in json.dumps(stamp["code"]) and "dirty" not in stamp["code"]
    files = stamp["code"]["files"]
    assert set(files) == set(lineage.declared_code("format")) and "Snakefile" in files
    assert files["src/instructflow/format.py"] == lineage.file_sha256(ROOT / "src/instructflow/format.py")
    assert stamp["code"]["sha256"] == lineage.code_digest(files)
    # a change to one byte of one file changes the code version
    assert lineage.code_digest({**files, "Snakefile": "0" * 64}) != stamp["code"]["sha256"]


def test_without_dvc_yaml_the_import_closure_names_the_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = lineage.code_hashes("format")
    stems = {Path(p).stem for p in files}
    assert stems == {Path(d).stem for d in _declared_in_repo("format") if d.startswith("src/")}
    assert all(p.startswith("src/instructflow/") for p in files)


def _declared_in_repo(stage):
    return lineage.declared_code(stage, ROOT / "dvc.yaml")


def test_stamp_is_the_same_in_a_fresh_clone_at_a_later_commit(tmp_path):
    """The point of leaving the commit out: a clone whose HEAD differs stamps the same bytes."""
    if shutil.which("git") is None:
        import pytest

        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    (repo / "src/instructflow").mkdir(parents=True)
    for name in ["dvc.yaml", *_declared_in_repo("format")]:
        (repo / name).write_text((ROOT / name).read_text())
    (repo / "in.txt").write_text("x")

    def git(*args, cwd=repo):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                       capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "code")
    first = _stamp_in(repo)
    (repo / "results.txt").write_text("numbers")
    git("add", "results.txt")
    git("commit", "-qm", "results")  # HEAD moves, the code does not
    git("clone", "-q", str(repo), str(tmp_path / "clone"), cwd=tmp_path)
    assert _stamp_in(tmp_path / "clone") == first


def _stamp_in(repo):
    out = subprocess.run(
        [__import__("sys").executable, "-c",
         "import json; from instructflow import lineage; print(json.dumps(lineage.stamp('format', ['in.txt'], {}, 1)))"],
        cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "at git commit" in out.stderr  # the commit goes to the log, not into the stamp
    return out.stdout


def test_import_closure_fallback_agrees_with_dvc_yaml_for_every_stage():
    """Outside the repository the stamp names the code by the stage's imports; inside, by dvc.yaml's code
    deps. Both must name the same files, or a stage run elsewhere would stamp another code version."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in stages:
        declared = {p for p in lineage.hash_inputs([ROOT / d for d in lineage.declared_code(name, ROOT / "dvc.yaml")
                                                    if d.startswith("src/")])}
        imported = {p.as_posix() for p in lineage.imported_code(name)}
        assert {Path(p).resolve().as_posix() for p in declared} == imported, name
