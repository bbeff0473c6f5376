"""`make bench`: time a clean `dvc repro` of the default pipeline, side by side per stage.

Copies the tracked tree into a throwaway git repo (so the workspace's outputs and
DVC cache are untouched), runs `dvc repro` there `--repeats` times from clean,
and writes the median wall time of the whole run and of each stage (from
Snakemake's benchmark files) to `benchmarks/bench.json`. Timing never goes into
DVC-tracked files and is never asserted in tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("ingest", "validate", "format", "filter", "base", "sft", "safety", "evaluate", "report")


def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        if Path(f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dst / f)


def one_run(work: Path, env: dict) -> dict:
    for d in ("data/raw", "data/validated", "data/formatted", "data/filtered", "models", "benchmarks", ".dvc/cache"):
        shutil.rmtree(work / d, ignore_errors=True)
    (work / "dvc.lock").unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(["dvc", "repro"], cwd=work, env=env, check=True, capture_output=True)
    total = time.perf_counter() - start
    stages = {}
    for s in STAGES:
        with open(work / "benchmarks" / f"{s}.tsv") as fh:
            stages[s] = float(next(csv.DictReader(fh, delimiter="\t"))["s"])
    return {"total_s": total, "stages_s": stages}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/bench.json")
    ap.add_argument("--repeats", type=int, default=1, help="clean runs to take the median of")
    args = ap.parse_args(argv)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for who in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{who}_NAME", "instructflow-bench")
        env.setdefault(f"GIT_{who}_EMAIL", "bench@instructflow.invalid")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "repo"
        copy_tree(work)
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
            subprocess.run(cmd, cwd=work, env=env, check=True)
        runs = [one_run(work, env) for _ in range(args.repeats)]
    result = {
        "what": "clean `dvc repro` of the default params.yaml",
        "cpu_count": os.cpu_count(), "repeats": args.repeats,
        "total_s_median": round(statistics.median(r["total_s"] for r in runs), 1),
        "stages_s_median": {s: round(statistics.median(r["stages_s"][s] for r in runs), 1) for s in STAGES},
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("total_s_median", "stages_s_median")}, indent=2))


if __name__ == "__main__":
    main()
