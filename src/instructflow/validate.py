"""Stage validate: Great Expectations rules split raw records into valid and quarantine.

Reads `data/raw/records.jsonl` and `params.yaml: validate` (+ seed). Writes:
    data/validated/valid.jsonl       raw records that pass every row-level rule, input order
    data/validated/quarantine.jsonl  the others, each with `quarantine_rules` and `quarantine_detail`
    reports/validate/summary.json    counts per rule and per expectation (a DVC metric)

Rules are a Great Expectations suite run over a flat DataFrame view of the
records (one row per record, plus derived columns). Row-level rules move a row to
quarantine; dataset-level rules (schema, row count, share of invalid rows) stop
the pipeline with SystemExit naming the file and the rule, and write nothing.
Every raw row ends up in exactly one of the two outputs.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

from . import config, lineage
from .records import RAW_FIELDS, normalize_text, prompt_of, read_jsonl, reply_of, write_json, write_jsonl

DERIVED = ("prompt", "response", "roles", "duplicate_of")
# Role sequence prefixed by kind: an optional system turn, alternating user/assistant
# turns, ending in the assistant reply (sft) or in the user prompt (preference).
ROLES_REGEX = (r"^(?:sft:(?:system,)?(?:user,assistant,)*user,assistant"
               r"|preference:(?:system,)?(?:user,assistant,)*user)$")
SCHEMA_RULE = "expect_table_columns_to_match_set"
ROWS_RULE = "expect_table_row_count_to_be_between"
INVALID_RULE = "max_invalid_fraction"
# What each row-level rule means, for the one-line `quarantine_detail`.
RULE_TEXT = {
    "expect_column_values_to_be_null(error)": "source row could not be parsed",
    "expect_column_values_to_be_unique(id)": "id is not unique",
    "expect_column_values_to_be_null(duplicate_of)": "duplicate of an earlier record",
    "expect_column_values_to_match_regex(roles)": "role sequence is invalid for its kind",
    "expect_column_values_to_not_be_null(license)": "license is missing",
    "expect_column_values_to_match_regex(license)": "license is empty",
    "expect_select_column_values_to_be_unique_within_record(response,rejected)":
        "rejected reply equals the chosen one",
}
for _col in ("prompt", "response", "rejected"):
    RULE_TEXT |= {
        f"expect_column_values_to_not_be_null({_col})": f"{_col} is missing",
        f"expect_column_values_to_be_of_type({_col})": f"{_col} is not a string",
        f"expect_column_values_to_match_regex({_col})": f"{_col} is empty",
        f"expect_column_value_lengths_to_be_between({_col})": f"{_col} is too long",
    }


def _content_key(value) -> str:
    """Duplicate key of one field: normalized text, or the JSON of a non-string, kept apart."""
    if isinstance(value, str):
        return "s:" + normalize_text(value)
    return "j:" + json.dumps(value, sort_keys=True, default=str)


def find_duplicates(frame) -> list[str | None]:
    """Id of the first earlier record with the same normalized (prompt, response, rejected).

    Unparseable rows are skipped: they carry no content, and tagging them as
    duplicates of each other would only hide the real reason they are quarantined."""
    first: dict[tuple, str] = {}
    out: list[str | None] = []
    for rid, error, *content in frame[["id", "error", "prompt", "response", "rejected"]].itertuples(index=False):
        key = tuple(_content_key(v) for v in content)
        out.append(None if error is not None else first.get(key))
        if error is None:
            first.setdefault(key, rid)
    return out


def _roles(record: dict) -> str:
    msgs = record.get("messages")
    msgs = msgs if isinstance(msgs, list) else []
    roles = ",".join(str(m.get("role")) if isinstance(m, dict) else "?" for m in msgs)
    return f"{record.get('kind')}:{roles}"


def build_frame(records: list[dict]):
    """Flat view: every raw top-level field as-is, plus the derived columns the rules check.

    Columns are object dtype so that a number in a text field stays a number
    (pandas would otherwise infer a string dtype) and fails the type rule."""
    import pandas as pd

    keys = list(dict.fromkeys(k for r in records for k in r)) if records else list(RAW_FIELDS)
    rows = [{k: r.get(k) for k in keys} | {
        "prompt": prompt_of(r.get("messages") if isinstance(r.get("messages"), list) else []),
        "response": reply_of(r), "roles": _roles(r)} for r in records]
    frame = pd.DataFrame(rows, columns=[*keys, *DERIVED[:-1]], dtype=object)
    frame["duplicate_of"] = pd.Series(find_duplicates(frame), index=frame.index, dtype=object)
    return frame


def _gx():
    """Import Great Expectations lazily (it takes seconds), with usage analytics off."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"  # read at import: no telemetry, no network
    import great_expectations as gx

    return gx


def build_suite(cfg: config.ValidateConfig):
    """The `raw_records` suite: two dataset-level expectations, the rest row-level."""
    gx = _gx()
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    exps = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*RAW_FIELDS, *DERIVED], exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
        gxe.ExpectColumnValuesToBeNull(column="error"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeNull(column="duplicate_of"),
        gxe.ExpectColumnValuesToMatchRegex(column="roles", regex=ROLES_REGEX),
        gxe.ExpectColumnValuesToNotBeNull(column="license"),
        gxe.ExpectColumnValuesToMatchRegex(column="license", regex=r"\S"),
    ]
    # One failure mode per rule: None -> not_null, 42 -> of_type, "" or "  " -> regex,
    # too long -> lengths (the regex and length rules see non-strings as their str()).
    pref = Column("kind") == "preference"
    for col, cond in (("prompt", None), ("response", None), ("rejected", pref)):
        exps += [gxe.ExpectColumnValuesToNotBeNull(column=col, row_condition=cond),
                 gxe.ExpectColumnValuesToBeOfType(column=col, type_="str", row_condition=cond),
                 gxe.ExpectColumnValuesToMatchRegex(column=col, regex=r"\S", row_condition=cond),
                 gxe.ExpectColumnValueLengthsToBeBetween(column=col, max_value=cfg.max_chars, row_condition=cond)]
    exps.append(gxe.ExpectSelectColumnValuesToBeUniqueWithinRecord(column_list=["response", "rejected"],
                                                                   row_condition=pref))
    # Built unattached: the suite joins a (throw-away) context only when it is run.
    return gx.ExpectationSuite(name="raw_records", expectations=exps)


def rule_name(result) -> str:
    kw = result.expectation_config.kwargs
    target = kw.get("column") or ",".join(kw.get("column_list") or [])
    return f"{result.expectation_config.type}({target})" if target else result.expectation_config.type


def run_suite(frame, suite) -> dict:
    """Validate the frame in an ephemeral, offline GE context; results keyed by rule name."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = ctx.data_sources.add_pandas("raw").add_dataframe_asset("records") \
        .add_batch_definition_whole_dataframe("all")
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    results = batch.validate(ctx.suites.add(suite), result_format="COMPLETE").results
    return dict(sorted((rule_name(r), r) for r in results))


def _raised(result) -> bool:
    info = result.exception_info or {}
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def row_failures(results: dict, n_rows: int) -> dict[int, list[str]]:
    """Row position -> sorted names of the row-level rules it breaks."""
    failed: dict[int, list[str]] = {}
    for name, res in results.items():
        if name in (SCHEMA_RULE, ROWS_RULE):
            continue
        for i in res.result.get("unexpected_index_list") or []:
            assert 0 <= i < n_rows, (name, i)
            failed.setdefault(int(i), []).append(name)
    # An unparseable row has no content: its empty prompt/response/roles failures would
    # only repeat the parse error and inflate the per-rule counts, so it keeps just that.
    parse = "expect_column_values_to_be_null(error)"
    return {i: [parse] if parse in rules else sorted(rules) for i, rules in sorted(failed.items())}


def validate(records: list[dict], cfg: config.ValidateConfig, raw: str) -> tuple[list, list, dict]:
    """Split records into (valid, quarantine, summary); SystemExit on a dataset-level failure."""
    frame = build_frame(records)
    results = run_suite(frame, build_suite(cfg))
    broken = [name for name, r in results.items() if _raised(r)]
    if broken:  # a rule that could not run must not silently pass its rows
        raise SystemExit(f"{raw}: rule(s) {broken} could not be evaluated")
    schema, count = results[SCHEMA_RULE], results[ROWS_RULE]
    if not schema.success:
        raise SystemExit(f"{raw}: dataset rule {SCHEMA_RULE} failed: columns differ from the raw "
                         f"record schema {schema.result.get('details', {}).get('mismatched')}")
    if not count.success:
        raise SystemExit(f"{raw}: dataset rule {ROWS_RULE} failed: {len(records)} rows, "
                         f"need at least {cfg.min_rows} (validate.min_rows)")

    failures = row_failures(results, len(records))
    by_rule = Counter(rule for rules in failures.values() for rule in rules)
    share = len(failures) / len(records)
    if share > cfg.max_invalid_fraction:
        top = ", ".join(f"{rule} ({n})" for rule, n in by_rule.most_common(3))
        raise SystemExit(f"{raw}: dataset rule {INVALID_RULE} failed: {share:.0%} of rows fail row-level "
                         f"rules (limit {cfg.max_invalid_fraction:.0%}); top rules: {top}")

    valid, quarantine = [], []
    for i, rec in enumerate(records):
        if i not in failures:
            valid.append(rec)
            continue
        rules = failures[i]
        why = "; ".join(RULE_TEXT.get(r, r) + (f" ({rec['error']})" if r.endswith("(error)") else "") for r in rules)
        quarantine.append({**rec, "quarantine_rules": rules,
                           "quarantine_detail": f"{rec.get('source')} {rec.get('locator')}: {why}"})
    assert len(valid) + len(quarantine) == len(records), "every raw row must land in exactly one output"

    summary = {
        "rows": len(records), "valid": len(valid), "quarantined": len(quarantine),
        "quarantined_by_rule": dict(sorted(by_rule.items())),
        "expectations": {name: {"success": bool(r.success), "unexpected_count": r.result.get("unexpected_count", 0)}
                         for name, r in results.items() if name not in (SCHEMA_RULE, ROWS_RULE)},
        "dataset_checks": {
            SCHEMA_RULE: {"success": True},
            ROWS_RULE: {"success": True, "observed": len(records), "min": cfg.min_rows},
            INVALID_RULE: {"success": True, "observed": round(share, 6), "max": cfg.max_invalid_fraction},
        },
    }
    return valid, quarantine, summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--raw", default="data/raw/records.jsonl")
    ap.add_argument("--out", default="data/validated")
    ap.add_argument("--report", default="reports/validate")
    args = ap.parse_args(argv)
    cfg, seed = config.load("validate", args.params)

    records = list(read_jsonl(args.raw))
    valid, quarantine, summary = validate(records, cfg, args.raw)  # raises before any write
    out = Path(args.out)
    write_jsonl(out / "valid.jsonl", valid)
    write_jsonl(out / "quarantine.jsonl", quarantine)
    summary["lineage"] = lineage.stamp("validate", [args.raw], cfg, seed)
    write_json(Path(args.report) / "summary.json", summary)
    rules = ", ".join(f"{r}={n}" for r, n in summary["quarantined_by_rule"].items())
    print(f"validate: {summary['rows']} rows -> {summary['valid']} valid, "
          f"{summary['quarantined']} quarantined; {rules}")


if __name__ == "__main__":
    main()
