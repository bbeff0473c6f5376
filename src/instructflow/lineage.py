"""Lineage stamps: every metrics file and model folder says where it came from.

A stamp holds the stage, content hashes of its inputs, the params it used, the
code (sha256 of every file the stage runs, as `dvc.lock` names code), library
versions, the machine and the seed. No timestamps or durations: stamps live
inside DVC-tracked outputs and must be identical when inputs are identical.

Why the git commit is NOT in a stamp: a commit names the history, not the
bytes. A fresh clone that reruns the committed pipeline has a different HEAD
(the results commit comes after the code commit), so a stamped commit would
change every output hash and leave `dvc.lock` modified although nothing that
matters differs. The commit is informational: `stamp()` prints it to the stage
log (logs/ is not tracked), and `instructflow-audit` shows the workspace's
commit and which code hashes still match it.

Why the machine IS in a stamp: the same code and seed on another CPU gives
metrics within ~0.03 and different bytes (DESIGN.md section 7). Bit-identity
holds per machine, so the stamp says which machine the bytes belong to; on the
same machine it is constant and reruns stay byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "trl", "peft", "tokenizers", "datasets", "pandas",
             "great-expectations", "dvc", "snakemake", "dvclive", "accelerate")
PACKAGE = Path(__file__).resolve().parent  # src/instructflow
DVC_YAML = "dvc.yaml"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_under(p: Path) -> list[Path]:
    """A file, or every file under a folder (sorted), without hidden files and byte-code."""
    if not p.is_dir():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                  and not any(part.startswith(".") for part in f.relative_to(p).parts))


def hash_inputs(paths) -> dict[str, str]:
    """sha256 of every file under each path (folders expanded, sorted), keyed by path."""
    out: dict[str, str] = {}
    for p in map(Path, paths):
        for f in files_under(p):
            # The stamp itself and Snakemake's hidden markers (.snakemake_timestamp) are not inputs.
            if f.name == "lineage.json" or f.name.startswith("."):
                continue
            out[f.as_posix()] = file_sha256(f)
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- code
def _is_code(dep: str) -> bool:
    return dep == "Snakefile" or dep.startswith("src/")


def declared_code(stage: str, dvc_yaml: str | Path = DVC_YAML) -> list[str] | None:
    """The stage's code deps as dvc.yaml lists them (Snakefile and src/ files), or None."""
    path = Path(dvc_yaml)
    if not path.is_file():
        return None
    import yaml

    entry = ((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}).get(stage)
    if not entry:
        return None
    return [d for d in (next(iter(d)) if isinstance(d, dict) else d for d in entry.get("deps") or []) if _is_code(d)]


def imported_code(module: str) -> list[Path]:
    """The package files `module` runs: itself and every package module it imports (ast, transitively).

    Used when there is no dvc.yaml (a stage run outside the repository); the contract test
    holds dvc.yaml's code deps to exactly this set."""
    import ast

    def source(name: str) -> Path | None:
        rel = Path(*name.split("."))
        for cand in (PACKAGE / rel / "__init__.py", PACKAGE / rel.with_suffix(".py")):
            if cand.is_file():
                return cand
        return None

    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or (path := source(name)) is None:
            continue
        seen[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                parts = package.split(".") if package else []
                base = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                prefix = ".".join([*base, node.module] if node.module else base)
                todo += [prefix] if node.module else [f"{prefix}.{a.name}".lstrip(".") for a in node.names]
                if node.module:  # `from .pkg import mod` may name submodules
                    todo += [f"{prefix}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{PACKAGE.name}."):
                mod = node.module[len(PACKAGE.name) + 1:]
                todo += [mod, *(f"{mod}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.ImportFrom) and node.module == PACKAGE.name:
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                todo += [a.name[len(PACKAGE.name) + 1:] for a in node.names if a.name.startswith(f"{PACKAGE.name}.")]
    files = []
    for path in seen.values():
        files += files_under(path.parent) if path.name == "__init__.py" else [path]
    return sorted(set(files))


def code_hashes(stage: str, dvc_yaml: str | Path = DVC_YAML) -> dict[str, str]:
    """sha256 of every file the stage runs, keyed by repository path."""
    declared = declared_code(stage, dvc_yaml)
    if declared is not None:
        return hash_inputs(declared)
    root = PACKAGE.parent.parent if PACKAGE.parent.name == "src" else PACKAGE.parent  # keys read src/instructflow/...
    return {f.relative_to(root).as_posix(): file_sha256(f) for f in imported_code(stage)}


def code_digest(files: dict[str, str]) -> str:
    """One sha256 over (path, sha256) pairs: the code version a reader compares."""
    return hashlib.sha256("".join(f"{p}\0{h}\n" for p, h in sorted(files.items())).encode()).hexdigest()


def git_state() -> dict:
    """Commit and dirtiness of the workspace (informational: never inside a tracked output)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "src", "Snakefile", "dvc.yaml"))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


# --------------------------------------------------------------------------- machine and libraries
def machine() -> dict:
    """CPU model, usable cores and architecture; the GPU when torch is loaded and sees one."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {"cpu": cpu, "cores": cores, "arch": platform.machine(), "os": platform.system()}
    torch = sys.modules.get("torch")  # never import torch just for this (1.5 s)
    if torch is not None:
        out["cpu_native_bf16"] = native_bf16("cpu")  # what `dtype: fast` resolves to on this CPU
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    return out


def native_bf16(device: str) -> bool:
    """Whether the hardware runs bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (oneDNN's check). Elsewhere bf16 is emulated and slower than float32.
    Here, not in training, because every stage's lineage records it and the data stages must
    not depend on training's code."""
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


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
    files = code_hashes(stage)
    git = git_state()
    print(f"lineage: {stage} code {code_digest(files)[:12]} at git commit {git['commit'] or 'n/a'}"
          f"{' (uncommitted changes)' if git['dirty'] else ''} (informational, not stamped)", file=sys.stderr)
    return {
        "stage": stage,
        "inputs": hash_inputs(inputs),
        "params": params,
        "seed": seed,
        "code": {"sha256": code_digest(files), "files": files},
        "libraries": library_versions(),
        "machine": machine(),
    }
