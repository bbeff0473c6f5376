"""What is versioned where: cache: false metrics, plots and the report in git, models and data in
the DVC cache; a push / clone / pull round trip leaves nothing stale.

The round trip runs the project's own dvc.yaml, params.yaml and .gitignore with every stage's
command replaced by a stand-in that writes deterministic bytes to the stage's outputs, so it tests
the configuration (which outputs git holds, which the cache holds), not the training.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# A stage stand-in: writes every declared output (folders: one file inside) from the stage name and the
# sha256 of its declared deps, so outputs change exactly when inputs change.
FAKE = r'''
import hashlib, sys, yaml
from pathlib import Path
stage = sys.argv[1]
stages = yaml.safe_load(open("dvc.yaml"))["stages"]
entry = stages[stage]
name = lambda e: next(iter(e)) if isinstance(e, dict) else e
wanted = {name(d) for e in stages.values() for d in e.get("deps", [])}  # files other stages read
h = hashlib.sha256(stage.encode())
for dep in sorted(map(name, entry.get("deps", []))):
    for f in sorted(p for p in ([Path(dep)] if Path(dep).is_file() else Path(dep).rglob("*")) if p.is_file()):
        h.update(f.read_bytes())
for out in [name(e) for key in ("outs", "metrics", "plots") for e in entry.get(key, [])]:
    p = Path(out)
    targets = [p] if p.suffix else [p / "data.tsv", *(Path(w) for w in wanted if w.startswith(out + "/"))]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text('{"value": "%s"}\n' % h.hexdigest() if target.suffix == ".json" else h.hexdigest() + "\n")
'''


def _outs(entry: dict) -> list[tuple[str, bool]]:
    """(path, cached) of every output of a dvc.yaml stage."""
    out = []
    for key in ("outs", "metrics", "plots"):
        for e in entry.get(key) or []:
            path, opts = (next(iter(e.items())) if isinstance(e, dict) else (e, {}))
            out.append((path, (opts or {}).get("cache", key == "outs")))
    return out


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _git_ignored(repo: Path, path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=repo).returncode == 0


def test_uncached_outputs_go_to_git_and_cached_ones_do_not():
    """The rule the round trip depends on, checked on the real files (fast)."""
    for stage, entry in _stages().items():
        for path, cached in _outs(entry):
            probe = path if Path(path).suffix else f"{path}/data.tsv"
            assert _git_ignored(ROOT, probe) == cached, (
                f"{stage}: {path} is {'cached by DVC' if cached else 'cache: false'} but "
                f"{'not ' if cached else ''}git-ignored")
    assert not (ROOT / ".gitignore").read_text().count("/reports/*/"), "metrics must not be git-ignored"


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _project(tmp: Path) -> Path:
    """A git + DVC repo with the project's dvc.yaml (stand-in commands), params, .gitignore and sources."""
    repo = tmp / "origin"
    repo.mkdir()
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    dvc_yaml.pop("vars", None)
    for stage, entry in dvc_yaml["stages"].items():
        entry["cmd"] = f"python fake_stage.py {stage}"
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (repo / "fake_stage.py").write_text(FAKE)
    for name in ("params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    produced = {p for e in dvc_yaml["stages"].values() for p, _ in _outs(e)}
    for entry in dvc_yaml["stages"].values():  # source deps (code, Snakefile, data/sources): copied
        for dep in entry.get("deps") or []:
            if not any(dep == p or dep.startswith(p + "/") or p.startswith(dep + "/") for p in produced):
                src = ROOT / dep
                if src.is_dir():
                    shutil.copytree(src, repo / dep, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:  # a file (a missing one is the contract test's business: a placeholder here)
                    (repo / dep).parent.mkdir(parents=True, exist_ok=True)
                    (repo / dep).write_bytes(src.read_bytes() if src.is_file() else dep.encode())
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    return repo


@pytest.mark.slow
def test_push_clone_pull_leaves_nothing_stale(tmp_path):
    repo = _project(tmp_path)
    run(["dvc", "repro", "--quiet"], repo)
    run(["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo)
    tracked = run(["git", "ls-files"], repo).split()
    assert "reports/evaluate/metrics.json" in tracked and "reports/report.html" in tracked
    assert any(p.startswith("reports/sft/live/") for p in tracked)
    assert not any(p.startswith(("models/", "data/raw/")) for p in tracked)
    run(["dvc", "push", "-q"], repo)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    # metrics are there before any pull: `dvc metrics show` reads numbers straight from git
    assert json.loads((clone / "reports/evaluate/metrics.json").read_text())["value"]
    run(["dvc", "pull", "-q"], clone)
    assert (clone / "models/safety").is_dir()
    for folder in {Path(d) for e in _stages().values() for d in e.get("deps") or []
                   if d.startswith("src/") and (ROOT / d).is_dir()}:  # importing a stage writes byte-code
        (clone / folder / "__pycache__").mkdir(parents=True, exist_ok=True)
        (clone / folder / "__pycache__" / "stage.cpython-311.pyc").write_bytes(b"not code")
    status = json.loads(run(["dvc", "status", "--json"], clone) or "{}")
    assert status == {}, status
    out = run(["dvc", "repro"], clone)
    assert "Running stage" not in out, out
    assert run(["git", "status", "--porcelain"], clone) == ""  # dvc.lock and every committed output unchanged
