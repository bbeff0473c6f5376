"""Progress bars for long steps: tqdm on a terminal, silent in CI and in logs.

`progress(iterable, desc)` wraps tqdm. It is quiet when `CI` is set to a true
value (GitHub Actions, GitLab and most CI systems set CI=true) or when stderr is
not a terminal (a log file or a pipe, where carriage-return redraws are noise).
`INSTRUCTFLOW_PROGRESS=1` forces bars on (e.g. under `| tee`), `=0` forces them off.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")
TRUE = {"1", "true", "yes", "on"}


def enabled(stream=None) -> bool:
    """Whether bars are shown on `stream` (stderr by default)."""
    forced = os.environ.get("INSTRUCTFLOW_PROGRESS", "").strip().lower()
    if forced:
        return forced in TRUE
    if os.environ.get("CI", "").strip().lower() in TRUE:
        return False
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """`iterable`, with a tqdm bar labelled `desc` when bars are enabled."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled(), file=sys.stderr,
                dynamic_ncols=True)
