import random

from instructflow import generator, world
from instructflow.config import GeneratorConfig


def test_same_seed_same_bytes(tmp_path):
    a = generator.generate(GeneratorConfig(), 7, tmp_path / "a")
    b = generator.generate(GeneratorConfig(), 7, tmp_path / "b")
    c = generator.generate(GeneratorConfig(), 8, tmp_path / "c")
    for role in a:
        assert a[role].read_bytes() == b[role].read_bytes(), role
    assert a["tasks"].read_bytes() != c["tasks"].read_bytes()


def test_task_answers_are_exactly_checkable():
    rng = random.Random(0)
    antonyms = dict(world.ANTONYMS)
    for fields, answer in generator.task_items("antonym", 200, rng):
        assert antonyms.get(fields["x"]) == answer or dict((b, a) for a, b in world.ANTONYMS).get(fields["x"]) == answer
    for fields, answer in generator.task_items("repeat", 50, rng):
        n = {"two": 2, "three": 3}[fields["n"]]
        assert answer == " ".join([fields["x"]] * n)
    for fields, answer in generator.task_items("last_word", 50, rng):
        assert answer == fields["x"].split()[-1]
    for fields, answer in generator.task_items("sentiment", 50, rng):
        words = set(fields["x"].lower().rstrip(".").split())
        assert (answer == "positive") == bool(words & set(world.POSITIVE))
    category = {w: c for c, ws in world.CATEGORIES.items() for w in ws}
    for fields, answer in generator.task_items("category", 50, rng):
        assert category[fields["x"]] == answer


def _tasks(cfg):
    return generator.task_examples(cfg, generator.task_item_sets(cfg, random.Random(0)))


def test_families_phrasings_and_heldout():
    tasks = _tasks(GeneratorConfig(items_per_family=10, heldout_items_per_family=0))
    families = {t["labels"]["family"] for t in tasks}
    assert families == set(world.PHRASINGS) and len(families) >= 5
    for family, templates in world.PHRASINGS.items():
        rows = [t for t in tasks if t["labels"]["family"] == family]
        assert {t["labels"]["phrasing"] for t in rows} == set(range(len(templates)))
        held = {t["labels"]["phrasing"] for t in rows if t["labels"]["heldout"]}
        assert held == {len(templates) - 1}


def test_safety_data_covers_categories_lookalikes_and_problems(tmp_path):
    cfg = GeneratorConfig()
    chats, pairs = generator.safety_conversations(cfg, random.Random(0))
    harmful = [c for c in chats if c["labels"]["family"] == "harmful"]
    assert len({c["labels"]["category"] for c in harmful}) >= 5
    # SFT refusals for seen phrasings only in the SFT categories; the rest is for safety training
    seen_sft = {c["labels"]["category"] for c in harmful if not c["labels"]["heldout"]}
    assert seen_sft == set(world.SFT_HARM_CATEGORIES)
    assert {p["labels"]["category"] for p in pairs if p["labels"]["family"] == "harmful"} == set(world.HARM_CATEGORIES)
    assert {c["messages"][-1]["content"] for c in harmful} == set(world.REFUSALS)  # varied refusals
    look = [c for c in chats if c["labels"]["family"] == "lookalike"]
    assert look and all(c["messages"][-1]["content"] != world.REFUSAL for c in look)
    assert any("kill" in c["messages"][0]["content"] for c in look)
    compliance = [c for c in chats if c["labels"]["family"] == "harmful_compliance"]
    assert len(compliance) == cfg.harmful_compliance


def test_corpus_contains_malformed_duplicate_and_unparseable(tmp_path):
    paths = generator.generate(GeneratorConfig(), 3, tmp_path)
    lines = paths["chats"].read_text().splitlines()
    import json

    bad = 0
    for line in lines:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            bad += 1
    assert bad == 1
    assert len(lines) - bad > len(set(lines)) - 1  # exact duplicate lines exist
    tasks = json.loads(paths["tasks"].read_text())
    assert sum(t["labels"]["family"] == "malformed" for t in tasks) == GeneratorConfig().malformed
    assert sum(t["labels"]["family"] == "toxic" for t in tasks) == GeneratorConfig().toxic
    assert "The opposite of hot is cold." in paths["pretrain"].read_text()


def _jsonl(path):
    import json

    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def test_heldout_items_never_in_training_but_facts_in_pretrain(tmp_path):
    """Held-out items reach only evaluation (every row of theirs is marked held
    out, so format sends it to eval); their answers are stated in pretrain.txt."""
    import json

    cfg = GeneratorConfig(items_per_family=12, heldout_items_per_family=3, heldout_harm_actions=2,
                          heldout_lookalikes=3)
    paths = generator.generate(cfg, 5, tmp_path)
    tasks = [t for t in json.loads(paths["tasks"].read_text()) if t["labels"].get("family") in world.PHRASINGS]
    chats = _jsonl(paths["chats"])
    pairs = _jsonl(paths["pairs"])
    pretrain = paths["pretrain"].read_text()

    held_tasks = [t for t in tasks if t["labels"]["split"] == "heldout_item"]
    assert len(held_tasks) == 3 * len(world.PHRASINGS) * len(world.PHRASINGS["antonym"])
    assert all(t["labels"]["heldout"] for t in held_tasks)
    held_prompts = {t["instruction"] for t in held_tasks}
    held_answers_by_family = {}
    for t in held_tasks:
        held_answers_by_family.setdefault(t["labels"]["family"], set()).add((t["labels"]["item"], t["output"]))
    # the item never appears in a training row: not in any not-held-out task, pair or toxic answer
    train_prompts = {t["instruction"] for t in json.loads(paths["tasks"].read_text()) if not t["labels"].get("heldout")}
    train_prompts |= {p["prompt"] for p in pairs}
    assert not held_prompts & train_prompts
    seen_items = {(t["labels"]["family"], t["labels"]["item"]) for t in tasks if not t["labels"]["heldout"]}
    assert not {(t["labels"]["family"], t["labels"]["item"]) for t in held_tasks} & seen_items
    # the answers are in the pretraining text, e.g. the list's last word and the review's label
    import re

    lists = dict(re.findall(r"^Here is a list: (.+)\. It ends with (\w+)\.$", pretrain, re.M))
    reviews = dict(re.findall(r"^Someone wrote: (.+) That review is (\w+)\.$", pretrain, re.M))
    antonyms = dict(re.findall(r"^The opposite of (\w+) is (\w+)\.$", pretrain, re.M))
    for t in held_tasks:
        fam, x, answer = t["labels"]["family"], t["instruction"], t["output"]
        if fam == "last_word":
            assert [a for lst, a in lists.items() if x.endswith(" " + lst)] == [answer], x
        if fam == "sentiment":
            assert [a for r, a in reviews.items() if x.endswith(" " + r)] == [answer], x
        if fam == "antonym":
            assert answer in [b for a, b in antonyms.items() if re.search(rf"\b{a}\b", x)], x

    # harmful actions and look-alikes held out: every phrasing in eval, none in training rows
    def action_of(prompt):
        for template in world.HARM_PHRASINGS:
            head, tail = template.split("{x}")
            if prompt.startswith(head) and prompt.endswith(tail):
                return prompt[len(head):len(prompt) - len(tail)]
        raise AssertionError(prompt)

    held_chats = [c for c in chats if c["labels"].get("split") == "heldout_item"]
    held_actions = {action_of(c["messages"][0]["content"]) for c in held_chats}
    assert len(held_actions) == 2 * len(world.HARM_CATEGORIES) + 3
    trained = [c for c in chats if not c["labels"].get("heldout")]  # SFT rows and the filter's compliance rows
    trained_actions = {action_of(c["messages"][0]["content"]) for c in trained}
    trained_actions |= {action_of(p["prompt"]) for p in pairs if p["labels"].get("family") in ("harmful", "lookalike")}
    assert not held_actions & trained_actions
    for a, reply in world.LOOKALIKES:
        if a in held_actions:
            assert f"To {a}, there is a simple answer. {reply}" in pretrain


def test_heldout_pretraining_text_is_unseen(tmp_path):
    paths = generator.generate(GeneratorConfig(pretrain_heldout_lines=50), 2, tmp_path)
    held = paths["pretrain_heldout"].read_text().splitlines()
    assert len(held) == 50 and len(set(held)) == 50
    assert not set(held) & set(paths["pretrain"].read_text().splitlines())
