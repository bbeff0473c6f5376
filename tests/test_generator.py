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


def test_families_phrasings_and_heldout():
    tasks = generator.task_examples(GeneratorConfig(items_per_family=10), random.Random(0))
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
    assert all(c["messages"][-1]["content"] == world.REFUSAL for c in harmful)
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
