"""Property-based tests: broken corpora never crash the readers without a clear message, and no
row is ever lost (every row becomes a record, valid or with an error naming file and place).

Generated: bad JSON, byte-order marks, wrong encodings, missing and extra fields, huge rows,
empty files, mixed schemas in one file, CSV with embedded newlines and quotes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructflow.config import SourceConfig, ValidateConfig
from instructflow.loaders import SourceError, read_source

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
# A row of the alpaca schema, sometimes missing a field, sometimes with extra or odd-typed ones.
alpaca_row = st.fixed_dictionaries(
    {}, optional={"instruction": text | st.integers() | st.none(), "input": text, "output": text | st.integers(),
                  "extra": st.dictionaries(st.text(max_size=5), text, max_size=2), "labels": st.dictionaries(
                      st.sampled_from(["category", "family"]), text, max_size=2)})


def load(path: Path, fmt: str, **spec) -> tuple[list[dict], list[str]]:
    notes: list[str] = []
    cfg = SourceConfig(name="s", path=str(path), format=fmt, license="MIT", **spec)
    return list(read_source(path, fmt, "s", "MIT", spec=cfg, root=path.parent, notes=notes)), notes


def check_records(recs: list[dict], fname: str) -> None:
    assert len({r["id"] for r in recs}) == len(recs), "ids must be unique"
    for r in recs:
        assert r["locator"].startswith(fname)
        if r["error"] is not None:
            assert r["error"].startswith(fname + " "), r["error"]  # names the file, then the line/row


@FAST
@given(rows=st.lists(alpaca_row, max_size=12), bom=st.booleans(), trailing_comma=st.booleans(),
       as_jsonl=st.booleans(), gz=st.booleans())
def test_alpaca_json_variants_keep_every_row(rows, bom, trailing_comma, as_jsonl, gz):
    if as_jsonl:
        body = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        body = json.dumps(rows, indent=1)
        if trailing_comma and rows:
            body = body[:-1].rstrip() + ",\n]"
    data = (b"\xef\xbb\xbf" if bom else b"") + body.encode()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "a.json"
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        recs, notes = load(path, "alpaca")
    assert len(recs) == len(rows)  # one record per row, never one error for the file
    check_records(recs, "a.json")
    for row, rec in zip(rows, recs):
        complete = row.get("instruction") is not None and "output" in row
        assert (rec["error"] is None) == complete
        if not complete:
            assert "missing field(s)" in rec["error"]
    if bom:
        assert any("byte-order mark" in n for n in notes)


@FAST
@given(doc=st.lists(alpaca_row, min_size=1, max_size=6), pos=st.floats(0, 1),
       junk=st.sampled_from(["{", "}", '"', "x", ",", "]", "\x00", ":"]))
def test_corrupted_json_is_read_exactly_or_stopped_with_file_and_place(doc, pos, junk):
    body = json.dumps(doc)
    at = int(pos * len(body))
    corrupted = body[:at] + junk + body[at:]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.json"
        path.write_text(corrupted)
        try:
            recs, notes = load(path, "alpaca")
        except SourceError as err:
            assert str(err).startswith("c.json: ") and ("line" in str(err) or "list" in str(err))
            return
    try:
        reference = json.loads(corrupted)
    except json.JSONDecodeError:
        reference = None
    if reference is not None and isinstance(reference, list):
        assert len(recs) == len(reference)
    else:  # read after a repair: it must say so
        assert notes, "a file that is not plain valid JSON was read without a note"
    check_records(recs, "c.json")


line = st.one_of(
    st.builds(lambda r: json.dumps(r).encode(), alpaca_row),  # another schema in a messages file
    st.builds(lambda m: json.dumps({"messages": m}).encode(),
              st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bot"]),
                                              "content": text | st.none()}), max_size=4)),
    st.builds(lambda m: json.dumps({"messages": m, "id": 7, "extra": [1]}).encode(), text | st.integers()),
    st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b),  # garbage, maybe bad UTF-8
    st.just(b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'),  # latin-1 byte in UTF-8 text
    st.just(b'{"messages": [{"role": "user", "content": "\\udc80 lone"}]}'),  # a lone surrogate escape
    st.builds(lambda n: json.dumps({"messages": [{"role": "user", "content": "x" * n},
                                                 {"role": "assistant", "content": "y"}]}).encode(),
              st.integers(100_000, 300_000)),  # huge row
)


@FAST
@given(lines=st.lists(line, max_size=10), crlf=st.booleans())
def test_mixed_jsonl_one_record_per_non_blank_line(lines, crlf):
    sep = b"\r\n" if crlf else b"\n"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.jsonl"
        path.write_bytes(sep.join(lines) + (sep if lines else b""))
        recs, _ = load(path, "messages")
    expected = [i for i, ln in enumerate(lines, start=1) if ln.strip()]
    assert [int(r["locator"].split("line=")[1].split(";")[0]) for r in recs] == expected
    check_records(recs, "m.jsonl")
    for ln, rec in zip([ln for ln in lines if ln.strip()], recs):
        try:
            ln.decode("utf-8")
        except UnicodeDecodeError:
            assert rec["error"] is not None


cell = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30) | st.sampled_from(
    ["line one\nline two", 'say "hi", then go', "a,b,c", "\r\n", " ", "ünïcödé ✓"])


@FAST
@given(rows=st.lists(st.tuples(cell, cell, cell, cell), max_size=10),
       short=st.sets(st.integers(0, 9), max_size=3), encoding=st.sampled_from(["utf-8", "latin-1"]))
def test_csv_embedded_newlines_short_rows_and_wrong_encoding(rows, short, encoding):
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["instruction", "context", "response", "category"])
    for i, row in enumerate(rows):
        writer.writerow(row[:2] if i in short else row)
    data = buf.getvalue().encode(encoding, errors="replace")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "d.csv"
        path.write_bytes(data)
        recs, _ = load(path, "dolly")
    assert len(recs) == len(rows)  # csv writes even an all-empty row as `,,,`: still a row
    check_records(recs, "d.csv")
    originals = iter(rows)
    for rec in recs:
        row = next(originals)
        if rec["error"] is None and encoding == "utf-8":
            user = rec["messages"][0]["content"]
            assert user.startswith(row[0]) and rec["messages"][1]["content"] == row[2]


@FAST
@given(suffix=st.sampled_from([".json", ".jsonl", ".csv", ".json.gz", ".csv.gz"]),
       fmt=st.sampled_from(["alpaca", "dolly", "prompts"]), content=st.sampled_from([b"", b"\n", b"  \n\n"]))
def test_empty_files_give_no_rows_and_a_note(suffix, fmt, content):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"e{suffix}"
        path.write_bytes(gzip.compress(content, mtime=0) if suffix.endswith(".gz") else content)
        recs, notes = load(path, fmt)
    assert recs == [] and any("empty file" in n for n in notes)


@settings(max_examples=4, deadline=None)
@given(lines=st.lists(line, min_size=1, max_size=8))
def test_broken_rows_are_all_accounted_for_by_validation(lines):
    """Readers + validation: every line ends in valid or in quarantine with at least one rule."""
    from instructflow import validate

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        recs, _ = load(path, "messages")
    cfg = ValidateConfig(min_rows=1, max_invalid_fraction=1.0, max_quarantine_fraction=1.0, max_chars=50_000)
    if not recs:
        return
    valid, quarantine, summary = validate.validate(recs, cfg, "m.jsonl")
    assert len(valid) + len(quarantine) == len(recs) == summary["rows"]
    assert sorted(r["id"] for r in valid + quarantine) == sorted(r["id"] for r in recs)
    assert all(q["quarantine_rules"] and q["quarantine_detail"].startswith("s m.jsonl") for q in quarantine)
