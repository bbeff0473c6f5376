"""Stage validate: Great Expectations rules split raw records into valid and quarantine.

Reads `data/raw/records.jsonl` and `params.yaml: validate` (+ seed). Writes:
    data/validated/valid.jsonl       raw records that pass every row-level rule, input order
    data/validated/quarantine.jsonl  the others, each with `quarantine_rules` (every rule it broke)
                                     and `quarantine_detail` (source, locator, turn and why)
    reports/validate/summary.json    counts per rule, per expectation and per source (a DVC metric)
    reports/validate/datadocs/       Great Expectations Data Docs of the two suites (HTML)

Two suites run over flat pandas views, chunk by chunk (`chunk_size` rows) so memory
stays bounded on large corpora:
    raw_records  one row per record: parse errors, repeated ids, exact duplicates (the whole
                 conversation, normalised), role order per kind, license, labels a mapping,
                 labels.harmful/labels.task per kind, turn count, chosen != rejected
    raw_turns    one row per turn (every message, and the chosen and rejected replies):
                 turn is an object, known role, content present, a string, not blank, not
                 longer than max_chars (and max_tokens of `tokenizer`), no control characters
Ids and duplicates are tracked over the whole file in reading order (the first copy
wins), so chunking never hides a repeat. Row-level rules move a row to quarantine; dataset-level rules (schema,
row count, share of invalid rows, share of one source quarantined) stop the pipeline with
SystemExit naming the file, the source and the rule, and leave no output behind.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import hashlib
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from . import config, lineage
from .records import (KINDS, RAW_FIELDS, Workers, atomic_open, dumps, line_chunks, normalize_text, read_chunk,
                      workers_for, write_json)

LABEL_TASKS = config.LABEL_TASKS
DERIVED = ("id_repeat", "duplicate_of", "roles", "n_turns", "labels_type", "harmful_prompt", "harmful_labelled",
           "task", "same_reply")
ABSENT = "<absent>"  # a per-kind field that the kind needs but the record lacks (None = does not apply)
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
DUPLICATE_RULE = "expect_column_values_to_be_null(duplicate_of)"
# Raw fields the record suite checks by value; the others (messages, labels, chosen, rejected) by type name.
SCALAR_FIELDS = ("id", "source", "locator", "license", "format", "kind", "error")
# What each row-level rule means, for the one-line `quarantine_detail`.
RULE_TEXT = {
    PARSE_RULE: "source row could not be parsed",
    "expect_column_values_to_be_in_set(id_repeat)": "id already used by an earlier record",
    "expect_column_values_to_be_null(duplicate_of)": "duplicate of an earlier record",
    "expect_column_values_to_match_regex(roles)": "role sequence is invalid for its kind",
    "expect_column_values_to_not_be_null(license)": "license is missing",
    "expect_column_values_to_match_regex(license)": "license is empty",
    "expect_column_values_to_be_in_set(kind)": "unknown record kind",
    "expect_column_values_to_be_in_set(labels_type)": "labels is not a mapping",
    "expect_column_values_to_be_in_set(harmful_prompt)": "prompt records need labels.harmful true or false",
    "expect_column_values_to_be_in_set(harmful_labelled)": "labelled records need labels.harmful 0 or 1",
    "expect_column_values_to_be_in_set(task)": f"labels.task is not one of {LABEL_TASKS}",
    "expect_column_values_to_be_between(n_turns)": "too many turns",
    "expect_column_values_to_be_in_set(same_reply)": "rejected reply equals the chosen one",
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
def content_key(record: dict) -> bytes:
    """Duplicate key: kind, task and every turn and reply, normalised; non-strings kept apart."""
    def norm(v):
        if isinstance(v, str):
            return "s:" + normalize_text(v)
        return "n:" if v is None else "j:" + json.dumps(v, sort_keys=True, default=str)

    msgs = record.get("messages") if isinstance(record.get("messages"), list) else []
    labels = record.get("labels") if isinstance(record.get("labels"), dict) else {}
    parts = [str(record.get("kind")), str(labels.get("task"))]
    parts += [f"{m.get('role')}={norm(m.get('content'))}" if isinstance(m, dict) else norm(m) for m in msgs]
    parts += ["chosen=" + norm(record.get("chosen")), "rejected=" + norm(record.get("rejected"))]
    # 16-byte digests keep the first-seen table small at a million records; collisions are negligible
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def parse(line: bytes):
    """One raw line: valid records are written back byte for byte, so orjson's one lossy corner
    (integers past 64 bits read as floats) never reaches an output but a quarantined row's copy."""
    import orjson  # 3x faster than json here, and validate reads every record twice

    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # NaN, huge integers: what json.dumps may have written
        return json.loads(line)


def read_lines(path):
    """(raw line, record) per non-blank line."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield line, parse(line)


class Seen:
    """Ids and content keys met so far, in file order: the first copy wins, later copies are
    flagged (one pass, so a million records are read once; memory is 16 bytes a key)."""

    def __init__(self) -> None:
        self.ids: set = set()
        self.keys: dict[bytes, str] = {}

    def mark(self, rec: dict) -> tuple[bool, str | None]:
        """(id used before, id of the earlier record with the same content). Unparseable rows
        are skipped for duplicates: they carry no content, and tagging them as duplicates of
        each other would only hide the real reason they are quarantined."""
        return self.mark_key(rec.get("id"), None if rec.get("error") is not None else content_key(rec))

    def mark_key(self, rid, key: bytes | None) -> tuple[bool, str | None]:
        """`mark` with the content key already computed (None: an unparseable row)."""
        repeat = rid in self.ids
        self.ids.add(rid)
        if key is None:
            return repeat, None
        if key in self.keys:
            return repeat, self.keys[key]
        self.keys[key] = rid
        return repeat, None


def count_rows(path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def find_duplicates(records: list[dict]) -> list[str | None]:
    """Id of the first earlier record with the same content key (in-memory, for tests)."""
    seen = Seen()
    return [seen.mark(rec)[1] for rec in records]


def _roles(record: dict) -> str:
    msgs = record.get("messages")
    msgs = msgs if isinstance(msgs, list) else []
    roles = ",".join(str(m.get("role")) if isinstance(m, dict) else "?" for m in msgs)
    return f"{record.get('kind')}:{roles}"


def build_frames(records: list[dict], marks: list[tuple[bool, str | None]], tokenizer=None):
    """(records frame, turns frame) for the two suites, built column by column.

    Per-kind fields are derived columns that hold None where the rule does not apply: map
    expectations skip nulls, so no row conditions are needed (pandas `query` per rule was a
    third of the run time). The raw columns carry the value's type name, not the value:
    the schema rule needs the columns, the content checks run on the turns frame.
    Object dtype, so a number in a text field stays a number and fails the type rule."""
    import pandas as pd

    keys = list(dict.fromkeys(k for r in records for k in r)) if records else list(RAW_FIELDS)
    cols: dict[str, list] = {k: [] for k in [*keys, *DERIVED]}
    turns: dict[str, list] = {k: [] for k in TURN_COLUMNS}

    def turn(i, part, kind_of, role, content):
        for col, v in zip(TURN_COLUMNS, (i, part, kind_of, role, content, None)):
            turns[col].append(v)

    for i, (r, (repeat, dup)) in enumerate(zip(records, marks)):
        for k in keys:
            v = r.get(k)
            cols[k].append(v if k in SCALAR_FIELDS else type(v).__name__)
        kind = r.get("kind")
        labels = r.get("labels")
        labels = labels if isinstance(labels, dict) else {}
        msgs = r.get("messages") if isinstance(r.get("messages"), list) else []
        for col, v in (("id_repeat", repeat), ("duplicate_of", dup), ("roles", _roles(r)), ("n_turns", len(msgs)),
                       ("labels_type", type(r.get("labels")).__name__),
                       ("harmful_prompt", labels.get("harmful", ABSENT) if kind == "prompt" else None),
                       ("harmful_labelled", labels.get("harmful", ABSENT) if kind == "labelled" else None),
                       ("task", labels.get("task", ABSENT) if kind == "labelled" else None),
                       ("same_reply", (r.get("chosen") == r.get("rejected")) if kind == "preference" else None)):
            cols[col].append(v)
        if r.get("error") is not None:
            continue  # no content to check; the parse rule says it all
        for j, m in enumerate(msgs):
            if isinstance(m, dict):
                turn(i, f"messages[{j}]", "dict", m.get("role"), m.get("content"))
            else:
                turn(i, f"messages[{j}]", type(m).__name__, None, None)
        if kind == "preference":
            turn(i, "chosen", "dict", "assistant", r.get("chosen"))
            turn(i, "rejected", "dict", "assistant", r.get("rejected"))
    if tokenizer is not None and turns["turn_content"]:
        texts = [t for t in turns["turn_content"] if isinstance(t, str)]
        lengths = iter(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
        turns["turn_tokens"] = [next(lengths) if isinstance(t, str) else None for t in turns["turn_content"]]
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in cols.items()}, columns=[*keys, *DERIVED])
    tframe = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in turns.items()}, columns=list(TURN_COLUMNS))
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

    records = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*RAW_FIELDS, *DERIVED], exact_match=True),
        gxe.ExpectColumnValuesToBeNull(column="error"),
        gxe.ExpectColumnValuesToBeInSet(column="id_repeat", value_set=[False]),
        gxe.ExpectColumnValuesToBeNull(column="duplicate_of"),
        gxe.ExpectColumnValuesToMatchRegex(column="roles", regex=ROLES_REGEX),
        gxe.ExpectColumnValuesToNotBeNull(column="license"),
        gxe.ExpectColumnValuesToMatchRegex(column="license", regex=r"\S"),
        gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=list(KINDS)),
        gxe.ExpectColumnValuesToBeInSet(column="labels_type", value_set=["dict"]),
        gxe.ExpectColumnValuesToBeBetween(column="n_turns", max_value=cfg.max_turns),
        # Per-kind columns are null where they do not apply (set rules skip nulls) and ABSENT where
        # the kind needs them. True == 1 in Python, so the sets cannot tell bool from 0/1.
        gxe.ExpectColumnValuesToBeInSet(column="harmful_prompt", value_set=[True, False]),
        gxe.ExpectColumnValuesToBeInSet(column="harmful_labelled", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeInSet(column="task", value_set=list(LABEL_TASKS)),
        gxe.ExpectColumnValuesToBeInSet(column="same_reply", value_set=[False]),
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


# Every failing row's index (for quarantine), but no sample values: GE's Data Docs print sample
# values without HTML-escaping them, and they are corpus text (a `<script>` in a reply would run).
RESULT_FORMAT = {"result_format": "COMPLETE", "partial_unexpected_count": 0}


def _shape_fingerprint(df) -> str:
    return hashlib.md5(repr((df.shape, list(df.columns))).encode(), usedforsecurity=False).hexdigest()


class Runner:
    """An ephemeral, offline GE context with both suites attached; optionally a Data Docs site.

    The checkpoints have no actions: a chunk may be validated in a worker process, whose context
    is a forked copy. Its suite results come back with the chunk's verdicts, `keep` files them in
    this process's results store, in file order, and `build_docs` renders the site once at the end."""

    def __init__(self, suites, docs: Path | None):
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GE fingerprints every batch by hashing every cell (or pickling the frame), which costs more
        # than all the rules together at 10^5-10^6 rows; the fingerprint is only batch metadata, so a
        # shape-and-columns digest stands in for it (deterministic, and Data Docs show it).
        import great_expectations.execution_engine.pandas_execution_engine as engine

        engine.hash_pandas_dataframe = _shape_fingerprint
        self.ctx = ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.docs = docs
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
            self.checkpoints[suite.name] = ctx.checkpoints.add(gx.Checkpoint(
                name=suite.name, validation_definitions=[vd], actions=[], result_format=RESULT_FORMAT))

    def run(self, suite: str, frame, chunk: int) -> tuple[dict, tuple]:
        """(rule name -> expectation result, (result key, suite result) for the Data Docs)."""
        from great_expectations.core.run_identifier import RunIdentifier

        # A fixed run time: Data Docs paths and pages carry it, and they must not change between runs.
        run_id = RunIdentifier(run_name=f"chunk-{chunk:04d}",
                               run_time=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc))
        result = self.checkpoints[suite].run(batch_parameters={"dataframe": frame}, run_id=run_id)
        ((key, res),) = result.run_results.items()
        return dict(sorted((rule_name(r), r) for r in res.results)), (key, res)

    def keep(self, key, result) -> None:
        self.ctx.validation_results_store.set(key, result)

    def build_docs(self) -> None:
        # Only our site: the ephemeral context's default site would fill a fresh /tmp folder on each run.
        self.ctx.build_data_docs(site_names=["validate"])


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


_STATE: dict = {}  # what the chunk tasks read: set in validate_file before the workers fork


def _keys_task(task: tuple[str, int, int]) -> tuple[list, list]:
    """Ids and content keys of one chunk (None for unparseable rows): the part of the duplicate
    check that needs the record; which copy came first is then decided in file order."""
    path, offset, count = task
    ids, keys = [], []
    with paused_gc():
        for line in read_chunk(path, offset, count, unicode_blanks=False):
            rec = parse(line)
            ids.append(rec.get("id"))
            keys.append(None if rec.get("error") is not None else content_key(rec))
    return ids, keys


def _suite_task(task: tuple[str, int, int, list, int]) -> dict:
    path, offset, count, marks, n_chunk = task
    with paused_gc():
        lines = read_chunk(path, offset, count, unicode_blanks=False)
        return check_chunk(path, lines, [parse(line) for line in lines], marks, n_chunk)


@contextlib.contextmanager
def paused_gc():
    """No cyclic GC while a chunk's 10^5 records are built: each full collection would walk them
    all (a tenth of the run time at 1M rows); what is freed is freed by reference counting."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def check_chunk(raw: str, lines: list[bytes], chunk: list[dict], marks: list, n_chunk: int) -> dict:
    """Both suites over one chunk: the valid and quarantine lines it gives, with its counts, or
    `error` (a dataset-level failure, raised by the caller in file order)."""
    cfg, runner = _STATE["cfg"], _STATE["runner"]
    frame, tframe = build_frames(chunk, marks, _STATE["tokenizer"])
    rec_results, rec_doc = runner.run("raw_records", frame, n_chunk)
    turn_results, turn_doc = runner.run("raw_turns", tframe, n_chunk)
    results = rec_results | turn_results
    broken = [name for name, r in results.items() if _raised(r)]
    if broken:  # a rule that could not run must not silently pass its rows
        return {"error": f"{raw}: rule(s) {broken} could not be evaluated"}
    schema = rec_results[SCHEMA_RULE]
    if not schema.success:
        return {"error": f"{raw}: dataset rule {SCHEMA_RULE} failed: columns differ from the raw "
                         f"record schema {schema.result.get('details', {}).get('mismatched')}"}
    out = {"error": None, "valid": [], "quarantine": [], "by_rule": Counter(), "sources": {},
           "docs": [rec_doc, turn_doc] if runner.docs is not None else [],
           "expectations": {name: (bool(r.success), r.result.get("unexpected_count", 0))
                            for name, r in results.items() if name != SCHEMA_RULE}}
    failures = chunk_failures(rec_results, turn_results, tframe, len(chunk))
    for i, rec in enumerate(chunk):
        src = out["sources"].setdefault(str(rec.get("source")), {
            "rows": 0, "valid": 0, "quarantined": 0, "quarantined_by_rule": Counter(), "files": Counter(),
            "example": None})
        src["rows"] += 1
        if i not in failures:
            out["valid"].append(lines[i].decode("utf-8").rstrip("\r\n") + "\n")
            src["valid"] += 1
            continue
        rules = sorted({rule for rule, _ in failures[i]})
        why = "; ".join(f"{where + ': ' if where else ''}{RULE_TEXT.get(rule, rule)}"
                        + (f" ({rec['error']})" if rule == PARSE_RULE else "")
                        + (f" ({marks[i][1]})" if rule == DUPLICATE_RULE else "")
                        for rule, where in failures[i])
        detail = f"{rec.get('source')} {rec.get('locator')}: {why}"
        out["quarantine"].append(dumps({**rec, "quarantine_rules": rules, "quarantine_detail": detail}) + "\n")
        out["by_rule"].update(rules)
        src["quarantined"] += 1
        src["quarantined_by_rule"].update(rules)
        src["files"][_file_of(rec.get("locator"))] += 1
        src["example"] = src["example"] or detail
    out["n_valid"], out["n_quarantined"] = len(out["valid"]), len(out["quarantine"])
    out["valid"], out["quarantine"] = "".join(out["valid"]), "".join(out["quarantine"])
    return out


def validate_file(raw: str, cfg: config.ValidateConfig, out: Path, docs: Path | None = None) -> dict:
    """Stream `raw` into out/valid.jsonl and out/quarantine.jsonl; SystemExit (and no output)
    on a dataset-level failure. Returns the summary.

    Chunks of `chunk_size` rows run in `workers` processes, in two passes: ids and content keys
    (first copies decided in file order here), then both suites per chunk; results are written in
    file order, so the outputs do not depend on the number of workers. Data Docs are built once, at
    the end, from every chunk's suite results (`Runner`)."""
    chunks = line_chunks(raw, cfg.chunk_size, unicode_blanks=False)  # bytes.strip, as read_lines
    n_rows = sum(n for _, n in chunks)
    if n_rows < cfg.min_rows:
        raise SystemExit(f"{raw}: dataset rule {ROWS_RULE} failed: {n_rows} rows, "
                         f"need at least {cfg.min_rows} (validate.min_rows)")
    workers = min(workers_for(cfg.workers), len(chunks))
    tmp_docs = None if docs is None else docs.with_name(f".{docs.name}.tmp-{os.getpid()}")
    if tmp_docs is not None:
        shutil.rmtree(tmp_docs, ignore_errors=True)
    seen = Seen()
    by_rule, expectations = Counter(), {}
    per_source: dict[str, dict] = defaultdict(lambda: {"rows": 0, "valid": 0, "quarantined": 0,
                                                       "quarantined_by_rule": Counter(), "files": Counter(),
                                                       "example": None})
    n_valid = n_quarantined = 0
    # Built before the workers fork, so they share it: GE's import and context cost seconds each.
    _STATE.update(cfg=cfg, tokenizer=load_tokenizer(cfg),
                  runner=Runner(build_suites(cfg, list(RAW_FIELDS) + list(DERIVED)), tmp_docs))
    stack = contextlib.ExitStack()
    try:
        tasks = [(raw, offset, n) for offset, n in chunks]
        pool = stack.enter_context(Workers(workers, _keys_task, _suite_task))
        marks = [[seen.mark_key(rid, key) for rid, key in zip(*ids_keys)]
                 for ids_keys in pool.map(_keys_task, tasks)]
        with atomic_open(out / "valid.jsonl") as vfh, atomic_open(out / "quarantine.jsonl") as qfh:
            suite_tasks = [(*t, m, k) for k, (t, m) in enumerate(zip(tasks, marks))]
            del marks
            for res in pool.map(_suite_task, suite_tasks):
                if res["error"]:
                    raise SystemExit(res["error"])
                for name, (ok, count) in res["expectations"].items():
                    e = expectations.setdefault(name, {"success": True, "unexpected_count": 0})
                    e["success"] = e["success"] and ok
                    e["unexpected_count"] += count
                for key, suite_result in res["docs"]:
                    _STATE["runner"].keep(key, suite_result)
                vfh.write(res["valid"])
                qfh.write(res["quarantine"])
                n_valid += res["n_valid"]
                n_quarantined += res["n_quarantined"]
                by_rule.update(res["by_rule"])
                for name, part in res["sources"].items():
                    src = per_source[name]
                    for k in ("rows", "valid", "quarantined"):
                        src[k] += part[k]
                    src["quarantined_by_rule"].update(part["quarantined_by_rule"])
                    src["files"].update(part["files"])
                    src["example"] = src["example"] or part["example"]
            assert n_valid + n_quarantined == n_rows, "every raw row must land in exactly one output"
            gates(raw, cfg, n_rows, n_quarantined, by_rule, per_source)
        if tmp_docs is not None:  # the old Data Docs go only once the new ones are complete
            _STATE["runner"].build_docs()
            shutil.rmtree(docs, ignore_errors=True)
            os.replace(tmp_docs, docs)
    finally:
        stack.close()
        _STATE.clear()
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


def validate(records: list[dict], cfg: config.ValidateConfig, raw: str):
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
