"""The legacy keyword detector: optional, off by default (`filter.keywords: false`).

Word lists mirror one corpus's vocabulary, so on real data they miss real harm
and flag look-alikes ("how do I kill a process"); issue 5 measured recall 0.02
on unsafe answers. Kept as one extra detector a user may switch on beside the
trained one, never instead of it.
"""

from __future__ import annotations

import re


def _words_pattern(terms: list[str]) -> re.Pattern | None:
    if not terms:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(t.lower()) for t in terms) + r")\b")


class Keywords:
    """Whole-word, case-insensitive matching of params' term lists."""

    def __init__(self, harmful_terms: list[str], compliance_markers: list[str], toxic_terms: list[str],
                 refusal_markers: list[str]):
        self.harmful = _words_pattern(harmful_terms)
        self.toxic = _words_pattern(toxic_terms)
        self.compliance = [m.lower() for m in compliance_markers]
        self.refusal = [m.lower() for m in refusal_markers]

    def is_harmful_request(self, prompt: str) -> bool:
        return bool(self.harmful and self.harmful.search(prompt.lower()))

    def is_refusal(self, reply: str) -> bool:
        low = reply.lower()
        return any(m in low for m in self.refusal)

    def is_compliance(self, reply: str) -> bool:
        low = reply.lower()
        return any(m in low for m in self.compliance)

    def is_toxic(self, text: str) -> bool:
        return bool(self.toxic and self.toxic.search(text.lower()))

    def reason(self, prompt: str, reply: str) -> str | None:
        """harmful_compliance, toxic or None for one exchange."""
        if self.is_harmful_request(prompt) and self.is_compliance(reply) and not self.is_refusal(reply):
            return "harmful_compliance"
        if self.is_toxic(reply):
            return "toxic"
        return None
