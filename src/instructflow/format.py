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
from pathlib import Path

from . import config, lineage
from .records import hash_fraction, prompt_of, read_jsonl, write_json, write_jsonl

TASK_FAMILIES = ("antonym", "category", "repeat", "last_word", "sentiment")
EVAL_GROUPS = {"harmful": "harmful", "lookalike": "lookalike", **{f: "task" for f in TASK_FAMILIES}}
# Families that exist to give the filter work; they never become evaluation prompts.
TRAIN_ONLY_FAMILIES = ("toxic", "harmful_compliance")


def eval_group(labels: dict) -> str:
    """Which evaluation group a record scores in: task, harmful, lookalike or general (user data)."""
    return EVAL_GROUPS.get(labels.get("family", ""), "general")


def split_of(record: dict, eval_fraction: float) -> str:
    """`eval` or `train`, from labels and the content hash of the prompt alone."""
    labels = record.get("labels") or {}
    if record["kind"] == "preference" or labels.get("family") in TRAIN_ONLY_FAMILIES:
        return "train"
    if labels.get("heldout"):
        return "eval"
    return "eval" if hash_fraction(prompt_of(record["messages"])) < eval_fraction else "train"


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
    labels = record.get("labels") or {}
    return {"id": record["id"], "source": record["source"], "locator": record["locator"],
            "prompt": with_system(record["messages"][:-1], system_prompt),
            "reference": record["messages"][-1]["content"], "group": eval_group(labels),
            "family": labels.get("family", "general"), "category": labels.get("category"),
            "heldout": bool(labels.get("heldout")),
            # seen / heldout_phrasing / heldout_item (generator labels); evaluate reports each
            "split": labels.get("split") or ("heldout_phrasing" if labels.get("heldout") else "seen")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--valid", default="data/validated/valid.jsonl")
    ap.add_argument("--out", default="data/formatted")
    ap.add_argument("--report", default="reports/format")
    args = ap.parse_args(argv)
    cfg, seed = config.load("format", args.params)
    out = Path(args.out)

    sft, pairs, evals = [], [], []
    for record in read_jsonl(args.valid):
        if record["kind"] == "preference":
            pairs.append(preference_pair(record, cfg.system_prompt))
        elif split_of(record, cfg.eval_fraction) == "eval":
            evals.append(eval_prompt(record, cfg.system_prompt))
        else:
            sft.append(chat_example(record, cfg.system_prompt))

    write_jsonl(out / "sft.jsonl", sft)
    write_jsonl(out / "pairs.jsonl", pairs)
    write_jsonl(out / "eval.jsonl", evals)
    groups = Counter(f"{e['group']}/{'heldout' if e['heldout'] else 'seen'}" for e in evals)
    summary = {
        "sft": len(sft), "pairs": len(pairs), "eval": len(evals),
        "eval_by_group": dict(sorted(groups.items())),
        "lineage": lineage.stamp("format", [args.valid], cfg, seed),
    }
    write_json(Path(args.report) / "summary.json", summary)
    print(f"format: {len(sft)} SFT examples, {len(pairs)} preference pairs, {len(evals)} eval prompts "
          f"{dict(sorted(groups.items()))}")


if __name__ == "__main__":
    main()
