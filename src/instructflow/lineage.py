"""Lineage stamps: every metrics file and model folder says where it came from.

A stamp holds the stage, content hashes of its inputs, the params it used, the
code version (git commit and whether the tree was dirty), library versions and
the seed. No timestamps or durations: stamps live inside DVC-tracked outputs
and must be identical when inputs are identical.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "trl", "peft", "tokenizers", "datasets", "pandas",
             "great-expectations", "dvc", "snakemake", "dvclive", "accelerate")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_inputs(paths) -> dict[str, str]:
    """sha256 of every file under each path (folders expanded, sorted), keyed by path."""
    out: dict[str, str] = {}
    for p in map(Path, paths):
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            # The stamp itself and Snakemake's hidden markers (.snakemake_timestamp) are not inputs.
            if f.name == "lineage.json" or f.name.startswith("."):
                continue
            out[f.as_posix()] = file_sha256(f)
    return dict(sorted(out.items()))


def git_state() -> dict:
    """Commit and dirtiness of the code. DVC outputs are git-ignored, so they do not count as dirt."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "src", "Snakefile", "dvc.yaml"))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def stamp(stage: str, inputs, params, seed: int) -> dict:
    if is_dataclass(params):
        params = asdict(params)
    return {
        "stage": stage,
        "inputs": hash_inputs(inputs),
        "params": params,
        "seed": seed,
        "code": git_state(),
        "libraries": library_versions(),
    }
