"""The allocator the Snakefile preloads: chosen by INSTRUCTFLOW_MALLOC, found by the loader, and
actually in the stage's process (not only in its command line)."""

import subprocess
import sys

import pytest

from instructflow import malloc

from conftest import ROOT


def test_preload_follows_the_setting():
    assert malloc.preload({"INSTRUCTFLOW_MALLOC": "system"}) == ""
    assert malloc.preload({"INSTRUCTFLOW_MALLOC": "/opt/lib/libjemalloc.so.2"}) == "/opt/lib/libjemalloc.so.2"
    found = malloc.preload({})
    assert found == malloc.preload({"INSTRUCTFLOW_MALLOC": "auto"})
    assert found == "" or "tcmalloc" in found


def test_a_preloaded_allocator_is_the_one_the_process_runs_with():
    code = "from instructflow import malloc; print(malloc.current())"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONPATH": str(ROOT / "src")}).stdout.strip()
    assert plain == "glibc"
    lib = malloc.preload({})
    if not lib:
        pytest.skip("no tcmalloc on this machine (Debian: libtcmalloc-minimal4; `make install` adds it as root)")
    pre = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "LD_PRELOAD": lib}).stdout.strip()
    assert pre.startswith("libtcmalloc"), pre


def test_the_snakefile_preloads_it_for_every_stage():
    text = (ROOT / "Snakefile").read_text(encoding="utf-8")
    assert "PRELOAD = malloc.preload()" in text and 'f"LD_PRELOAD={PRELOAD}' in text
    dry = subprocess.run(["snakemake", "-n", "-p", "--forceall", "report"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": str(ROOT / ".venv" / "bin") + ":/usr/bin:/bin",
                              "INSTRUCTFLOW_MALLOC": "/x/libfake.so"})
    assert dry.returncode == 0, dry.stderr[-2000:]
    commands = [ln for ln in dry.stdout.splitlines() if "python -m instructflow." in ln]
    prefix = "LD_PRELOAD=/x/libfake.so${LD_PRELOAD:+:$LD_PRELOAD} PYTHONPATH=src"
    assert len(commands) >= 9 and all(ln.split("Shell command:")[-1].lstrip().startswith(prefix)
                                      for ln in commands), commands[:3]
