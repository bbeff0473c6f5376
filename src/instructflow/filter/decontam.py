"""Decontamination: training text that contains an evaluation prompt's n-grams.

Each evaluation prompt (normalised like dedup) becomes a set of word n-grams.
A training text is contaminated when, for some evaluation prompt, the share of
that prompt's n-grams found in the text reaches `threshold`. Prompts shorter
than n words are matched only as the whole normalised training prompt: a short
prompt found inside a longer one ("opposite of up" in "What is the opposite of
up?") is usually the same item in another phrasing, which training may see.

Evaluation prompts come from data/formatted/eval.jsonl and from the extra
suites named in params (`evaluate.suites`, when that section exists).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .dedup import normalize


def ngrams(words: list[str], n: int) -> set[str]:
    if len(words) <= n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def _gram_tuples(words: list[str], n: int) -> set[tuple[str, ...]]:
    """`ngrams` as word tuples (len(words) >= n): the same n-grams, one tuple each."""
    return set(zip(*(words[i:] for i in range(n))))


class Index:
    """Inverted index n-gram -> evaluation prompts, for overlap queries in one pass per text."""

    def __init__(self, prompts: dict[str, str], n: int = 8, threshold: float = 0.8):
        self.n, self.threshold = n, threshold
        self.whole: dict[str, str] = {}                  # short prompts: normalised text -> eval id
        # n-grams as word tuples: a text's n-grams are then made by zip in C, and most texts share
        # none with any evaluation prompt, which one set intersection tells (no n-gram strings built)
        self.grams: dict[tuple[str, ...], list[str]] = defaultdict(list)
        self.size: dict[str, int] = {}
        for eid, text in prompts.items():
            words = normalize(text).split()
            if not words:
                continue
            if len(words) < n:
                self.whole.setdefault(" ".join(words), eid)
                continue
            grams = _gram_tuples(words, n)
            self.size[eid] = len(grams)
            for g in grams:
                self.grams[g].append(eid)
        self.keys = frozenset(self.grams)

    def __len__(self) -> int:
        return len(self.size) + len(self.whole)

    def match(self, text: str, prompt: str = "", norm: str | None = None) -> tuple[str, float] | None:
        """(eval id, overlap share) of the most overlapped evaluation prompt at or over the
        threshold, else None. `prompt` (the training prompt) is also checked whole against short ones;
        `norm` is the text already normalised, if the caller has it."""
        if prompt and self.whole:
            hit = self.whole.get(normalize(prompt))
            if hit:
                return hit, 1.0
        if not self.grams:
            return None
        words = (norm if norm is not None else normalize(text)).split()
        counts: dict[str, int] = defaultdict(int)
        if len(words) >= self.n:
            for g in _gram_tuples(words, self.n) & self.keys:  # set & frozenset: loops over the smaller
                for eid in self.grams[g]:
                    counts[eid] += 1
        best = None
        for eid, c in counts.items():
            share = c / self.size[eid]
            if share >= self.threshold and (best is None or (share, eid) > (best[1], best[0])):
                best = (eid, share)
        if best is None:
            return None
        return best[0], round(best[1], 4)


def suite_prompts(params: dict, root: Path = Path(".")) -> dict[str, str]:
    """Prompts of every row of the extra evaluation suites named in `evaluate.suites`, keyed
    `suite:<name>:<row>`, read by the evaluation's own suite reader. {} without suites."""
    from ..suites import suite_prompts as read_suites

    return read_suites(((params or {}).get("evaluate") or {}).get("suites") or [], root)
