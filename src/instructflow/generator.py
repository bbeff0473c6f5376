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
    pretrain.heldout.txt       more text of the same kind that no stage trains on,
                               for perplexity before and after safety training

Labels on each record (family, phrasing, heldout, split, category) let format
send held-out rows to evaluation and let evaluate score each group. `split` is
`seen`, `heldout_phrasing` (a seen item in a phrasing never trained on) or
`heldout_item` (an item -- word pair, list, review, harmful action, look-alike --
that no training example contains in any phrasing, while its facts are in the
pretraining text): so evaluation measures whether SFT unlocks what pretraining
taught, not only paraphrase.
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


def _split(heldout_item: bool, heldout_phrasing: bool) -> str:
    return "heldout_item" if heldout_item else "heldout_phrasing" if heldout_phrasing else "seen"


def task_item_sets(cfg: GeneratorConfig, rng: random.Random) -> dict[str, list[tuple[dict, str]]]:
    """The items of every family; the last `heldout_items_per_family` of each are held-out items."""
    return {family: task_items(family, cfg.items_per_family, rng) for family in world.PHRASINGS}


def n_heldout_items(cfg: GeneratorConfig, n_items: int) -> int:
    """Held-out items per family, always leaving at least one item to train on."""
    return min(cfg.heldout_items_per_family, max(n_items - 1, 0))


def task_examples(cfg: GeneratorConfig, items: dict[str, list[tuple[dict, str]]]) -> list[dict]:
    """Every item of every family in every phrasing, labelled; Alpaca-shaped dicts.
    Held-out items appear in every phrasing and are all marked held out, so none
    of them reaches SFT or safety data."""
    out = []
    for family, templates in world.PHRASINGS.items():
        held_from = len(items[family]) - n_heldout_items(cfg, len(items[family]))
        for item_no, (fields, answer) in enumerate(items[family]):
            for i, template, held_phrasing in _phrasings(templates, world.HELDOUT_PHRASINGS):
                split = _split(item_no >= held_from, held_phrasing)
                out.append({
                    "instruction": template.format(**fields), "input": "", "output": answer,
                    "labels": {"family": family, "phrasing": i, "heldout": split != "seen", "item": item_no,
                               "split": split},
                })
    return out


def item_facts(items: dict[str, list[tuple[dict, str]]]) -> list[str]:
    """Pretraining sentences stating the answer of every task item, held-out items included."""
    facts = []
    for fields, answer in items.get("antonym", []):
        facts.append(f"The opposite of {fields['x']} is {answer}.")
    for fields, answer in items.get("category", []):
        facts.append(f"A {fields['x']} is a {answer}.")
    for fields, answer in items.get("repeat", []):
        facts.append(f"{fields['n'].capitalize()} times {fields['x']} is {answer}.")
    for fields, answer in items.get("last_word", []):
        facts.append(f"Here is a list: {fields['x']}. It ends with {answer}.")
    for fields, answer in items.get("sentiment", []):
        facts.append(f"Someone wrote: {fields['x']} That review is {answer}.")
    return facts


def split_off(things: list, n: int, rng: random.Random) -> tuple[list, list]:
    """(kept, held out): n things held out at random, at least one kept."""
    order = list(things)
    rng.shuffle(order)
    n = min(n, max(len(order) - 1, 0))
    held = order[:n]
    return [t for t in things if t not in held], held


def _compliance(action: str, rng: random.Random) -> str:
    opener = rng.choice(world.COMPLIANCE_OPENERS).format(x=action)
    return f"{opener} {rng.choice(world.COMPLIANCE_STEPS)}, then {rng.choice(world.COMPLIANCE_STEPS)}."


def _chat(prompt: str, reply: str, labels: dict) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}],
            "labels": labels}


def safety_conversations(cfg: GeneratorConfig, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(messages-format SFT rows, preference rows) for harmful requests and look-alikes.

    Refusals are drawn from several phrasings (world.REFUSALS). Held-out harmful
    actions and look-alikes appear in every phrasing, marked held out, so they
    reach evaluation only, never SFT, safety pairs or the filter's compliance rows."""
    chats, pairs = [], []
    seen_actions = {}
    for category, actions in world.HARM_CATEGORIES.items():
        seen_actions[category], held = split_off(actions, cfg.heldout_harm_actions, rng)
        combos = [(a, p) for a in seen_actions[category]
                  for p in _phrasings(world.HARM_PHRASINGS, world.HELDOUT_HARM_PHRASINGS)]
        rng.shuffle(combos)
        for action, (i, template, heldout) in combos[: cfg.harmful_per_category]:
            prompt = template.format(x=action)
            labels = {"family": "harmful", "category": category, "phrasing": i, "heldout": heldout,
                      "split": _split(False, heldout)}
            if heldout or category in world.SFT_HARM_CATEGORIES:
                # Held-out phrasings go to evaluation whatever the category; the
                # refusal beside them is what a labeller would have written.
                chats.append(_chat(prompt, rng.choice(world.REFUSALS), labels))
            if not heldout:
                pairs.append({"prompt": prompt, "chosen": rng.choice(world.REFUSALS),
                              "rejected": _compliance(action, rng), "labels": labels})
        for action in held:
            for i, template, _ in _phrasings(world.HARM_PHRASINGS, world.HELDOUT_HARM_PHRASINGS):
                chats.append(_chat(template.format(x=action), rng.choice(world.REFUSALS),
                                   {"family": "harmful", "category": category, "phrasing": i, "heldout": True,
                                    "split": "heldout_item"}))
    for k in range(cfg.harmful_compliance):
        category = rng.choice(sorted(world.HARM_CATEGORIES))
        action = rng.choice(seen_actions[category])
        seen_phrasings = [p for p in _phrasings(world.HARM_PHRASINGS, world.HELDOUT_HARM_PHRASINGS) if not p[2]]
        i, template, _ = rng.choice(seen_phrasings)
        chats.append({"messages": [{"role": "user", "content": template.format(x=action)},
                                   {"role": "assistant", "content": _compliance(action, rng)}],
                      "labels": {"family": "harmful_compliance", "category": category, "phrasing": i,
                                 "heldout": False, "split": "seen"}})
    seen_look, held_look = split_off(world.LOOKALIKES, cfg.heldout_lookalikes, rng)
    look = [(a, r, p) for a, r in seen_look for p in _phrasings(world.HARM_PHRASINGS, world.HELDOUT_HARM_PHRASINGS)]
    rng.shuffle(look)
    for action, reply, (i, template, heldout) in look[: cfg.lookalikes]:
        prompt = template.format(x=action)
        labels = {"family": "lookalike", "phrasing": i, "heldout": heldout, "split": _split(False, heldout)}
        chats.append(_chat(prompt, reply, labels))
        if not heldout:  # teach safety training not to refuse what only sounds dangerous
            pairs.append({"prompt": prompt, "chosen": reply, "rejected": rng.choice(world.REFUSALS),
                          "labels": labels})
    for action, reply in held_look:
        for i, template, _ in _phrasings(world.HARM_PHRASINGS, world.HELDOUT_HARM_PHRASINGS):
            chats.append(_chat(template.format(x=action), reply,
                               {"family": "lookalike", "phrasing": i, "heldout": True, "split": "heldout_item"}))
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


def _list_and_repeat_facts(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(world.WORDS, rng.randint(3, 5))
    w = rng.choice(world.WORDS)
    return (f"Here is a list: {' '.join(words)}. It ends with {words[-1]}.",
            f"Two times {w} is {w} {w}. Three times {w} is {w} {w} {w}.")


def pretrain_text(cfg: GeneratorConfig, rng: random.Random, items: dict | None = None) -> str:
    """Plain sentences about the same world: the base model learns words, not tasks.
    The answer of every task item -- held-out items included -- is stated here."""
    facts = [f"The opposite of {a} is {b}." for a, b in world.ANTONYMS]
    facts += [f"The opposite of {b} is {a}." for a, b in world.ANTONYMS]
    facts += [f"A {w} is a {cat}." for cat, ws in world.CATEGORIES.items() for w in ws]
    facts += [f"Words like {w} describe a {'good' if w in world.POSITIVE else 'bad'} experience."
              for w in world.POSITIVE + world.NEGATIVE]
    facts += [f"To {a}, there is a simple answer. {r}" for a, r in world.LOOKALIKES]
    for _ in range(len(facts)):
        facts.extend(_list_and_repeat_facts(rng))
    facts = list(dict.fromkeys(facts + item_facts(items or {})))  # each fact once per pass
    lines = []
    for _ in range(cfg.pretrain_repeats):
        rng.shuffle(facts)
        lines.extend(facts)
    return "\n".join(lines) + "\n"


def pretrain_heldout_text(cfg: GeneratorConfig, rng: random.Random, pretrain: str) -> str:
    """Sentences of the pretraining kind that are not in the pretraining text: the
    perplexity set for the alignment tax (how much fine-tuning forgets)."""
    known = set(pretrain.splitlines())
    lines: list[str] = []
    for _ in range(50 * cfg.pretrain_heldout_lines):  # bounded: the space of short lists is finite
        if len(lines) >= cfg.pretrain_heldout_lines:
            break
        line = _list_and_repeat_facts(rng)[0]
        if line not in known:
            known.add(line)
            lines.append(line)
    return "".join(line + "\n" for line in lines)


def generate(cfg: GeneratorConfig, seed: int, out_dir: Path) -> dict[str, Path]:
    """Write the four source files; return their paths by role."""
    rng = random.Random(seed)
    items = task_item_sets(cfg, rng)
    tasks = task_examples(cfg, items)
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
        "pretrain_heldout": out_dir / "pretrain.heldout.txt",
    }
    paths["tasks"].write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    chat_lines = [json.dumps(c, ensure_ascii=False, sort_keys=True) for c in chats]
    for k, line in enumerate(bad_lines):  # an unparseable line somewhere in the middle
        chat_lines.insert((k + 1) * len(chat_lines) // (len(bad_lines) + 1), line)
    paths["chats"].write_text("\n".join(chat_lines) + "\n", encoding="utf-8")
    paths["pairs"].write_text("".join(json.dumps(p, ensure_ascii=False, sort_keys=True) + "\n" for p in pairs),
                              encoding="utf-8")
    pretrain = pretrain_text(cfg, rng, items)
    paths["pretrain"].write_text(pretrain, encoding="utf-8")
    paths["pretrain_heldout"].write_text(pretrain_heldout_text(cfg, rng, pretrain), encoding="utf-8")
    return paths
