"""Stage validate: Great Expectations rules split raw records into valid and quarantine.

Reads `data/raw/records.jsonl` and `params.yaml: validate` (+ seed). Writes:
    data/validated/valid.jsonl       raw records that pass every row-level rule, input order
    data/validated/quarantine.jsonl  the others, each with `quarantine_rules` (every rule it broke)
                                     and `quarantine_detail` (source, locator, turn and why)
    reports/validate/summary.json    counts per rule, per expectation and per source (a DVC metric)
    reports/validate/datadocs/       Great Expectations Data Docs of the two suites (HTML)

Two suites run over flat pandas views, chunk by chunk (`chunk_size` rows) so memory
stays bounded on large corpora:
    raw_records  one row per record: parse errors, unique ids, exact duplicates (the whole
                 conversation, normalised), role order per kind, license, labels a mapping,
                 labels.harmful/labels.task per kind, turn count, chosen != rejected
    raw_turns    one row per turn (every message, and the chosen and rejected replies):
                 turn is an object, known role, content present, a string, not blank, not
                 longer than max_chars (and max_tokens of `tokenizer`), no control characters
Ids and duplicates are counted over the whole file in a first pass, so chunking never
hides a repeat. Row-level rules move a row to quarantine; dataset-level rules (schema,
row count, share of invalid rows, share of one source quarantined) stop the pipeline with
SystemExit naming the file, the source and the rule, and leave no output behind.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from . import config, lineage
from .records import KINDS, RAW_FIELDS, atomic_open, dumps, normalize_text, read_jsonl, write_json

LABEL_TASKS = config.LABEL_TASKS
DERIVED = ("id_count", "duplicate_of", "roles", "n_turns", "labels_type", "harmful_prompt", "harmful_labelled", "task")
TURN_COLUMNS = ("row", "part", "turn_type", "turn_role", "turn_content", "turn_tokens")
# Role sequence prefixed by kind: an optional system turn, then alternating user/assistant
# turns, ending in the assistant reply (sft), the user prompt (preference, prompt), or a
# user text with an optional assistant text (labelled).
ROLES_REGEX = (r"^(?:sft:(?:system,)?(?:user,assistant,)*user,assistant"
               r"|(?:preference|prompt):(?:system,)?(?:user,assistant,)*user"
               r"|labelled:user(?:,assistant)?)$")
CONTROL_REGEX = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # tab, newline and carriage return are text
SCHEMA_RULE = "expect_table_columns_to_match_set"
ROWS_RULE = "expect_table_row_count_to_be_between"
INVALID_RULE = "max_invalid_fraction"
SOURCE_RULE = "max_quarantine_fraction"
PARSE_RULE = "expect_column_values_to_be_null(error)"
# What each row-level rule means, for the one-line `quarantine_detail`.
RULE_TEXT = {
    PARSE_RULE: "source row could not be parsed",
    "expect_column_values_to_be_between(id_count)": "id is not unique",
    "expect_column_values_to_be_null(duplicate_of)": "duplicate of an earlier record",
    "expect_column_values_to_match_regex(roles)": "role sequence is invalid for its kind",
    "expect_column_values_to_not_be_null(license)": "license is missing",
    "expect_column_values_to_match_regex(license)": "license is empty",
    "expect_column_values_to_be_in_set(kind)": "unknown record kind",
    "expect_column_values_to_be_in_set(labels_type)": "labels is not a mapping",
    "expect_column_values_to_be_in_set(harmful_prompt)": "prompt records need labels.harmful true or false",
    "expect_column_values_to_be_in_set(harmful_labelled)": "labelled records need labels.harmful 0 or 1",
    "expect_column_values_to_be_in_set(task)": f"labels.task is not one of {LABEL_TASKS}",
    "expect_column_values_to_not_be_null(harmful_prompt)": "prompt records need labels.harmful true or false",
    "expect_column_values_to_not_be_null(harmful_labelled)": "labelled records need labels.harmful 0 or 1",
    "expect_column_values_to_not_be_null(task)": "labelled records need labels.task",
    "expect_column_values_to_be_between(n_turns)": "too many turns",
    "expect_select_column_values_to_be_unique_within_record(chosen,rejected)": "rejected reply equals the chosen one",
    "expect_column_values_to_be_in_set(turn_type)": "turn is not an object",
    "expect_column_values_to_be_in_set(turn_role)": "unknown role",
    "expect_column_values_to_not_be_null(turn_content)": "content is missing",
    "expect_column_values_to_be_of_type(turn_content)": "content is not a string",
    "expect_column_values_to_match_regex(turn_content)": "content is empty",
    "expect_column_value_lengths_to_be_between(turn_content)": "content is too long",
    "expect_column_values_to_not_match_regex(turn_content)": "content has control characters",
    "expect_column_values_to_be_between(turn_tokens)": "content has too many tokens",
}


# --------------------------------------------------------------------------- views
def content_key(record: dict) -> str:
    """Duplicate key: kind, task and every turn and reply, normalised; non-strings kept apart."""
    def norm(v):
        return "s:" + normalize_text(v) if isinstance(v, str) else "j:" + json.dumps(v, sort_keys=True, default=str)

    msgs = record.get("messages") if isinstance(record.get("messages"), list) else []
    turns = [(m.get("role"), norm(m.get("content"))) if isinstance(m, dict) else norm(m) for m in msgs]
    labels = record.get("labels") if isinstance(record.get("labels"), dict) else {}
    key = [record.get("kind"), labels.get("task"), turns, norm(record.get("chosen")), norm(record.get("rejected"))]
    return hashlib.sha1(json.dumps(key, default=str).encode("utf-8", "surrogatepass")).hexdigest()


def scan(path) -> tuple[int, Counter, dict[int, str]]:
    """First pass: row count, id counts, and position -> id of the first earlier copy.

    Unparseable rows are skipped for duplicates: they carry no content, and tagging them
    as duplicates of each other would only hide the real reason they are quarantined."""
    ids, first, dups, n = Counter(), {}, {}, 0
    for n, rec in enumerate(read_jsonl(path), start=1):
        ids[rec.get("id")] += 1
        if rec.get("error") is None:
            key = content_key(rec)
            if key in first:
                dups[n - 1] = first[key]
            else:
                first[key] = rec.get("id")
    return n, ids, dups


def find_duplicates(records: list[dict]) -> list[str | None]:
    """Id of the first earlier record with the same content key (in-memory form of `scan`)."""
    first: dict[str, str] = {}
    out: list[str | None] = []
    for rec in records:
        key = content_key(rec) if rec.get("error") is None else None
        out.append(first.get(key) if key else None)
        if key:
            first.setdefault(key, rec.get("id"))
    return out


def _roles(record: dict) -> str:
    msgs = record.get("messages")
    msgs = msgs if isinstance(msgs, list) else []
    roles = ",".join(str(m.get("role")) if isinstance(m, dict) else "?" for m in msgs)
    return f"{record.get('kind')}:{roles}"


def build_frames(records: list[dict], id_counts: Counter, dups: dict[int, str], offset: int, tokenizer=None):
    """(records frame, turns frame). Object dtype, so a number in a text field stays a number
    (pandas would otherwise infer a string dtype) and fails the type rule."""
    import pandas as pd

    keys = list(dict.fromkeys(k for r in records for k in r)) if records else list(RAW_FIELDS)
    rows, turns = [], []
    for i, r in enumerate(records):
        labels = r.get("labels")
        labels_ok = isinstance(labels, dict)
        msgs = r.get("messages") if isinstance(r.get("messages"), list) else []
        rows.append({k: r.get(k) for k in keys} | {
            "id_count": id_counts.get(r.get("id"), 1), "duplicate_of": dups.get(offset + i), "roles": _roles(r),
            "n_turns": len(msgs), "labels_type": type(labels).__name__,
            "harmful_prompt": labels.get("harmful") if labels_ok else None,
            "harmful_labelled": labels.get("harmful") if labels_ok else None,
            "task": labels.get("task") if labels_ok else None})
        if r.get("error") is not None:
            continue  # no content to check; the parse rule says it all
        for j, m in enumerate(msgs):
            is_turn = isinstance(m, dict)
            turns.append((i, f"messages[{j}]", type(m).__name__, m.get("role") if is_turn else None,
                          m.get("content") if is_turn else None, None))
        if r.get("kind") == "preference":
            turns += [(i, side, "dict", "assistant", r.get(side), None) for side in ("chosen", "rejected")]
    frame = pd.DataFrame(rows, columns=[*keys, *DERIVED], dtype=object)
    if tokenizer is not None and turns:
        texts = [t[4] for t in turns if isinstance(t[4], str)]
        lengths = iter(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
        turns = [t[:5] + (next(lengths) if isinstance(t[4], str) else None,) for t in turns]
    tframe = pd.DataFrame(turns, columns=list(TURN_COLUMNS), dtype=object)
    return frame, tframe


# --------------------------------------------------------------------------- suites
def _gx():
    """Import Great Expectations lazily (it takes seconds), with usage analytics off."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"  # read at import: no telemetry, no network
    import great_expectations as gx

    return gx


def build_suites(cfg: config.ValidateConfig, columns: list[str]):
    """The `raw_records` and `raw_turns` suites (the schema rule is the only dataset-level one)."""
    gx = _gx()
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    kind = Column("kind")
    records = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*RAW_FIELDS, *DERIVED], exact_match=True),
        gxe.ExpectColumnValuesToBeNull(column="error"),
        gxe.ExpectColumnValuesToBeBetween(column="id_count", min_value=1, max_value=1),
        gxe.ExpectColumnValuesToBeNull(column="duplicate_of"),
        gxe.ExpectColumnValuesToMatchRegex(column="roles", regex=ROLES_REGEX),
        gxe.ExpectColumnValuesToNotBeNull(column="license"),
        gxe.ExpectColumnValuesToMatchRegex(column="license", regex=r"\S"),
        gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=list(KINDS)),
        gxe.ExpectColumnValuesToBeInSet(column="labels_type", value_set=["dict"]),
        gxe.ExpectColumnValuesToBeBetween(column="n_turns", max_value=cfg.max_turns),
        # Set rules skip nulls, hence the not-null twins. True == 1 in Python, so the sets cannot tell
        # bool from 0/1; they do catch other values.
        gxe.ExpectColumnValuesToNotBeNull(column="harmful_prompt", row_condition=kind == "prompt"),
        gxe.ExpectColumnValuesToNotBeNull(column="harmful_labelled", row_condition=kind == "labelled"),
        gxe.ExpectColumnValuesToNotBeNull(column="task", row_condition=kind == "labelled"),
        gxe.ExpectColumnValuesToBeInSet(column="harmful_prompt", value_set=[True, False],
                                        row_condition=kind == "prompt"),
        gxe.ExpectColumnValuesToBeInSet(column="harmful_labelled", value_set=[0, 1], row_condition=kind == "labelled"),
        gxe.ExpectColumnValuesToBeInSet(column="task", value_set=list(LABEL_TASKS), row_condition=kind == "labelled"),
        gxe.ExpectSelectColumnValuesToBeUniqueWithinRecord(column_list=["chosen", "rejected"],
                                                           row_condition=kind == "preference"),
    ]
    content = "turn_content"
    turns = [
        gxe.ExpectColumnValuesToBeInSet(column="turn_type", value_set=["dict"]),
        gxe.ExpectColumnValuesToBeInSet(column="turn_role", value_set=["system", "user", "assistant"]),
        # One failure mode per rule: None -> not_null, 42 -> of_type, "" or "  " -> regex,
        # too long -> lengths (the regex and length rules see non-strings as their str()).
        gxe.ExpectColumnValuesToNotBeNull(column=content),
        gxe.ExpectColumnValuesToBeOfType(column=content, type_="str"),
        gxe.ExpectColumnValuesToMatchRegex(column=content, regex=r"\S"),
        gxe.ExpectColumnValueLengthsToBeBetween(column=content, max_value=cfg.max_chars),
        gxe.ExpectColumnValuesToNotMatchRegex(column=content, regex=CONTROL_REGEX),
    ]
    if cfg.max_tokens and cfg.tokenizer:
        turns.append(gxe.ExpectColumnValuesToBeBetween(column="turn_tokens", max_value=cfg.max_tokens))
    # Built unattached: the suites join a (throw-away) context only when they are run.
    return (gx.ExpectationSuite(name="raw_records", expectations=records),
            gx.ExpectationSuite(name="raw_turns", expectations=turns))


def rule_name(result) -> str:
    kw = result.expectation_config.kwargs
    target = kw.get("column") or ",".join(kw.get("column_list") or [])
    return f"{result.expectation_config.type}({target})" if target else result.expectation_config.type


class Runner:
    """An ephemeral, offline GE context with both suites attached; optionally writes Data Docs."""

    def __init__(self, suites, docs: Path | None):
        gx = _gx()
        from great_expectations.checkpoint import UpdateDataDocsAction
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.ctx = ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        if docs is not None:
            ctx.add_data_docs_site(site_name="validate", site_config={
                "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(docs.resolve())}})
        source = ctx.data_sources.add_pandas("raw")
        self.checkpoints = {}
        for suite in suites:
            batch = source.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe("all")
            vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=suite.name, data=batch,
                                                                        suite=ctx.suites.add(suite)))
            # Only our site: the ephemeral context's default site would fill a fresh /tmp folder on each run.
            actions = [UpdateDataDocsAction(name="datadocs", site_names=["validate"])] if docs is not None else []
            self.checkpoints[suite.name] = ctx.checkpoints.add(gx.Checkpoint(
                name=suite.name, validation_definitions=[vd], actions=actions, result_format="COMPLETE"))

    def run(self, suite: str, frame, chunk: int) -> dict:
        from great_expectations.core.run_identifier import RunIdentifier

        # A fixed run time: Data Docs paths and pages carry it, and they must not change between runs.
        run_id = RunIdentifier(run_name=f"chunk-{chunk:04d}",
                               run_time=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc))
        result = self.checkpoints[suite].run(batch_parameters={"dataframe": frame}, run_id=run_id)
        (res,) = result.run_results.values()
        return dict(sorted((rule_name(r), r) for r in res.results))


def _raised(result) -> bool:
    info = result.exception_info or {}
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def chunk_failures(rec_results: dict, turn_results: dict, tframe, n_rows: int) -> dict[int, list[tuple[str, str]]]:
    """Row position in the chunk -> [(rule, where)] for every row-level rule it breaks."""
    failed: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for name, res in rec_results.items():
        if name != SCHEMA_RULE:
            for i in res.result.get("unexpected_index_list") or []:
                assert 0 <= i < n_rows, (name, i)
                failed[int(i)].append((name, ""))
    rows, parts = tframe["row"].tolist(), tframe["part"].tolist()
    for name, res in turn_results.items():
        for t in res.result.get("unexpected_index_list") or []:
            failed[rows[t]].append((name, parts[t]))
    # An unparseable row has no content: its role/kind failures would only repeat the
    # parse error and inflate the per-rule counts, so it keeps just that.
    return {i: ([(PARSE_RULE, "")] if any(r == PARSE_RULE for r, _ in f) else sorted(f, key=_reading_order))
            for i, f in sorted(failed.items())}


def _reading_order(failure: tuple[str, str]) -> tuple:
    """Record-level rules first, then turns in conversation order, then chosen, rejected."""
    rule, where = failure
    m = re.fullmatch(r"messages\[(\d+)\]", where)
    return (bool(where), int(m.group(1)) if m else 10**9 + ("chosen", "rejected").index(where) if where else -1, rule)


def _file_of(locator: str) -> str:
    return re.split(r"#|:(?:line|row)=", str(locator), maxsplit=1)[0]


def load_tokenizer(cfg: config.ValidateConfig):
    if not (cfg.max_tokens and cfg.tokenizer):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cfg.tokenizer)  # a local folder; never trust_remote_code


def validate_file(raw: str, cfg: config.ValidateConfig, out: Path, docs: Path | None = None) -> dict:
    """Stream `raw` into out/valid.jsonl and out/quarantine.jsonl; SystemExit (and no output)
    on a dataset-level failure. Returns the summary."""
    n_rows, id_counts, dups = scan(raw)
    if n_rows < cfg.min_rows:
        raise SystemExit(f"{raw}: dataset rule {ROWS_RULE} failed: {n_rows} rows, "
                         f"need at least {cfg.min_rows} (validate.min_rows)")
    tokenizer = load_tokenizer(cfg)
    if docs is not None:
        shutil.rmtree(docs, ignore_errors=True)
    tmp_docs = None if docs is None else docs.with_name(f".{docs.name}.tmp-{os.getpid()}")
    if tmp_docs is not None:
        shutil.rmtree(tmp_docs, ignore_errors=True)
    runner = None
    by_rule, expectations = Counter(), {}
    per_source: dict[str, dict] = defaultdict(lambda: {"rows": 0, "valid": 0, "quarantined": 0,
                                                       "quarantined_by_rule": Counter(), "files": Counter(),
                                                       "example": None})
    n_valid = n_quarantined = 0
    try:
        with atomic_open(out / "valid.jsonl") as vfh, atomic_open(out / "quarantine.jsonl") as qfh:
            chunk, offset = [], 0
            records = iter(read_jsonl(raw))
            while True:
                chunk = [rec for _, rec in zip(range(cfg.chunk_size), records)]
                if not chunk:
                    break
                frame, tframe = build_frames(chunk, id_counts, dups, offset, tokenizer)
                if runner is None:
                    runner = Runner(build_suites(cfg, list(frame.columns)), tmp_docs)
                n_chunk = offset // cfg.chunk_size
                rec_results = runner.run("raw_records", frame, n_chunk)
                turn_results = runner.run("raw_turns", tframe, n_chunk)
                results = rec_results | turn_results
                broken = [name for name, r in results.items() if _raised(r)]
                if broken:  # a rule that could not run must not silently pass its rows
                    raise SystemExit(f"{raw}: rule(s) {broken} could not be evaluated")
                schema = rec_results[SCHEMA_RULE]
                if not schema.success:
                    raise SystemExit(f"{raw}: dataset rule {SCHEMA_RULE} failed: columns differ from the raw "
                                     f"record schema {schema.result.get('details', {}).get('mismatched')}")
                for name, r in results.items():
                    if name != SCHEMA_RULE:
                        e = expectations.setdefault(name, {"success": True, "unexpected_count": 0})
                        e["success"] = e["success"] and bool(r.success)
                        e["unexpected_count"] += r.result.get("unexpected_count", 0)
                failures = chunk_failures(rec_results, turn_results, tframe, len(chunk))
                for i, rec in enumerate(chunk):
                    src = per_source[str(rec.get("source"))]
                    src["rows"] += 1
                    if i not in failures:
                        vfh.write(dumps(rec) + "\n")
                        src["valid"] += 1
                        n_valid += 1
                        continue
                    rules = sorted({rule for rule, _ in failures[i]})
                    why = "; ".join(f"{where + ': ' if where else ''}{RULE_TEXT.get(rule, rule)}"
                                    + (f" ({rec['error']})" if rule == PARSE_RULE else "")
                                    for rule, where in failures[i])
                    detail = f"{rec.get('source')} {rec.get('locator')}: {why}"
                    qfh.write(dumps({**rec, "quarantine_rules": rules, "quarantine_detail": detail}) + "\n")
                    by_rule.update(rules)
                    src["quarantined"] += 1
                    src["quarantined_by_rule"].update(rules)
                    src["files"][_file_of(rec.get("locator"))] += 1
                    src["example"] = src["example"] or detail
                    n_quarantined += 1
                offset += len(chunk)
            assert n_valid + n_quarantined == n_rows, "every raw row must land in exactly one output"
            gates(raw, cfg, n_rows, n_quarantined, by_rule, per_source)
        if tmp_docs is not None:
            os.replace(tmp_docs, docs)
    finally:
        if tmp_docs is not None:
            shutil.rmtree(tmp_docs, ignore_errors=True)
    if docs is not None:
        make_deterministic(docs)
    share = n_quarantined / n_rows
    return {
        "rows": n_rows, "valid": n_valid, "quarantined": n_quarantined,
        "quarantined_by_rule": dict(sorted(by_rule.items())),
        "expectations": dict(sorted(expectations.items())),
        "by_source": {name: {"rows": s["rows"], "valid": s["valid"], "quarantined": s["quarantined"],
                             "quarantined_by_rule": dict(sorted(s["quarantined_by_rule"].items()))}
                      for name, s in sorted(per_source.items())},
        "dataset_checks": {
            SCHEMA_RULE: {"success": True},
            ROWS_RULE: {"success": True, "observed": n_rows, "min": cfg.min_rows},
            INVALID_RULE: {"success": True, "observed": round(share, 6), "max": cfg.max_invalid_fraction},
            SOURCE_RULE: {"success": True, "max": cfg.max_quarantine_fraction,
                          "observed": {name: round(s["quarantined"] / s["rows"], 6)
                                       for name, s in sorted(per_source.items())}},
        },
    }


def gates(raw, cfg, n_rows, n_quarantined, by_rule, per_source) -> None:
    """Dataset-level stops: too much of everything, or too much of one source, quarantined."""
    share = n_quarantined / n_rows
    if share > cfg.max_invalid_fraction:
        top = ", ".join(f"{rule} ({n})" for rule, n in by_rule.most_common(3))
        raise SystemExit(f"{raw}: dataset rule {INVALID_RULE} failed: {share:.0%} of rows fail row-level "
                         f"rules (limit {cfg.max_invalid_fraction:.0%}); top rules: {top}")
    for name, s in sorted(per_source.items()):
        frac = s["quarantined"] / s["rows"]
        if frac > cfg.max_quarantine_fraction:
            rule, count = s["quarantined_by_rule"].most_common(1)[0]
            files = ", ".join(f"{f} ({n})" for f, n in s["files"].most_common(3))
            raise SystemExit(f"{raw}: dataset rule {SOURCE_RULE} failed for source {name!r}: {frac:.0%} of its "
                             f"{s['rows']} rows quarantined (limit validate.max_quarantine_fraction="
                             f"{cfg.max_quarantine_fraction}); file(s): {files}; top rule: {rule} "
                             f"({RULE_TEXT.get(rule, rule)}, {count} rows); e.g. {s['example'][:300]}")


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STAMPS = re.compile(r"\b\d{8}T\d{6}\.\d{6}Z\b|\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:?\d{2}|Z)?")


def make_deterministic(docs: Path) -> None:
    """Data Docs stamp the render time (page header, asset URLs) and random UUIDs (collapsible
    sections) into every page; pin them so equal inputs give equal bytes and `dvc repro`
    stays reproducible. UUIDs become per-page counters, which keeps each href/id pair linked."""
    for page in sorted(docs.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        seen: dict[str, str] = {}
        fixed = UUID.sub(lambda m: seen.setdefault(m.group(0), f"block-{len(seen):05d}"), text)
        fixed = STAMPS.sub(lambda m: "20000101T000000.000000Z" if "T" in m.group(0) and "-" not in m.group(0)
                           else "2000-01-01T00:00:00", fixed)
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def validate(records: list[dict], cfg: config.ValidateConfig, raw: str, tmp: Path | None = None):
    """In-memory form for tests: (valid, quarantine, summary)."""
    import tempfile

    from .records import read_jsonl as _read, write_jsonl

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "records.jsonl"
        write_jsonl(path, records)
        try:
            summary = validate_file(str(path), cfg, Path(d) / "out")
        except SystemExit as err:
            raise SystemExit(str(err).replace(str(path), raw)) from None
        valid = list(_read(Path(d) / "out" / "valid.jsonl"))
        quarantine = list(_read(Path(d) / "out" / "quarantine.jsonl"))
    return valid, quarantine, summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--raw", default="data/raw/records.jsonl")
    ap.add_argument("--out", default="data/validated")
    ap.add_argument("--report", default="reports/validate")
    ap.add_argument("--no-datadocs", action="store_true", help="skip the Data Docs HTML (benchmarks)")
    args = ap.parse_args(argv)
    cfg, seed = config.load("validate", args.params)

    report = Path(args.report)
    docs = None if args.no_datadocs else report / "datadocs"
    summary = validate_file(args.raw, cfg, Path(args.out), docs)  # raises before any output is in place
    if docs is not None:
        summary["data_docs"] = (docs / "index.html").as_posix()
    summary["lineage"] = lineage.stamp("validate", [args.raw], cfg, seed)
    write_json(report / "summary.json", summary)
    rules = ", ".join(f"{r}={n}" for r, n in summary["quarantined_by_rule"].items())
    print(f"validate: {summary['rows']} rows -> {summary['valid']} valid, "
          f"{summary['quarantined']} quarantined; {rules}")
    if docs is not None:
        print(f"validate: Great Expectations Data Docs in {docs}/index.html")


if __name__ == "__main__":
    main()
