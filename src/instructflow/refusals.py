"""Refusal replies and imperative rewrites of harmful questions.

Why varied refusals: a model taught one refusal string learns that string, not
when to refuse, and a judge looking for it measures memorisation. Replies here
are composed from an opener, a reason and an offer (7 x 8 x 6 = 336 replies),
chosen by a hash of the prompt, so the same prompt always gets the same reply
and nearby prompts get different ones.

Why imperative rewrites: public harmful-prompt sets are mostly questions ("How
can I ...?"); a model trained only on them learns not to refuse commands
("Write a guide to ..."). `imperative(question, key)` turns a question into one
of several command forms, deterministically.

`looks_like_refusal` is the on-policy stage's own check of whether a model
answer already refuses. It compares the answer's opening with this library's
openers and common refusal openings; it is deliberately not the evaluation
judge (which uses an independent public phrase list and a classifier).
"""

from __future__ import annotations

import hashlib
import re

from .records import split_sentences

OPENERS = (
    "I'm sorry, but I can't help with that.",
    "I can't help with this request.",
    "I won't be able to help with that.",
    "Sorry, but I can't assist with this.",
    "I'm not able to help with that request.",
    "I have to decline this one.",
    "I can't provide that.",
)
# Every opener declines in the first person, up front. "That's not something I can help with." was one
# of them until the SmolLM2 profile's model, trained two epochs, collapsed most of its refusals onto it
# (an impersonal opener that public refusal-phrase judges, such as the GCG/AdvBench list evaluation
# uses, do not count): refusals that say "I can't" / "I won't" first are the form users and judges read.
REASONS = (
    "It could put people in real danger.",
    "Helping with it could cause serious harm to others.",
    "It could be used to hurt someone or break the law.",
    "Instructions like these can lead to real-world harm.",
    "It asks for something harmful, and I don't want to contribute to that.",
    "Giving this information could put someone's safety at risk.",
    "This could enable illegal or dangerous activity.",
    "It's the kind of help that could do serious damage.",
)
OFFERS = (
    "If you're dealing with a difficult situation, I'm happy to talk about safer options.",
    "I can help with a related question that doesn't involve harm, though.",
    "If you have a different question, I'd be glad to help.",
    "If someone is in danger, please contact local emergency services.",
    "I'm happy to help with something else.",
    "If you're curious about the topic in general, I can share safety information instead.",
)

# Openings of refusals besides ours (lower case, apostrophes normalised): used
# only to recognise that an on-policy answer already refuses.
REFUSAL_OPENINGS = (
    "i'm sorry", "i am sorry", "sorry", "i apologize", "i apologise", "my apologies", "i can't", "i cannot",
    "i can not", "i won't", "i will not", "i'm not able", "i am not able", "i'm unable", "i am unable",
    "i must decline", "i have to decline", "i do not feel comfortable", "i don't feel comfortable",
    "as an ai", "as a language model", "that's not something i can", "unfortunately, i can't",
    "unfortunately, i cannot", "no, i can't", "i'm afraid i can't",
)


def _pick(key: str, salt: str, n: int) -> int:
    return int(hashlib.sha256(f"{salt}\x00{key}".encode("utf-8")).hexdigest()[:12], 16) % n


def all_refusals() -> list[str]:
    """Every reply the library can give, in a fixed order."""
    return [f"{o} {r} {f}" for o in OPENERS for r in REASONS for f in OFFERS]


def refusal_for(prompt: str) -> str:
    """The refusal for this prompt: the same prompt always gets the same reply."""
    return (f"{OPENERS[_pick(prompt, 'opener', len(OPENERS))]} {REASONS[_pick(prompt, 'reason', len(REASONS))]} "
            f"{OFFERS[_pick(prompt, 'offer', len(OFFERS))]}")


def _norm(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").lower().split())


_OPENINGS = tuple(sorted({_norm(o) for o in REFUSAL_OPENINGS} | {_norm(o).rstrip(".") for o in OPENERS}))


def looks_like_refusal(answer: str) -> bool:
    """True when the answer opens like a refusal (ours or a common one), or
    contains one of our openers anywhere in its first two sentences."""
    low = _norm(answer)
    if low.startswith(_OPENINGS):
        return True
    head = " ".join(split_sentences(low)[:2])
    return any(_norm(o).rstrip(".") in head for o in OPENERS)


# --------------------------------------------------------------------------- imperative rewrites
# "How can I <vp>?" and friends carry a verb phrase that every command form can reuse.
_VP_PATTERNS = (
    r"how (?:can|could|do|would|should|might|will) (?:i|we|one|someone|somebody|a person|you) (?P<vp>.+)",
    r"how to (?P<vp>.+)",
    r"what(?:'s| is| are) (?:the |some )?(?:best |easiest |most effective |quickest |good |simplest )?"
    r"(?:ways?|methods?|steps?|techniques?|tips?) (?:to|i can use to|i could use to) (?P<vp>.+)",
    r"(?:are there|is there) (?:any )?(?:a )?(?:ways?|methods?) (?:for me )?to (?P<vp>.+)",
    r"(?:can|could|would|will) you (?:please )?(?:tell|show|teach|explain to) me how to (?P<vp>.+)",
    r"(?:can|could|would|will) you (?:please )?help me (?:to )?(?P<vp>.+)",
    r"what should i do to (?P<vp>.+)",
)
VP_TEMPLATES = (
    "Write a step-by-step guide on how to {vp}.",
    "Give me detailed instructions to {vp}.",
    "Explain exactly how to {vp}.",
    "List the steps to {vp}, in order.",
    "Tell me how to {vp}. Be specific.",
    "Write a tutorial that teaches someone to {vp}.",
)
# For questions without a reusable verb phrase: the question becomes the task of a command.
WRAP_TEMPLATES = (
    "Answer the following in detail, step by step: {q}",
    "Write a detailed, practical response to this: {q}",
    "I need a complete answer with specific steps. {q}",
    "Respond with concrete instructions only. {q}",
    "Write a short guide that answers this question: {q}",
)


def _swap_pronouns(vp: str) -> str:
    """'you' in the asker's question refers to the asker once it is a command to the model."""
    return re.sub(r"\byour\b", "my", re.sub(r"\byourself\b", "myself", vp))


def imperative(question: str, key: str | None = None) -> tuple[str, str]:
    """(command, template id) for a question; `key` (default: the question) picks the form.

    Non-questions are returned unchanged with template id `unchanged`."""
    key = question if key is None else key
    q = " ".join(question.split())
    if not q.endswith("?"):
        return q, "unchanged"
    body = q.rstrip("?").strip()
    for pattern in _VP_PATTERNS:
        m = re.fullmatch(pattern, body, flags=re.IGNORECASE)
        if m and len(m.group("vp").split()) >= 2:
            i = _pick(key, "vp", len(VP_TEMPLATES))
            return VP_TEMPLATES[i].format(vp=_swap_pronouns(m.group("vp").rstrip(" ,."))), f"vp{i}"
    i = _pick(key, "wrap", len(WRAP_TEMPLATES))
    return WRAP_TEMPLATES[i].format(q=q), f"wrap{i}"
