"""Which memory allocator the stages run with (the Snakefile preloads it; tested in test_malloc.py).

glibc's malloc returns every large block (over 32 MB, and freed tops of the heap) to the kernel,
so a training step that allocates and frees the same activations each time pays for faulting
fresh pages in again: on a 2-core EPYC with AVX512-BF16 one LoRA step of SmolLM2-135M's shapes
(8 x 200 tokens, bf16 autocast, the LM head on the reply's tokens as the stages train) took a
median 5.4 s under glibc and 4.8 s under tcmalloc, which keeps the pages (1.13x; 1.6-1.7x with
the head on every position: README, "The memory allocator", `make bench`). The bytes trained are
the same (same loss and weights to the bit, checked by every bench run). Generation gained nothing
measurable.

`INSTRUCTFLOW_MALLOC`: `auto` (default) preloads tcmalloc where the system has it (Debian:
libtcmalloc-minimal4, which `make install` adds where it may use apt-get), `system` keeps
glibc's, anything else is a library name or path to preload.
"""

from __future__ import annotations

import ctypes.util
import os
from pathlib import Path

CANDIDATES = ("tcmalloc_minimal", "tcmalloc")


def preload(env: dict | None = None) -> str:
    """The library to put in LD_PRELOAD for a stage, or '' for glibc's allocator."""
    choice = (env if env is not None else os.environ).get("INSTRUCTFLOW_MALLOC", "auto").strip()
    if choice == "system":
        return ""
    if choice not in ("", "auto"):
        return choice
    for name in CANDIDATES:
        found = ctypes.util.find_library(name)  # a soname from the loader's cache: LD_PRELOAD finds it
        if found:
            return found
    return ""


def current() -> str:
    """The allocator this process runs with: a preloaded tcmalloc/jemalloc's file name, else 'glibc'."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    for line in maps.splitlines():
        name = line.rsplit("/", 1)[-1] if "/" in line else ""
        if name.startswith(("libtcmalloc", "libjemalloc")):
            return name
    return "glibc"
