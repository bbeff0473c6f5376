"""End to end: `dvc repro` on the tiny profile in a throwaway git repo.

Checks that the pipeline runs from a clean checkout, that the report and metrics
exist with sane quality, that a second `dvc repro` does nothing, that changing
one sft param reruns exactly sft and the stages after it, and that a second
clean run produces byte-identical outputs (same dvc.lock hashes).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e

DOWNSTREAM_OF_SFT = {"sft", "onpolicy", "safety", "evaluate", "report"}


def _merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        base[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return base


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"], env[f"GIT_{who}_EMAIL"] = "instructflow-ci", "ci@instructflow.invalid"
    return env


def run(cmd: list[str], cwd: Path, timeout: int = 1200) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{out[-6000:]}"
    return out


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def lock_outs(repo: Path) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for st in lock["stages"].values() for o in st.get("outs", [])}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, repo / f)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    _merge(params, yaml.safe_load((ROOT / "tests/profiles/tiny.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny profile"], repo)
    run(["dvc", "repro"], repo)
    return repo


def test_report_and_metrics_exist_with_quality(repo):
    md = (repo / "reports/report.md").read_text()
    assert "conservation: OK" in md and "Targets passed" in md
    assert (repo / "reports/report.html").read_text().startswith("<!DOCTYPE html>")
    m = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    # looser versions of the default's targets (the tiny profile trains for a minute)
    assert m["base"]["task_em"] <= 0.1
    # (measured on this profile: sft 0.98 seen / 0.80 held-out, safety refusal 1.0, over-refusal 0.0)
    assert m["sft"]["task_em_seen"] >= 0.7, m["sft"]
    assert m["sft"]["task_em_heldout"] >= 0.4, m["sft"]
    assert m["safety"]["refusal_heldout"] >= 0.8, m["safety"]
    assert m["safety"]["over_refusal_heldout"] <= 0.3, m["safety"]
    assert m["safety"]["task_em"] >= m["sft"]["task_em"] - 0.1
    for stage in ("ingest", "validate", "format", "filter"):
        stamp = json.loads((repo / f"reports/{stage}/summary.json").read_text())["lineage"]
        # code named by content (no commit: a fresh clone's rerun must give the same bytes)
        assert stamp["stage"] == stage and "commit" not in stamp["code"]
        files = stamp["code"]["files"]
        assert "Snakefile" in files and any(f.startswith(f"src/instructflow/{stage}") for f in files), files
        assert all(hashlib.sha256((repo / f).read_bytes()).hexdigest() == h for f, h in files.items())
    card = (repo / "models/safety/README.md").read_text()
    assert "models/sft/model.safetensors" in card and "data/filtered/pairs.jsonl" in card


def test_conservation_every_raw_record_accounted(repo):
    summary = {s: json.loads((repo / f"reports/{s}/summary.json").read_text()) for s in ("ingest", "validate", "filter")}
    raw, val, flt = summary["ingest"]["records"], summary["validate"], summary["filter"]
    assert raw == val["valid"] + val["quarantined"]
    assert val["valid"] == flt["kept_sft"] + flt["kept_pairs"] + flt["removed"] + flt["eval"]
    ids = [json.loads(line)["id"] for line in (repo / "data/raw/records.jsonl").read_text().splitlines()]
    placed = []
    for path in ("data/validated/quarantine.jsonl", "data/filtered/sft.jsonl", "data/filtered/pairs.jsonl",
                 "data/filtered/removed.jsonl", "data/formatted/eval.jsonl"):
        placed += [json.loads(line)["id"] for line in (repo / path).read_text().splitlines()]
    assert sorted(placed) == sorted(ids)


def test_second_repro_is_a_noop_and_status_clean(repo):
    assert stages_run(run(["dvc", "repro"], repo)) == set()
    assert "up to date" in run(["dvc", "status"], repo)


def test_clean_rerun_is_byte_identical(repo, tmp_path):
    first = lock_outs(repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run(["dvc", "repro"], clone)
    assert lock_outs(clone) == first


def test_changing_an_sft_param_reruns_only_sft_and_later(repo):
    out = run(["dvc", "exp", "run", "-S", "sft.learning_rate=2e-3"], repo)
    assert stages_run(out) == DOWNSTREAM_OF_SFT
    diff = run(["dvc", "params", "diff"], repo)
    assert "sft.learning_rate" in diff
