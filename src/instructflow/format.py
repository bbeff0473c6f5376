"""Stage format: validated records -> chat SFT examples, preference pairs, eval prompts.

Reads `params.yaml: format` (+ seed). Writes:
    data/formatted/sft.jsonl     {id, source, locator, messages, labels}
    data/formatted/pairs.jsonl   {id, source, locator, prompt, chosen, rejected, labels}
                                 in TRL's conversational preference format
    data/formatted/eval.jsonl    {id, source, locator, prompt, reference, group, family, heldout, split}
    reports/format/summary.json  counts per split and group (a DVC metric)

Splits are decided by content, never by position: a record whose phrasing the
generator marked as held out always goes to evaluation, and the rest go to
evaluation when the hash of their prompt falls under `eval_fraction`. The same
prompt therefore always lands on the same side, and adding data does not
reshuffle old splits.
"""

from __future__ import annotations

import argparse
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from . import config, lineage
from .records import (atomic_open, dumps, hash_fraction, line_chunks, loads, ordered_map, prompt_of, read_chunk,
                      workers_for, write_json)

NAMES = ("sft", "pairs", "prompts", "labelled", "eval")
CHUNK = 20000  # records per worker task: small enough to keep every worker busy, big enough to amortise
_CFG: config.FormatConfig | None = None  # set before the workers fork

TASK_FAMILIES = ("antonym", "category", "repeat", "last_word", "sentiment")
EVAL_GROUPS = {"harmful": "harmful", "lookalike": "lookalike", **{f: "task" for f in TASK_FAMILIES}}
# Families that exist to give the filter work; they never become evaluation prompts.
TRAIN_ONLY_FAMILIES = ("toxic", "harmful_compliance")


def eval_group(labels: dict) -> str:
    """Which evaluation group a record scores in: task, harmful, lookalike or general (user data)."""
    return EVAL_GROUPS.get(labels.get("family", ""), "general")


def split_of(record: dict, eval_fraction: float) -> str:
    """`eval` or `train`, from labels (a forced split, held out) and the content hash of the prompt alone."""
    labels = record.get("labels") or {}
    if record["kind"] == "preference" or labels.get("family") in TRAIN_ONLY_FAMILIES:
        return "train"
    forced = labels.get("force_split")  # from the source's `split` param
    if forced in ("train", "eval", "test"):
        return "train" if forced == "train" else "eval"
    if labels.get("heldout"):
        return "eval"
    return "eval" if hash_fraction(prompt_of(record["messages"])) < eval_fraction else "train"


def labelled_split(record: dict, test_fraction: float) -> str:
    """`test` or `train` for a classification row: forced by the source, else by the hash of its text."""
    forced = (record.get("labels") or {}).get("force_split")
    if forced in ("train", "test", "eval"):
        return "train" if forced == "train" else "test"
    text = "\n".join(str(m.get("content")) for m in record["messages"])
    return "test" if hash_fraction(text) < test_fraction else "train"


def with_system(messages: list[dict], system_prompt: str) -> list[dict]:
    """Plain {role, content} turns, with the system prompt first unless one is there."""
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    if system_prompt and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": system_prompt})
    return turns


def chat_example(record: dict, system_prompt: str) -> dict:
    return {"id": record["id"], "source": record["source"], "locator": record["locator"],
            "messages": with_system(record["messages"], system_prompt), "labels": record.get("labels") or {}}


def preference_pair(record: dict, system_prompt: str) -> dict:
    return {"id": record["id"], "source": record["source"], "locator": record["locator"],
            "prompt": with_system(record["messages"], system_prompt),
            "chosen": [{"role": "assistant", "content": record["chosen"]}],
            "rejected": [{"role": "assistant", "content": record["rejected"]}],
            "labels": record.get("labels") or {}}


def eval_prompt(record: dict, system_prompt: str) -> dict:
    """An evaluation prompt; prompt-only records have no reference and score as harmful or harmless."""
    labels = record.get("labels") or {}
    if record["kind"] == "prompt":
        prompt, reference = record["messages"], None
        group = "harmful" if labels.get("harmful") else "harmless"
        family = labels.get("family", "prompt")
    else:
        prompt, reference = record["messages"][:-1], record["messages"][-1]["content"]
        group, family = eval_group(labels), labels.get("family", "general")
    return {"id": record["id"], "source": record["source"], "locator": record["locator"],
            "prompt": with_system(prompt, system_prompt), "reference": reference, "group": group,
            "family": family, "category": labels.get("category"), "heldout": bool(labels.get("heldout")),
            "style": labels.get("style"),
            # seen / heldout_phrasing / heldout_item (generator labels); evaluate reports each
            "split": labels.get("split") or ("heldout_phrasing" if labels.get("heldout") else "seen")}


def training_prompt(record: dict, system_prompt: str) -> dict:
    labels = record.get("labels") or {}
    return {"id": record["id"], "source": record["source"], "locator": record["locator"],
            "prompt": with_system(record["messages"], system_prompt), "harmful": bool(labels.get("harmful")),
            "category": labels.get("category"), "style": labels.get("style")}


def labelled_row(record: dict, test_fraction: float) -> dict:
    labels = record.get("labels") or {}
    msgs = record["messages"]
    row = {"id": record["id"], "source": record["source"], "locator": record["locator"],
           "text": msgs[0]["content"], "text2": msgs[1]["content"] if len(msgs) > 1 else None,
           "label": int(labels.get("harmful")), "task": labels.get("task"),
           "split": labelled_split(record, test_fraction)}
    # Optional extras the detector and the PII measurement use.
    row |= {k: labels[k] for k in ("category", "spans") if k in labels}
    return row


def route(record: dict, cfg: config.FormatConfig) -> tuple[str, dict]:
    """(output name, row) for one validated record: every record goes to exactly one output."""
    kind = record["kind"]
    if kind == "preference":
        return "pairs", preference_pair(record, cfg.system_prompt)
    if kind == "labelled":
        return "labelled", labelled_row(record, cfg.test_fraction)
    if split_of(record, cfg.eval_fraction) == "eval":
        return "eval", eval_prompt(record, cfg.system_prompt)
    if kind == "prompt":
        return "prompts", training_prompt(record, cfg.system_prompt)
    return "sft", chat_example(record, cfg.system_prompt)


def format_chunk(task: tuple[str, int, int]) -> tuple[dict[str, str], dict]:
    """One chunk of valid.jsonl -> the text each output gets from it, and its counts."""
    path, offset, count = task
    texts: dict[str, list[str]] = {n: [] for n in NAMES}
    counts = {"by_source": {}, "groups": Counter(), "labelled_splits": Counter(), "tasks": Counter()}
    for line in read_chunk(path, offset, count):
        record = loads(line)
        name, row = route(record, _CFG)
        if name == "labelled":
            counts["labelled_splits"][row["split"]] += 1
            counts["tasks"][f"{row['task']}/{row['split']}"] += 1
        elif name == "eval":
            counts["groups"][f"{row['group']}/{'heldout' if row['heldout'] else 'seen'}"] += 1
        texts[name].append(dumps(row) + "\n")
        counts["by_source"].setdefault(record["source"], Counter())[name] += 1
    counts["rows"] = {n: len(t) for n, t in texts.items()}
    return {n: "".join(t) for n, t in texts.items()}, counts


def main(argv=None) -> None:
    global _CFG
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--valid", default="data/validated/valid.jsonl")
    ap.add_argument("--out", default="data/formatted")
    ap.add_argument("--report", default="reports/format")
    args = ap.parse_args(argv)
    cfg, seed = config.load("format", args.params)
    out = Path(args.out)

    # ---- route every record to exactly one output: chunks of the file in worker processes,
    # written in file order (the bytes do not depend on the number of workers), memory bounded
    _CFG = cfg
    counts = {n: 0 for n in NAMES}
    by_source: dict[str, Counter] = {}
    groups, labelled_splits, tasks = Counter(), Counter(), Counter()
    chunks = [(args.valid, offset, n) for offset, n in line_chunks(args.valid, CHUNK)]
    with ExitStack() as stack:  # a failure anywhere leaves none of the outputs behind
        handles = {n: stack.enter_context(atomic_open(out / f"{n}.jsonl")) for n in NAMES}
        for texts, c in ordered_map(format_chunk, chunks, min(workers_for(cfg.workers), len(chunks))):
            for name, text in texts.items():
                handles[name].write(text)
                counts[name] += c["rows"][name]
            for src, by_name in c["by_source"].items():
                by_source.setdefault(src, Counter()).update(by_name)
            groups.update(c["groups"])
            labelled_splits.update(c["labelled_splits"])
            tasks.update(c["tasks"])

    summary = {
        **counts,
        "eval_by_group": dict(sorted(groups.items())),
        "labelled_by_split": dict(sorted(labelled_splits.items())),
        "labelled_by_task": dict(sorted(tasks.items())),
        "by_source": {src: {n: c.get(n, 0) for n in NAMES} for src, c in sorted(by_source.items())},
        "lineage": lineage.stamp("format", [args.valid], cfg, seed),
    }
    write_json(Path(args.report) / "summary.json", summary)
    print(f"format: {counts['sft']} SFT examples, {counts['pairs']} preference pairs, {counts['prompts']} "
          f"training prompts, {counts['labelled']} labelled rows {dict(sorted(labelled_splits.items()))}, "
          f"{counts['eval']} eval prompts {dict(sorted(groups.items()))}")


if __name__ == "__main__":
    main()
