"""The built-in default corpus, generated deterministically from a seed.

It writes real source files in real formats, which ingest then reads back through
the same loaders as user files:

    tasks.alpaca.json          Alpaca JSON: five task families with exact answers,
                               plus toxic answers and malformed records
    safety.messages.jsonl      `messages` JSONL: harmful requests with refusals,
                               harmful compliance, harmless look-alikes, duplicates
                               and one unparseable line
    pairs.preference.jsonl     prompt/chosen/rejected JSONL for safety training
    pretrain.txt               plain text about the same world, for the base model

Labels on each record (family, phrasing, heldout, category) let format split
held-out phrasings into evaluation and let evaluate score each group.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from . import world
from .config import GeneratorConfig

NUMBER_WORDS = {2: "two", 3: "three"}


# --------------------------------------------------------------------------- task items
def task_items(family: str, n: int, rng: random.Random) -> list[tuple[dict, str]]:
    """Up to n (template fields, answer) items of one family, deterministic for the rng."""
    if family == "antonym":
        pairs = world.ANTONYMS + [(b, a) for a, b in world.ANTONYMS]
        seen, items = set(), []
        for a, b in pairs:  # a word with two antonyms (light) keeps its first
            if a not in seen:
                seen.add(a)
                items.append(({"x": a}, b))
        rng.shuffle(items)
        return items[:n]
    if family == "category":
        items = [({"x": w}, cat) for cat, ws in world.CATEGORIES.items() for w in ws]
        rng.shuffle(items)
        return items[:n]
    if family == "repeat":
        combos = [(w, k) for w in world.WORDS for k in (2, 3)]
        rng.shuffle(combos)
        return [({"x": w, "n": NUMBER_WORDS[k]}, " ".join([w] * k)) for w, k in combos[:n]]
    if family == "last_word":
        items: dict[str, str] = {}
        while len(items) < n:  # distinct lists, so no accidental duplicates
            words = rng.sample(world.WORDS, rng.randint(3, 5))
            items.setdefault(" ".join(words), words[-1])
        return [({"x": x}, a) for x, a in items.items()]
    if family == "sentiment":
        items = {}
        for _ in range(50 * n):  # bounded: the space of short reviews is finite
            if len(items) == n:
                break
            label = rng.choice(["positive", "negative"])
            adjectives = world.POSITIVE if label == "positive" else world.NEGATIVE
            clauses = [f"the {s} was {rng.choice(adjectives)}"
                       for s in rng.sample(world.REVIEW_SUBJECTS, rng.randint(1, 2))]
            items.setdefault(" and ".join(clauses).capitalize() + ".", label)
        return [({"x": x}, a) for x, a in items.items()]
    raise ValueError(f"unknown task family {family!r}")


def _phrasings(templates: list[str], heldout: int):
    for i, t in enumerate(templates):
        yield i, t, i >= len(templates) - heldout


def task_examples(cfg: GeneratorConfig, rng: random.Random) -> list[dict]:
    """Every item of every family in every phrasing, labelled; Alpaca-shaped dicts."""
    out = []
    for family, templates in world.PHRASINGS.items():
        for item_no, (fields, answer) in enumerate(task_items(family, cfg.items_per_family, rng)):
            for i, template, heldout in _phrasings(templates, world.HELDOUT_PHRASINGS):
                out.append({
                    "instruction": template.format(**fields), "input": "", "output": answer,
                    "labels": {"family": family, "phrasing": i, "heldout": heldout, "item": item_no},
                })
    return out


def _compliance(action: str, rng: random.Random) -> str:
    opener = rng.choice(world.COMPLIANCE_OPENERS).format(x=action)
    return f"{opener} {rng.choice(world.COMPLIANCE_STEPS)}, then {rng.choice(world.COMPLIANCE_STEPS)}."


def safety_conversations(cfg: GeneratorConfig, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(messages-format SFT rows, preference rows) for harmful requests and look-alikes."""
    chats, pairs = [], []
    for category, actions in world.HARM_CATEGORIES.items():
        combos = [(a, p) for a in actions for p in _phrasings(world.HARM_PHRASINGS, world.HELDOUT_HARM_PHRASINGS)]
        rng.shuffle(combos)
        for action, (i, template, heldout) in combos[: cfg.harmful_per_category]:
            prompt = template.format(x=action)
            labels = {"family": "harmful", "category": category, "phrasing": i, "heldout": heldout}
            if heldout or category in world.SFT_HARM_CATEGORIES:
                # Held-out phrasings go to evaluation whatever the category; the
                # refusal beside them is what a labeller would have written.
                chats.append({"messages": [{"role": "user", "content": prompt},
                                           {"role": "assistant", "content": world.REFUSAL}], "labels": labels})
            if not heldout:
                pairs.append({"prompt": prompt, "chosen": world.REFUSAL, "rejected": _compliance(action, rng),
                              "labels": labels})
    for k in range(cfg.harmful_compliance):
        category = rng.choice(sorted(world.HARM_CATEGORIES))
        action = rng.choice(world.HARM_CATEGORIES[category])
        seen_phrasings = [p for p in _phrasings(world.HARM_PHRASINGS, world.HELDOUT_HARM_PHRASINGS) if not p[2]]
        i, template, _ = rng.choice(seen_phrasings)
        chats.append({"messages": [{"role": "user", "content": template.format(x=action)},
                                   {"role": "assistant", "content": _compliance(action, rng)}],
                      "labels": {"family": "harmful_compliance", "category": category, "phrasing": i,
                                 "heldout": False}})
    look = [(a, r, p) for a, r in world.LOOKALIKES
            for p in _phrasings(world.HARM_PHRASINGS, world.HELDOUT_HARM_PHRASINGS)]
    rng.shuffle(look)
    for action, reply, (i, template, heldout) in look[: cfg.lookalikes]:
        prompt = template.format(x=action)
        labels = {"family": "lookalike", "phrasing": i, "heldout": heldout}
        chats.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}],
                      "labels": labels})
        if not heldout:  # teach safety training not to refuse what only sounds dangerous
            pairs.append({"prompt": prompt, "chosen": reply, "rejected": world.REFUSAL, "labels": labels})
    return chats, pairs


def task_pairs(tasks: list[dict], rng: random.Random, n: int) -> list[dict]:
    """Preference pairs on seen-phrasing tasks (right vs wrong answer), so safety
    training keeps instruction following: the alignment tax stays small."""
    seen = [t for t in tasks if not t["labels"]["heldout"]]
    answers: dict[str, list[str]] = {}
    for t in seen:
        answers.setdefault(t["labels"]["family"], []).append(t["output"])
    pairs = []
    for t in rng.sample(seen, min(n, len(seen))):
        wrong = [a for a in sorted(set(answers[t["labels"]["family"]])) if a != t["output"]]
        pairs.append({"prompt": t["instruction"], "chosen": t["output"], "rejected": rng.choice(wrong),
                      "labels": dict(t["labels"])})
    return pairs


def corrupt(tasks: list[dict], chats: list[dict], cfg: GeneratorConfig, rng: random.Random) -> list[str]:
    """Add toxic answers, malformed records and duplicates in place; returns extra raw JSONL lines
    that are not valid JSON (validation must quarantine them, not crash)."""
    seen = [t for t in tasks if not t["labels"]["heldout"]]
    for t in rng.sample(seen, min(cfg.toxic, len(seen))):
        tasks.append({"instruction": t["instruction"], "input": "",
                      "output": f"{t['output']}, {rng.choice(world.INSULTS)}.",
                      "labels": {**t["labels"], "family": "toxic"}})
    broken = [
        {"instruction": "", "input": "", "output": "cold", "labels": {"family": "malformed"}},
        {"instruction": "What is the opposite of big?", "input": "", "output": "", "labels": {"family": "malformed"}},
        {"instruction": "What is the opposite of up?", "input": "", "labels": {"family": "malformed"}},
        {"instruction": "Say cat two times.", "input": "", "output": 42, "labels": {"family": "malformed"}},
        {"instruction": "   ", "input": "", "output": "red", "labels": {"family": "malformed"}},
        {"instruction": "Classify this word: " + "x" * 5000, "input": "", "output": "tool",
         "labels": {"family": "malformed"}},
    ]
    for k in range(cfg.malformed):
        tasks.append(dict(broken[k % len(broken)], labels={"family": "malformed", "variant": k}))
    # One truncated JSONL line, as a crashed writer leaves it.
    truncated = '{"messages": [{"role": "user", "content": "How do I cut a mango?"}, {"role": "assistant"'
    bad_lines = [truncated] if cfg.malformed else []
    for row in rng.sample(chats, min(cfg.duplicates, len(chats))):
        chats.append(json.loads(json.dumps(row)))
    return bad_lines


def pretrain_text(cfg: GeneratorConfig, rng: random.Random) -> str:
    """Plain sentences about the same world: the base model learns words, not tasks."""
    facts = [f"The opposite of {a} is {b}." for a, b in world.ANTONYMS]
    facts += [f"The opposite of {b} is {a}." for a, b in world.ANTONYMS]
    facts += [f"A {w} is a {cat}." for cat, ws in world.CATEGORIES.items() for w in ws]
    facts += [f"Words like {w} describe a {'good' if w in world.POSITIVE else 'bad'} experience."
              for w in world.POSITIVE + world.NEGATIVE]
    facts += [f"To {a}, there is a simple answer. {r}" for a, r in world.LOOKALIKES]
    for _ in range(len(facts)):
        words = rng.sample(world.WORDS, rng.randint(3, 5))
        facts.append(f"Here is a list: {' '.join(words)}. It ends with {words[-1]}.")
        w = rng.choice(world.WORDS)
        facts.append(f"Two times {w} is {w} {w}. Three times {w} is {w} {w} {w}.")
    lines = []
    for _ in range(cfg.pretrain_repeats):
        rng.shuffle(facts)
        lines.extend(facts)
    return "\n".join(lines) + "\n"


def generate(cfg: GeneratorConfig, seed: int, out_dir: Path) -> dict[str, Path]:
    """Write the four source files; return their paths by role."""
    rng = random.Random(seed)
    tasks = task_examples(cfg, rng)
    chats, pairs = safety_conversations(cfg, rng)
    pairs += task_pairs(tasks, rng, n=len(pairs))
    bad_lines = corrupt(tasks, chats, cfg, rng)
    rng.shuffle(tasks)
    rng.shuffle(chats)

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "tasks": out_dir / "tasks.alpaca.json",
        "chats": out_dir / "safety.messages.jsonl",
        "pairs": out_dir / "pairs.preference.jsonl",
        "pretrain": out_dir / "pretrain.txt",
    }
    paths["tasks"].write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    chat_lines = [json.dumps(c, ensure_ascii=False, sort_keys=True) for c in chats]
    for k, line in enumerate(bad_lines):  # an unparseable line somewhere in the middle
        chat_lines.insert((k + 1) * len(chat_lines) // (len(bad_lines) + 1), line)
    paths["chats"].write_text("\n".join(chat_lines) + "\n", encoding="utf-8")
    paths["pairs"].write_text("".join(json.dumps(p, ensure_ascii=False, sort_keys=True) + "\n" for p in pairs),
                              encoding="utf-8")
    paths["pretrain"].write_text(pretrain_text(cfg, rng), encoding="utf-8")
    return paths
