"""`make bench` (data half): validate + format + filter at 10k / 100k / 1M synthetic records.

    python -m instructflow.bench_data [--sizes 10000 100000 1000000] [--out benchmarks/data_scale.json]

A throwaway workspace gets the project's params.yaml; the built-in corpus goes through
ingest -> validate -> format -> detector once (not timed) so the filter has a trained
detector. Then, per size, a seeded generator writes N raw records with the mix a real
corpus has (single- and multi-turn SFT, preference pairs, prompt-only and labelled rows,
about 1 % broken: parse errors, empty turns, exact duplicates) and each stage runs in
its own process, as `dvc repro` would run it (with its worker processes: the stages' `workers`
params, 0 = every usable core), timed (wall and CPU seconds, workers included) with its peak
memory, and the load average noted (other jobs inflate wall time). Figures go to `--out`
(never to a DVC-tracked file) and are never asserted in tests.

Then, side by side in the benchmark's own process (`word_ngrams` in the figures): the filter's word n-gram
features of the synthetic SFT texts by scikit-learn and by `filter.ngrams` (the detector's hashed
word grams, the offensive member's vocabulary counts), interleaved repeats, medians and their
ratio, and whether the two matrices are equal.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .records import atomic_open, dumps, make_record

STAGES = ("validate", "format", "filter")
# Run a stage module in a child process and report its peak RSS (ru_maxrss, KiB on Linux) and CPU
# seconds: its own and its worker processes' (RUSAGE_CHILDREN: the pool's workers, once joined).
WRAPPER = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; "
           "code = 0\ntry:\n runpy.run_module(sys.argv[0], run_name='__main__')\n"
           "except SystemExit as e:\n code = e.code\n"
           "u = resource.getrusage(resource.RUSAGE_SELF)\n"
           "c = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
           "print('BENCH_MAXRSS_KB', u.ru_maxrss, u.ru_utime + u.ru_stime, c.ru_maxrss, c.ru_utime + c.ru_stime,"
           " file=sys.stderr)\n"
           "sys.exit(code)")


def vocabulary(rng: random.Random, n: int = 6000) -> list[str]:
    """Pseudo-words with a Zipf-like reuse, so texts are varied (no accidental near duplicates)."""
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    weights = [13, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    return ["".join(rng.choices(letters, weights, k=rng.randint(2, 9))) for _ in range(n)]


def synthetic_records(n: int, seed: int, path: Path) -> dict:
    """Write n raw records; returns the mix actually written."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(words))))  # Zipf weights, summed once

    def text(lo: int, hi: int, end: str = ".") -> str:
        return " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(lo, hi))).capitalize() + end

    mix = {"sft": 0, "multi_turn": 0, "preference": 0, "prompt": 0, "labelled": 0, "broken": 0, "duplicate": 0}
    last: dict | None = None
    with atomic_open(path) as fh:
        for i in range(n):
            loc = f"data/sources/synthetic.jsonl:line={i + 1}"
            r = rng.random()
            if r < 0.004:
                rec = make_record("synthetic", loc, "CC0-1.0", "messages", error=f"{loc}: not valid JSON")
                mix["broken"] += 1
            elif r < 0.008:
                rec = make_record("synthetic", loc, "CC0-1.0", "alpaca",
                                  messages=[{"role": "user", "content": text(5, 20, "?")},
                                            {"role": "assistant", "content": ""}])
                mix["broken"] += 1
            elif r < 0.01 and last is not None:
                rec = {**last, "id": make_record("synthetic", loc, "", "")["id"], "locator": loc}
                mix["duplicate"] += 1
            elif r < 0.62:
                rec = make_record("synthetic", loc, "CC0-1.0", "alpaca",
                                  messages=[{"role": "user", "content": text(6, 40, "?")},
                                            {"role": "assistant", "content": text(10, 120)}])
                mix["sft"] += 1
            elif r < 0.72:
                turns = []
                for _ in range(rng.randint(2, 3)):
                    turns += [{"role": "user", "content": text(4, 25, "?")},
                              {"role": "assistant", "content": text(8, 60)}]
                rec = make_record("synthetic", loc, "CC0-1.0", "sharegpt", messages=turns)
                mix["multi_turn"] += 1
            elif r < 0.87:
                rec = make_record("synthetic", loc, "CC0-1.0", "preference",
                                  messages=[{"role": "user", "content": text(6, 30, "?")}],
                                  chosen=text(10, 80), rejected=text(10, 80))
                mix["preference"] += 1
            elif r < 0.93:
                rec = make_record("synthetic", loc, "CC0-1.0", "prompts", kind="prompt",
                                  messages=[{"role": "user", "content": text(6, 30, "?")}],
                                  labels={"harmful": rng.random() < 0.5, "style": "question"})
                mix["prompt"] += 1
            else:
                rec = make_record("synthetic", loc, "CC0-1.0", "labelled", kind="labelled",
                                  messages=[{"role": "user", "content": text(5, 40)}],
                                  labels={"harmful": int(rng.random() < 0.3), "task": "toxicity"})
                mix["labelled"] += 1
            last = rec if rec["error"] is None else last
            fh.write(dumps(rec) + "\n")
    return mix


def run_stage(module: str, args: list[str], cwd: Path, env: dict, log: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, f"instructflow.{module}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {module} failed (exit {proc.returncode}); see {log}\n{proc.stderr[-2000:]}")
    usage = [line.split()[1:] for line in proc.stderr.splitlines() if line.startswith("BENCH_MAXRSS_KB")]
    if not usage:
        return {"wall_s": round(wall, 2), "cpu_s": None, "max_rss_mb": None}
    rss, cpu, child_rss, child_cpu = usage[-1]
    # CPU seconds (user + system, the stage's process and its workers) say what the stage costs even
    # when other jobs share the cores; wall seconds are what a user waits. Peak RSS: the stage's
    # process, and the largest worker (each worker holds its own chunk).
    return {"wall_s": round(wall, 2), "cpu_s": round(float(cpu) + float(child_cpu), 2),
            "cpu_workers_s": round(float(child_cpu), 2), "max_rss_mb": round(int(rss) / 1024, 1),
            "max_worker_rss_mb": round(int(child_rss) / 1024, 1)}


def word_ngrams_bench(texts: list[str], detector_dir: Path, repeats: int = 5) -> dict:
    """scikit-learn against filter.ngrams on the same texts: medians of interleaved repeats (seconds)."""
    import statistics

    import numpy as np

    from .filter import ngrams, offensive
    from .filter.detector import word_hasher

    hv = word_hasher(2**18)
    cases = {"hashed word 1-2 grams (detector)": (hv.transform,
                                                  lambda t: ngrams.hashed_counts(t, 2**18, hv.transform))}
    member = offensive.load(detector_dir)
    if member is not None:
        cases["vocabulary counts (offensive member)"] = (
            member.counter.transform, lambda t: ngrams.vocab_counts(t, member.vocab, member.counter.transform))
    out = {}
    for name, (sk, fast) in cases.items():
        times: dict[str, list[float]] = {"sklearn": [], "numpy": []}
        equal = True
        for _ in range(repeats):
            for label, fn in (("sklearn", sk), ("numpy", fast)):
                t0 = time.perf_counter()
                x = fn(texts)
                times[label].append(time.perf_counter() - t0)
                if label == "sklearn":
                    want = x
            equal = equal and all(np.array_equal(getattr(want, a), getattr(x, a))
                                  for a in ("indptr", "indices", "data"))
        med = {k: statistics.median(v) for k, v in times.items()}
        out[name] = {"texts": len(texts), "repeats": repeats, "sklearn_s": round(med["sklearn"], 4),
                     "numpy_s": round(med["numpy"], 4), "speedup": round(med["sklearn"] / med["numpy"], 2),
                     "equal": bool(equal)}
        print(f"bench: {name}: sklearn {med['sklearn']:.3f} s, numpy {med['numpy']:.3f} s "
              f"(x{med['sklearn'] / med['numpy']:.2f}), equal {equal}", flush=True)
    return out


def prepare(work: Path, params: Path, env: dict) -> None:
    """The built-in corpus through ingest..detector once, for a trained detector (not timed)."""
    shutil.copy(params, work / "params.yaml")
    logs = work / "logs"
    for module, args in (("ingest", []), ("validate", ["--no-datadocs"]), ("format", []), ("detector", [])):
        run_stage(module, args, work, env, logs / f"prepare-{module}.log")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--out", default="benchmarks/data_scale.json")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--work", default="", help="keep the workspace here (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    src = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), GX_ANALYTICS_ENABLED="False")
    out = Path(args.out).resolve()
    params = Path(args.params).resolve()
    tmp = None if args.work else tempfile.TemporaryDirectory()
    work = Path(args.work or tmp.name).resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    result = {
        "what": "validate + format + filter on N synthetic raw records, each stage in its own process "
                "(with its worker processes: `workers` params, 0 = every usable core)",
        "machine": {"cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
                    "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version(), "platform": platform.platform()},
        "sizes": {},
    }
    try:
        prepare(work, params, env)
        for n in args.sizes:
            run_dir = work / f"n{n}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir()
            t0 = time.perf_counter()
            mix = synthetic_records(n, args.seed, run_dir / "raw.jsonl")
            # Other jobs on the machine inflate wall seconds (not CPU seconds): the load says how much.
            load_before = [round(x, 2) for x in os.getloadavg()]
            gen_s = time.perf_counter() - t0
            stages = {
                "validate": run_stage("validate", ["--params", str(work / "params.yaml"), "--raw", "raw.jsonl",
                                                   "--out", "validated", "--report", "rep/validate"],
                                      run_dir, env, run_dir / "validate.log"),
                "format": run_stage("format", ["--params", str(work / "params.yaml"), "--valid",
                                               "validated/valid.jsonl", "--out", "formatted", "--report",
                                               "rep/format"], run_dir, env, run_dir / "format.log"),
                "filter": run_stage("filter", ["--params", str(work / "params.yaml"), "--formatted", "formatted",
                                               "--detector", str(work / "models/detector"), "--out", "filtered",
                                               "--report", "rep/filter"], run_dir, env, run_dir / "filter.log"),
            }
            total = sum(s["wall_s"] for s in stages.values())  # the stages run one after the other
            cpu = sum(s["cpu_s"] or 0 for s in stages.values())
            val = json.loads((run_dir / "rep/validate/summary.json").read_text())
            result["sizes"][str(n)] = {
                "records": n, "mix": mix, "generate_s": round(gen_s, 1), "stages": stages,
                "total_s": round(total, 1), "total_cpu_s": round(cpu, 1), "records_per_s": round(n / total),
                "under_a_minute": total < 60, "load_avg_before": load_before,
                "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                "valid": val["valid"], "quarantined": val["quarantined"],
            }
            print(f"bench: {n} records: " + ", ".join(f"{s} {v['wall_s']} s wall, {v['cpu_s']} s CPU "
                                                      f"({v['max_rss_mb']} MB)" for s, v in stages.items())
                  + f"; total {total:.1f} s wall, {cpu:.1f} s CPU; load {os.getloadavg()[0]:.1f}", flush=True)
            if not args.work:
                shutil.rmtree(run_dir, ignore_errors=True)
            # keep what we have so far, in case a bigger size is stopped
            sizes = sorted(result["sizes"], key=int)
            result["growth"] = {f"{b}/{a}": {k: round(result["sizes"][b][k] / result["sizes"][a][k], 2)
                                             for k in ("total_s", "total_cpu_s")}
                                for a, b in zip(sizes, sizes[1:])}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
        # Last: a stage process started after this would report this process's memory as its own
        # (Linux keeps the peak RSS across fork and exec).
        mix_dir = work / "ngrams"
        mix_dir.mkdir(exist_ok=True)
        synthetic_records(20_000, args.seed, mix_dir / "raw.jsonl")
        with open(mix_dir / "raw.jsonl") as fh:
            texts = [m["content"] for line in fh for m in (json.loads(line).get("messages") or [])]
        result["word_ngrams"] = word_ngrams_bench(texts, work / "models/detector")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(json.dumps({k: result[k] for k in ("word_ngrams", "sizes", "growth") if k in result}, indent=1)[:3000])


if __name__ == "__main__":
    main()
