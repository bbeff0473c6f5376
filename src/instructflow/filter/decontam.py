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
    """Evaluation prompts' n-grams, for overlap queries on a batch of texts at once.

    The n-grams are kept as 64-bit hashes in numpy (sorted unique hashes, and per hash the prompts
    that have it), not as word tuples in a dict: with 77k evaluation prompts (a 1M-record corpus
    at a 5 % evaluation share) that is ~50 MB where the dict took ~730 MB, in the filter's main
    process and every worker it forks. A hash only proposes a prompt: every prompt whose share
    reaches the threshold by hashes is counted again on its word n-grams, so a hash collision can
    cost a recount, never a wrong answer. The hashes are Python's `hash` of the word tuples,
    randomised per interpreter but the same in the process that builds the index and the workers
    it forks; they never leave the process tree."""

    def __init__(self, prompts: dict[str, str], n: int = 8, threshold: float = 0.8):
        from array import array

        import numpy as np

        self.n, self.threshold = n, threshold
        self.whole: dict[str, str] = {}       # short prompts: normalised text -> eval id
        self.ids: list[str] = []              # prompt number -> eval id
        self._words: list[str] = []           # prompt number -> normalised text (for the exact recount)
        sizes, hashes, owners = [], array("q"), array("i")  # machine integers, not int objects
        for eid, text in prompts.items():
            words = normalize(text).split()
            if not words:
                continue
            if len(words) < n:
                self.whole.setdefault(" ".join(words), eid)
                continue
            grams = _gram_tuples(words, n)
            own = set(map(hash, grams))  # one posting per prompt and hash
            hashes.extend(own)
            owners.extend(array("i", [len(self.ids)]) * len(own))
            sizes.append(len(grams))
            self.ids.append(eid)
            self._words.append(" ".join(words))
        h, o = np.frombuffer(hashes, dtype=np.int64), np.frombuffer(owners, dtype=np.int32)
        order = np.lexsort((o, h))
        self.keys, first = np.unique(h[order], return_index=True)  # sorted unique gram hashes
        self.owners = o[order]                                     # keys[k]'s prompts: owners[starts[k]:starts[k+1]]
        self.starts = np.append(first, len(h)).astype(np.int64)
        self.size = np.array(sizes, dtype=np.int64)                 # distinct n-grams per prompt
        # A table of 8+ slots per key, marked where some key's low bits point: most lookups end at
        # one read of it (a binary search over the keys is ~20 scattered reads, 5x slower)
        self._mask = (1 << max(16, (8 * len(self.keys)).bit_length())) - 1
        self._marked = np.zeros(self._mask + 1, dtype=bool)
        self._marked[self.keys & self._mask] = True

    def __len__(self) -> int:
        return len(self.ids) + len(self.whole)

    def match(self, text: str, prompt: str = "", norm: str | None = None) -> tuple[str, float] | None:
        """(eval id, overlap share) of the most overlapped evaluation prompt at or over the
        threshold, else None. `prompt` (the training prompt) is also checked whole against short ones;
        `norm` is the text already normalised, if the caller has it."""
        return self.match_many([text], [prompt], None if norm is None else [norm])[0]

    def match_many(self, texts: list[str], prompts: list[str] | None = None, norms: list[str] | None = None
                   ) -> list[tuple[str, float] | None]:
        """`match` for each text (with its training prompt and normalised text, where given): the
        hashes of every text's n-grams are looked up at once."""
        import numpy as np

        out: list[tuple[str, float] | None] = [None] * len(texts)
        flat: list[int] = []
        rows, counts = [], []
        for i, text in enumerate(texts):
            if prompts is not None and prompts[i] and self.whole:
                hit = self.whole.get(normalize(prompts[i]))
                if hit:
                    out[i] = (hit, 1.0)
                    continue
            if not self.ids:
                continue
            words = (norms[i] if norms is not None else normalize(text)).split()
            if len(words) >= self.n:
                before = len(flat)
                flat.extend(map(hash, zip(*(words[j:] for j in range(self.n)))))
                rows.append(i)
                counts.append(len(flat) - before)
        if not flat:
            return out
        h = np.array(flat, dtype=np.int64)
        at = np.flatnonzero(self._marked[h & self._mask])
        if len(at):
            pos = np.minimum(np.searchsorted(self.keys, h[at]), len(self.keys) - 1)
            hit = self.keys[pos] == h[at]
            at, pos = at[hit], pos[hit]
        if not len(at):  # almost every batch of training text
            return out
        row_of = np.repeat(np.arange(len(rows)), counts)[at]  # in row order: one group per text
        groups = np.flatnonzero(np.diff(row_of)) + 1
        for r, found in zip(row_of[np.append(0, groups)].tolist(), np.split(pos, groups)):
            i = rows[r]
            words = (norms[i] if norms is not None else normalize(texts[i])).split()
            out[i] = self._best(_gram_tuples(words, self.n), found)
        return out

    def _best(self, grams: set[tuple[str, ...]], keys: "np.ndarray") -> tuple[str, float] | None:
        """The most overlapped prompt at or over the threshold among those the hashes propose."""
        import numpy as np

        cand = np.concatenate([self.owners[self.starts[k]:self.starts[k + 1]] for k in keys.tolist()])
        prompts, hashed = np.unique(cand, return_counts=True)  # an upper bound of each overlap
        best = None
        for k in prompts[hashed / self.size[prompts] >= self.threshold].tolist():
            share = len(grams & _gram_tuples(self._words[k].split(), self.n)) / int(self.size[k])
            eid = self.ids[k]
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
