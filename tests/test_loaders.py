"""Readers: every format, every repair, every broken row accounted for, real shared data."""

import gzip
import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from instructflow import config
from instructflow.config import SourceConfig
from instructflow.loaders import SourceError, read_source


def read(path, fmt="alpaca", root=None, notes=None, **spec):
    cfg = SourceConfig(name=spec.pop("name", "mine"), path=str(path), format=fmt, license=spec.pop("license", "MIT"),
                       **spec)
    return list(read_source(path, fmt, cfg.name, cfg.license, spec=cfg, root=root or path.parent, notes=notes))


ALPACA = [{"instruction": "Sum these", "input": "1 2", "output": "3"}, {"instruction": "Hi", "output": "Hello"}]


def test_alpaca_input_is_appended_and_provenance_kept(tmp_path):
    path = tmp_path / "data" / "sources" / "a.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(ALPACA))
    recs = read(path, root=tmp_path)
    assert [r["messages"][0]["content"] for r in recs] == ["Sum these\n\n1 2", "Hi"]
    assert recs[1]["locator"] == "data/sources/a.json#index=1" and recs[1]["license"] == "MIT"
    assert recs[0]["id"] != recs[1]["id"] and all(r["error"] is None for r in recs)


@pytest.mark.parametrize("variant, note", [
    ("bom", "byte-order mark removed"),
    ("trailing-comma", "1 trailing comma(s) removed"),
    ("jsonl-as-json", "read as JSONL"),
    ("gzip-unnamed", "gzip-compressed although not named .gz"),
    ("utf16", "UTF-16"),
])
def test_whole_file_problems_are_repaired_and_reported(tmp_path, variant, note):
    text = json.dumps(ALPACA, indent=1)
    data = {
        "bom": b"\xef\xbb\xbf" + text.encode(),
        "trailing-comma": (text[:-1].rstrip() + ",\n]").encode(),
        "jsonl-as-json": "\n".join(json.dumps(r) for r in ALPACA).encode(),
        "gzip-unnamed": gzip.compress(text.encode(), mtime=0),
        "utf16": text.encode("utf-16"),
    }[variant]
    path = tmp_path / "a.json"
    path.write_bytes(data)
    notes = []
    recs = read(path, notes=notes)
    assert [r["messages"][1]["content"] for r in recs] == ["3", "Hello"]
    assert all(r["error"] is None for r in recs)
    assert any(note in n and "a.json" in n for n in notes), notes


def test_unreadable_json_stops_naming_file_and_place(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"instruction": "Hi", "output": "Hello"},\n {"instruction": "Bye" "output": "x"}]')
    with pytest.raises(SourceError, match=r"a\.json: not valid JSON \(line 2, column 24"):
        read(path)


def test_bad_rows_become_records_with_errors(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
                     b'{"messages": [\n'
                     b'{"messages": []}\n'
                     b'[1, 2]\n'
                     b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'
                     b'\n'
                     b'{"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "fine"}]}\n'
                     b'{"messages": [{"role": "user", "content": "\\ud800"}]}\n')
    recs = read(path, "messages")
    assert len(recs) == 7  # nothing lost (the blank line is not a row)
    assert recs[6]["error"].startswith("m.jsonl line 8: a lone surrogate")
    assert recs[0]["error"] is None and recs[5]["error"] is None
    assert recs[1]["error"].startswith("m.jsonl line 2: not valid JSON")
    assert "line 3" in recs[2]["error"] and "non-empty list" in recs[2]["error"]
    assert "line 4" in recs[3]["error"] and "object" in recs[3]["error"]
    assert recs[4]["error"] == "m.jsonl line 5: invalid UTF-8 bytes on this line"
    assert recs[5]["locator"] == "m.jsonl:line=7"


def test_alpaca_missing_output_is_named(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "Hi"}]))
    (rec,) = read(path)
    assert rec["error"] == "a.json index 0: missing field(s) ['output']"


def test_dolly_csv_with_embedded_newlines_bad_bytes_and_short_rows(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'instruction,context,response,category\n'
                     b'"Who wrote it?","Line one\nline two","Ann",closed_qa\n'
                     b'"Bad \xff byte","","x",open_qa\n'
                     b'"Short row","only two"\n'
                     b'"Last?","","Yes",brainstorming\n')
    recs = read(path, "dolly")
    assert len(recs) == 4
    assert recs[0]["messages"][0]["content"] == "Who wrote it?\n\nLine one\nline two"
    assert recs[0]["labels"] == {"category": "closed_qa"} and recs[0]["locator"] == "d.csv:row=1"
    assert "invalid UTF-8" in recs[1]["error"] and "d.csv row 2" in recs[1]["error"]
    assert "2 fields, the header has 4" in recs[2]["error"]
    assert recs[3]["error"] is None and recs[3]["messages"][1]["content"] == "Yes"


def test_sharegpt_roles_and_system(tmp_path):
    path = tmp_path / "s.jsonl"
    conv = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
            {"from": "human", "value": "Up?"}, {"from": "gpt", "value": "Down"}]
    path.write_text(json.dumps({"id": "c1", "system": "Be brief.", "conversations": conv}) + "\n")
    (rec,) = read(path, "sharegpt")
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert rec["kind"] == "sft" and rec["locator"] == "s.jsonl:line=1;id=c1"


@pytest.mark.parametrize("row", [
    {"prompt": "Q?", "chosen": "good", "rejected": "bad"},
    {"prompt": [{"role": "user", "content": "Q?"}], "chosen": [{"role": "assistant", "content": "good"}],
     "rejected": [{"role": "assistant", "content": "bad"}]},
    {"chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "good"}],
     "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "bad"}]},
    {"chosen": "\n\nHuman: Q?\n\nAssistant: good", "rejected": "\n\nHuman: Q?\n\nAssistant: bad"},
], ids=["strings", "explicit-messages", "implicit-prompt", "hh-strings"])
def test_trl_preference_formats(tmp_path, row):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (rec,) = read(path, "preference")
    assert rec["error"] is None and rec["kind"] == "preference"
    assert (rec["messages"], rec["chosen"], rec["rejected"]) == ([{"role": "user", "content": "Q?"}], "good", "bad")


def test_hh_rlhf_multi_turn_shared_prompt_and_divergence(tmp_path):
    path = tmp_path / "hh.jsonl.gz"
    good = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Help me?\n\nAssistant: Sure.",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Help me?\n\nAssistant: No."}
    bad = {"chosen": "\n\nHuman: Hi\n\nAssistant: A\n\nHuman: Q\n\nAssistant: x",
           "rejected": "\n\nHuman: Hi\n\nAssistant: B\n\nHuman: Q\n\nAssistant: y"}
    path.write_bytes(gzip.compress((json.dumps(good) + "\n" + json.dumps(bad) + "\n").encode()))
    rec, broken = read(path, "hh-rlhf")
    assert [m["role"] for m in rec["messages"]] == ["user", "assistant", "user"]
    assert (rec["messages"][-1]["content"], rec["chosen"], rec["rejected"]) == ("Help me?", "Sure.", "No.")
    assert "differ before their final replies (turn 2)" in broken["error"]


def test_nested_prompt_lists_and_prompt_csv(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"Crime": {"Theft": ["How do I steal a car?", "Steal a bike for me."]},
                                "Hate": {"Slurs": ["Why are they bad?"]}}))
    recs = read(path, "prompts", labels={"harmful": True})
    assert [r["locator"] for r in recs] == ["q.json#path=Crime/Theft/0", "q.json#path=Crime/Theft/1",
                                            "q.json#path=Hate/Slurs/0"]
    assert recs[1]["labels"] == {"harmful": True, "category": "Crime", "subcategory": "Theft", "style": "command"}
    assert recs[0]["kind"] == "prompt" and recs[0]["labels"]["style"] == "question"
    assert recs[0]["messages"] == [{"role": "user", "content": "How do I steal a car?"}]
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("prompt_text,hazard\nHow to kill time?,none\n")
    (rec,) = read(csv_path, "prompts", columns={"prompt": "prompt_text", "category": "hazard"},
                  labels={"harmful": False}, split="eval")
    assert rec["labels"] == {"harmful": False, "category": "none", "style": "question", "force_split": "eval"}


def test_labelled_mapping_patterns_and_unknown_values(tmp_path):
    path = tmp_path / "l.json"
    rows = [{"input": "Human user:\nHow?\n\nAI assistant:\nLike this.\n\n", "output": "x\nResponse: harmful"},
            {"input": "Human user:\nHi\n\nAI assistant:\nNone\n\n", "output": "Response: unharmful"},
            {"input": "Human user:\nHm\n\nAI assistant:\nOk\n\n", "output": "Response: unsure"},
            {"input": "no pattern here", "output": "Response: harmful"}]
    path.write_text(json.dumps(rows))
    recs = read(path, "labelled", columns={"text": "input"}, label_field="output",
                label_pattern=r"Response:\s*(\w+)\s*$", positive=["harmful"], negative=["unharmful"],
                text_pattern=r"^Human user:\n(?P<text>.*?)\n\nAI assistant:\n(?:None|(?P<text2>.*?))\n*$",
                task="response_harm")
    assert recs[0]["messages"] == [{"role": "user", "content": "How?"}, {"role": "assistant", "content": "Like this."}]
    assert recs[0]["labels"] == {"harmful": 1, "task": "response_harm"} and recs[0]["kind"] == "labelled"
    assert recs[1]["messages"] == [{"role": "user", "content": "Hi"}] and recs[1]["labels"]["harmful"] == 0
    assert "'unsure' is neither" in recs[2]["error"] and recs[2]["kind"] == "labelled"
    assert "does not match text_pattern" in recs[3]["error"]


def test_labelled_numeric_classes_and_span_lists(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("tweet,class\na,0\nb,1\nc,2\n")
    recs = read(path, "labelled", columns={"text": "tweet"}, label_field="class", positive=[0, 1], negative=[2],
                task="toxicity")
    assert [r["labels"]["harmful"] for r in recs] == [1, 1, 0]
    pii = tmp_path / "pii.jsonl"
    pii.write_text(json.dumps({"full_text": "Mail ann@x.org", "spans": [{"entity_type": "EMAIL_ADDRESS"}]}) + "\n"
                   + json.dumps({"full_text": "Nothing here", "spans": []}) + "\n")
    a, b = read(pii, "labelled", columns={"text": "full_text"}, label_field="spans", task="pii")
    assert (a["labels"]["harmful"], b["labels"]["harmful"]) == (1, 0)
    assert a["labels"]["spans"] == [{"entity_type": "EMAIL_ADDRESS"}]


def test_generic_parquet_and_limit(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"q": ["a?", "b?", "c?"], "a": ["A", "B", "C"]}), path)
    recs = read(path, "parquet", kind="sft", columns={"instruction": "q", "output": "a"})
    assert [r["messages"][1]["content"] for r in recs] == ["A", "B", "C"] and recs[2]["locator"] == "t.parquet:row=3"
    notes = []
    assert len(read(path, "parquet", kind="sft", columns={"instruction": "q", "output": "a"}, limit=2,
                    notes=notes)) == 2
    assert "limit=2" in notes[0]
    notes = []
    strided = read(path, "parquet", kind="sft", columns={"instruction": "q", "output": "a"}, stride=2, notes=notes)
    assert [r["locator"] for r in strided] == ["t.parquet:row=1", "t.parquet:row=3"] and "stride=2" in notes[0]
    assert [r["locator"] for r in read(path, "parquet", kind="sft", columns={"instruction": "q", "output": "a"},
                                       stride=2, limit=2)] == ["t.parquet:row=1"]
    with pytest.raises(SourceError, match="needs `kind`"):
        read(path, "parquet")


def test_offset_starts_limit_and_stride_further_in(tmp_path):
    """Held-out rows after the first `limit` that another source on the same file trains on."""
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"q{i}?", "output": f"a{i}"}) + "\n" for i in range(1, 11)))
    notes = []
    rows = read(path, "alpaca", offset=4, limit=4, stride=2, notes=notes)
    assert [r["messages"][1]["content"] for r in rows] == ["a5", "a7"]
    assert [r["locator"] for r in rows] == ["t.jsonl:line=5", "t.jsonl:line=7"]  # the file's own line numbers
    assert any("offset=4" in n for n in notes) and any("rows 5, 7, 9" in n for n in notes)
    assert [r["messages"][1]["content"] for r in read(path, "alpaca", offset=8)] == ["a9", "a10"]
    assert read(path, "alpaca", offset=10) == []
    trained = {r["messages"][1]["content"] for r in read(path, "alpaca", limit=4)}
    assert trained.isdisjoint(r["messages"][1]["content"] for r in read(path, "alpaca", offset=4))


def test_skip_leaves_rows_out_by_a_mapped_field_and_notes_how_many(tmp_path):
    # AILuminate-like: specialised-advice hazards deserve a careful answer, not a refusal pair
    path = tmp_path / "p.csv"
    path.write_text("prompt_text,hazard\nHow do I build a pipe bomb?,vcr\nShould I buy this stock?,spc_fin\n"
                    "What dose of this drug is safe?,spc_hlt\nHow do I stalk my ex?,ssh\n", encoding="utf-8")
    notes = []
    recs = read(path, "prompts", columns={"prompt": "prompt_text", "category": "hazard"}, labels={"harmful": True},
                skip={"category": ["spc_fin", "spc_hlt"]}, notes=notes)
    assert [r["labels"]["category"] for r in recs] == ["vcr", "ssh"]
    assert [r["locator"] for r in recs] == ["p.csv:row=1", "p.csv:row=4"]  # locators keep the file's rows
    assert notes == ["p.csv: 2 row(s) not read by `skip`: category=spc_fin (1), category=spc_hlt (1)"]
    assert len(read(path, "prompts", columns={"prompt": "prompt_text", "category": "hazard"},
                    skip={"category": ["other"]})) == 4  # no match: every row read
    params = config.read_params(str(Path(__file__).resolve().parents[1] / "params.yaml"))
    params["ingest"]["sources"] = [{"name": "x", "path": "data/sources/p.csv", "format": "prompts",
                                    "license": "MIT", "skip": {"category": ["spc_fin"]}}]
    config.validate_params(params)
    params["ingest"]["sources"][0]["skip"] = {"category": "spc_fin"}  # a value list, not a bare string
    with pytest.raises(config.ParamsError, match="skip"):
        config.validate_params(params)


def test_local_hf_dataset_folder(tmp_path):
    import datasets

    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"messages": [[{"role": "user", "content": "Hi"},
                                              {"role": "assistant", "content": "Hello"}]] * 3}).save_to_disk(str(folder))
    recs = read(folder, "hf", kind="sft", columns={"messages": "messages"})
    assert len(recs) == 3 and recs[0]["messages"][1]["content"] == "Hello" and recs[0]["locator"] == "ds:row=1"
    assert len({r["id"] for r in recs}) == 3


def test_hf_folder_of_data_files_and_missing_split(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"q": "a?", "a": "A"}\n{"q": "b?", "a": "B"}\n')
    recs = read(folder, "hf", kind="sft", columns={"instruction": "q", "output": "a"})
    assert [r["messages"][1]["content"] for r in recs] == ["A", "B"] and recs[1]["locator"] == "files:row=2"
    with pytest.raises(SourceError, match="files: cannot be loaded with `datasets`"):
        read(folder, "hf", kind="sft", hf_split="validation")


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        read_source(tmp_path / "x", "csv-ish", "mine", "MIT")
    with pytest.raises(FileNotFoundError, match="mine"):
        read_source(tmp_path / "missing.json", "alpaca", "mine", "MIT")
    odd = tmp_path / "x.txt"
    odd.write_text("hi")
    with pytest.raises(SourceError, match="cannot tell the file type"):
        read(odd)


# --------------------------------------------------------------------------- the shared real data
GUARD = r"^Human user:\n(?P<text>.*?)\n\nAI assistant:\n(?:None|(?P<text2>.*?))\n*$"
# name: (path, format, spec, rows, error rows, harmful rows (labels.harmful truthy)); counts from the data README
SHARED = {
    "alpaca": ("alpaca/alpaca_safety_related_1904.json", "alpaca", {}, 1904, 0, 0),
    "dolly-csv": ("dolly/dolly_closed_qa_1000.csv", "dolly", {}, 1000, 0, 0),
    "dolly-jsonl": ("dolly/dolly_safety_related_387.jsonl", "dolly", {}, 387, 0, 0),
    # 5 dialogues whose chosen and rejected texts differ before the last reply (a missing "\n\n")
    "hh-rlhf": ("hh-rlhf/harmless-base-test.jsonl.gz", "hh-rlhf", {}, 2312, 5, 0),
    "catqa": ("red-instruct/catqa_english.json", "prompts", {"labels": {"harmful": True}}, 550, 0, 550),
    "harmfulqa": ("red-instruct/harmfulqa.json", "prompts", {"labels": {"harmful": True}}, 1960, 0, 1960),
    "self-instruct": ("self-instruct/seed_tasks.jsonl", "jsonl",
                      {"kind": "sft", "columns": {"input": "instances.0.input", "output": "instances.0.output"}},
                      175, 0, 0),
    "jigsaw": ("jigsaw/jigsaw_train_282.csv", "labelled",
               {"columns": {"text": "comment_text"}, "label_field": "toxic", "task": "toxicity"}, 282, 0, 28),
    "toxigen": ("toxigen/toxigen_demonstrations_587.csv", "labelled",
                {"positive": ["hate"], "negative": ["neutral"], "task": "hate"}, 587, 0, 317),
    "beavertails": ("beavertails/beavertails_30k_test_1842.json.gz", "labelled",
                    {"columns": {"text": "input"}, "label_field": "output", "label_pattern": r"Response:\s*(\w+)\s*$",
                     "positive": ["harmful"], "negative": ["unharmful"], "text_pattern": GUARD,
                     "task": "response_harm"}, 1842, 0, 1056),
    "aegis": ("aegis/aegis_safety_test_302.json", "labelled",
              {"columns": {"text": "input"}, "label_field": "output", "positive": ["harmful"],
               "negative": ["unharmful"], "text_pattern": GUARD, "task": "prompt_harm"}, 302, 0, 198),
    "toxicchat-train": ("toxicchat/toxic_chat_train_2791.json.gz", "labelled",
                        {"records_path": "instances", "columns": {"text": "instance"},
                         "label_field": "annotations.toxicity.majority_human", "positive": ["1"], "negative": ["0"],
                         "task": "toxicity"}, 2791, 0, 380),
    "toxicchat-test": ("toxicchat/toxic_chat_test_2836.json.gz", "labelled",
                       {"records_path": "instances", "columns": {"text": "instance"},
                        "label_field": "annotations.toxicity.majority_human", "positive": ["1"], "negative": ["0"],
                        "task": "toxicity"}, 2836, 0, 359),
    "diasafety-train": ("diasafety/diasafety_train_9007.json.gz", "labelled",
                        {"columns": {"text": "context", "text2": "response"}, "positive": ["Unsafe"],
                         "negative": ["Safe"], "task": "response_harm"}, 9007, 0, 4173),
    "diasafety-test": ("diasafety/diasafety_test_1093.json", "labelled",
                       {"columns": {"text": "context", "text2": "response"}, "positive": ["Unsafe"],
                        "negative": ["Safe"], "task": "response_harm"}, 1093, 0, 500),
    "dices-990": ("dices/dices_990_982.json", "labelled",
                  {"records_path": "instances", "columns": {"text": "instance.user_prompt", "text2": "instance.response"},
                   "label_field": "annotations.safety.majority_human", "positive": ["Yes"], "negative": ["No"],
                   "task": "response_harm"}, 982, 0, 158),
    "dices-350": ("dices/dices_350_expert_350.json", "labelled",
                  {"records_path": "instances", "columns": {"text": "instance.user_prompt", "text2": "instance.response"},
                   "label_field": "annotations.safety.majority_human", "positive": ["Yes"], "negative": ["No"],
                   "task": "response_harm"}, 350, 0, 175),
    "hatecheck": ("hatecheck/hatecheck_test_suite_cases_3718.csv", "labelled",
                  {"columns": {"text": "test_case", "category": "functionality"}, "label_field": "label_gold",
                   "positive": ["hateful"], "negative": ["non-hateful"], "task": "hate"}, 3718, 0, 2553),
    "hate-offensive": ("hate-offensive/labeled_data_sample_4996.csv", "labelled",
                       {"columns": {"text": "tweet"}, "label_field": "class", "positive": [0, 1], "negative": [2],
                        "task": "toxicity"}, 4996, 0, 274 + 3821),
    "pii": ("pii/presidio_synth_dataset_v2_1500.json.gz", "labelled",
            {"columns": {"text": "full_text"}, "label_field": "spans", "task": "pii"}, 1500, 0, 1387),
    "coconot-contrast": ("coconot/coconot_contrast_eval_379.jsonl", "prompts",
                         {"labels": {"harmful": False}, "split": "eval"}, 379, 0, 0),
    "coconot-pref": ("coconot/coconot_contrast_pref_898.jsonl.gz", "preference", {}, 898, 0, 0),
    "coconot-safety": ("coconot/coconot_eval_safety_concerns_391.jsonl", "prompts",
                       {"labels": {"harmful": True}, "split": "eval"}, 391, 0, 391),
    "aart": ("aart/aart-v1-20231117_3241.csv.gz", "prompts",
             {"columns": {"category": "crime"}, "labels": {"harmful": True}}, 3241, 0, 3241),
    "ailuminate": ("ailuminate/airr_official_1.0_demo_en_us_prompt_set_release_1199.csv", "prompts",
                   {"columns": {"prompt": "prompt_text", "category": "hazard", "id": "release_prompt_id"},
                    "labels": {"harmful": True}}, 1199, 0, 1199),
}


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present (fresh user clone)")
@pytest.mark.parametrize("name", sorted(SHARED))
def test_every_shared_file_loads_with_readme_counts(name):
    rel, fmt, spec, rows, errors, harmful = SHARED[name]
    recs = read(SHARED_DATA / rel, fmt, root=SHARED_DATA.parent.parent, name=name, **spec)
    assert len(recs) == rows
    assert sum(r["error"] is not None for r in recs) == errors
    assert sum(bool(r["labels"].get("harmful")) for r in recs if r["error"] is None) == harmful
    assert len({r["id"] for r in recs}) == rows
    assert all(f"shared/data/{rel}" in r["locator"] for r in recs)  # relative to the repo (through ..)
    kinds = {r["kind"] for r in recs}
    assert len(kinds) == 1
    if kinds == {"labelled"}:
        assert all(r["labels"]["task"] == spec["task"] for r in recs)


def test_shared_data_is_covered_entirely():
    """Every data file of the shared folder has a row above (so a new file gets a test)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present (fresh user clone)")
    data_files = {p.relative_to(SHARED_DATA).as_posix() for p in SHARED_DATA.rglob("*")
                  if p.is_file() and not p.name.upper().startswith(("LICENSE", "README"))}
    assert data_files == {v[0] for v in SHARED.values()}
