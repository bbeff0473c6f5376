from instructflow import format as fmt
from instructflow.records import make_record


def _rec(prompt, reply, **labels):
    return make_record("t", f"t:{prompt}", "MIT", "messages", labels=labels,
                       messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}])


def test_heldout_phrasing_always_goes_to_eval():
    rec = _rec("Which word means the opposite of hot?", "cold", family="antonym", heldout=True)
    assert fmt.split_of(rec, 0.0) == "eval"


def test_split_depends_on_content_only():
    recs = [_rec(f"Say word{i} two times.", f"word{i} word{i}") for i in range(400)]
    splits = [fmt.split_of(r, 0.2) for r in recs]
    assert 40 < splits.count("eval") < 120
    # adding data does not move existing records; case and spacing do not matter
    assert [fmt.split_of(r, 0.2) for r in recs[:100]] == splits[:100]
    twin = _rec("  say WORD7 two   times.", "word7 word7")
    assert fmt.split_of(twin, 0.2) == splits[7]


def test_train_only_families_and_preferences_never_evaluated():
    assert fmt.split_of(_rec("Opposite of hot?", "cold, idiot", family="toxic", heldout=True), 1.0) == "train"
    pref = make_record("t", "t:1", "MIT", "preference", messages=[{"role": "user", "content": "q"}],
                       chosen="a", rejected="b")
    assert fmt.split_of(pref, 1.0) == "train"


def test_examples_have_chat_shape_and_system_prompt():
    rec = _rec("Opposite of hot?", "cold", family="antonym", heldout=False)
    ex = fmt.chat_example(rec, "Be brief.")
    assert [m["role"] for m in ex["messages"]] == ["system", "user", "assistant"]
    ev = fmt.eval_prompt(rec, "")
    assert ev["prompt"] == [{"role": "user", "content": "Opposite of hot?"}]
    assert ev["reference"] == "cold" and ev["group"] == "task" and ev["family"] == "antonym"
    pref = make_record("t", "t:1", "MIT", "preference", messages=[{"role": "user", "content": "q"}],
                       chosen="a", rejected="b")
    pair = fmt.preference_pair(pref, "")
    assert pair["chosen"] == [{"role": "assistant", "content": "a"}]
    assert pair["rejected"] == [{"role": "assistant", "content": "b"}]


def _prompt(text, harmful=True, **labels):
    return make_record("q", f"q:{text}", "MIT", "prompts", kind="prompt", messages=[{"role": "user", "content": text}],
                       labels={"harmful": harmful, **labels})


def _labelled(text, label, text2=None, **labels):
    msgs = [{"role": "user", "content": text}] + ([{"role": "assistant", "content": text2}] if text2 else [])
    return make_record("l", f"l:{text}", "MIT", "labelled", kind="labelled", messages=msgs,
                       labels={"harmful": label, "task": "toxicity", **labels})


def test_prompt_records_split_by_hash_or_forced():
    recs = [_prompt(f"How do I do bad thing {i}?") for i in range(300)]
    splits = [fmt.split_of(r, 0.2) for r in recs]
    assert 30 < splits.count("eval") < 90
    assert fmt.split_of(_prompt("x", force_split="eval"), 0.0) == "eval"
    assert fmt.split_of(_prompt("x", force_split="train"), 1.0) == "train"
    ev = fmt.eval_prompt(_prompt("Kill time?", harmful=False, category="c", style="question"), "")
    assert ev["group"] == "harmless" and ev["reference"] is None and ev["prompt"][-1]["content"] == "Kill time?"
    assert ev["style"] == "question" and ev["category"] == "c"
    assert fmt.eval_prompt(_prompt("Make a bomb."), "")["group"] == "harmful"
    tp = fmt.training_prompt(_prompt("Make a bomb.", category="weapons", style="command"), "Be safe.")
    assert tp["prompt"][0] == {"role": "system", "content": "Be safe."} and tp["harmful"] is True
    assert (tp["category"], tp["style"]) == ("weapons", "command")


def test_labelled_rows_split_by_hash_or_forced():
    rows = [fmt.labelled_row(_labelled(f"comment number {i}", i % 2), 0.25) for i in range(400)]
    tests = sum(r["split"] == "test" for r in rows)
    assert 60 < tests < 140
    assert [r["label"] for r in rows[:4]] == [0, 1, 0, 1] and rows[0]["text2"] is None
    pair = fmt.labelled_row(_labelled("Q", 1, "A", force_split="train", spans=[{"entity_type": "EMAIL"}]), 1.0)
    assert (pair["text"], pair["text2"], pair["split"], pair["task"]) == ("Q", "A", "train", "toxicity")
    assert pair["spans"] == [{"entity_type": "EMAIL"}]
    assert fmt.labelled_row(_labelled("Q", 0, force_split="test"), 0.0)["split"] == "test"


def test_cli_routes_every_record_to_exactly_one_file(tmp_path):
    from pathlib import Path

    from instructflow.records import read_jsonl, write_jsonl

    root = Path(__file__).resolve().parents[1]
    pref = make_record("t", "t:p", "MIT", "preference", messages=[{"role": "user", "content": "q"}],
                       chosen="a", rejected="b")
    recs = ([_rec(f"Say w{i} twice.", f"w{i} w{i}") for i in range(50)] + [pref]
            + [_prompt(f"Bad {i}?") for i in range(50)] + [_prompt("Benign?", harmful=False, force_split="eval")]
            + [_labelled(f"text {i}", i % 2) for i in range(50)])
    write_jsonl(tmp_path / "valid.jsonl", recs)
    fmt.main(["--params", str(root / "params.yaml"), "--valid", str(tmp_path / "valid.jsonl"),
              "--out", str(tmp_path / "f"), "--report", str(tmp_path / "r")])
    out = {n: list(read_jsonl(tmp_path / "f" / f"{n}.jsonl")) for n in ("sft", "pairs", "prompts", "labelled", "eval")}
    ids = [r["id"] for rows in out.values() for r in rows]
    assert sorted(ids) == sorted(r["id"] for r in recs)  # each once
    assert len(out["labelled"]) == 50 and len(out["pairs"]) == 1
    assert {e["group"] for e in out["eval"] if e["source"] == "q"} >= {"harmless"}
    import json
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert sum(summary["by_source"]["q"].values()) == 51 and summary["by_source"]["l"]["labelled"] == 50
    assert summary["labelled_by_split"]["train"] + summary["labelled_by_split"].get("test", 0) == 50
