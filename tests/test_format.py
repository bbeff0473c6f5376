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
