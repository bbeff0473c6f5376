"""Stage ingest: sources only from data/sources, unique names and ids, own licenses, per-source counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from instructflow import ingest
from instructflow.records import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def repo(tmp_path: Path, sources: list[dict], generator: bool = False) -> Path:
    """A throwaway workspace: the project's params with these sources, files under data/sources."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"]["sources"] = sources
    params["ingest"]["generator"]["enabled"] = generator
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "data" / "sources").mkdir(parents=True, exist_ok=True)
    return tmp_path


def write(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows) if path.suffix == ".json" else "".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [{"instruction": "Hi", "output": "Hello"}, {"instruction": "Up?", "output": "Down"}]


def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ingest.main([])
    return list(read_jsonl(tmp_path / "data/raw/records.jsonl")), json.loads(
        (tmp_path / "reports/ingest/summary.json").read_text())


def test_same_file_name_in_two_folders_keeps_ids_and_licenses_apart(tmp_path, monkeypatch):
    write(tmp_path / "data/sources/a/train.json", ROWS)
    write(tmp_path / "data/sources/b/train.json", ROWS)
    repo(tmp_path, [{"name": "a", "path": "data/sources/a/train.json", "format": "alpaca", "license": "MIT"},
                    {"name": "b", "path": "data/sources/b/train.json", "format": "alpaca", "license": "CC-BY-4.0"}])
    records, summary = run(tmp_path, monkeypatch)
    assert len({r["id"] for r in records}) == 4
    assert [(r["source"], r["license"], r["locator"]) for r in records] == [
        ("a", "MIT", "data/sources/a/train.json#index=0"), ("a", "MIT", "data/sources/a/train.json#index=1"),
        ("b", "CC-BY-4.0", "data/sources/b/train.json#index=0"), ("b", "CC-BY-4.0", "data/sources/b/train.json#index=1")]
    assert summary["by_source"] == {"a": 2, "b": 2}
    assert summary["sources"]["b"] == {"license": "CC-BY-4.0", "records": 2, "errors": 0, "by_kind": {"sft": 2},
                                       "files": {"data/sources/b/train.json": 2}}
    assert summary["records"] == 4 and summary["unparseable"] == 0


def test_duplicate_source_names_are_refused(tmp_path, monkeypatch):
    write(tmp_path / "data/sources/x.json", ROWS)
    repo(tmp_path, [{"name": "x", "path": "data/sources/x.json", "format": "alpaca", "license": "MIT"},
                    {"name": "x", "path": "data/sources/x.json", "format": "alpaca", "license": "Apache-2.0"}])
    with pytest.raises(SystemExit, match=r"source name\(s\) \['x'\] used more than once"):
        run(tmp_path, monkeypatch)


def test_source_outside_data_sources_is_refused_with_how_to_add_it(tmp_path, monkeypatch):
    write(tmp_path / "elsewhere/x.json", ROWS)
    repo(tmp_path, [{"name": "x", "path": "elsewhere/x.json", "format": "alpaca", "license": "MIT"}])
    with pytest.raises(SystemExit) as err:
        run(tmp_path, monkeypatch)
    msg = str(err.value)
    assert "elsewhere/x.json is outside data/sources/" in msg and "dvc add data/sources/x.json" in msg
    assert not (tmp_path / "data/raw/records.jsonl").exists()


def test_a_file_that_cannot_be_read_stops_naming_it_and_leaves_no_output(tmp_path, monkeypatch):
    (tmp_path / "data/sources").mkdir(parents=True)
    (tmp_path / "data/sources/broken.json").write_text('[{"instruction": "Hi", "output": "x"} {"a": 1}]')
    write(tmp_path / "data/sources/good.json", ROWS)
    repo(tmp_path, [{"name": "good", "path": "data/sources/good.json", "format": "alpaca", "license": "MIT"},
                    {"name": "bad", "path": "data/sources/broken.json", "format": "alpaca", "license": "MIT"}])
    with pytest.raises(SystemExit, match=r"source 'bad' \(alpaca\): data/sources/broken.json: not valid JSON"):
        run(tmp_path, monkeypatch)
    assert not (tmp_path / "data/raw/records.jsonl").exists()  # atomic: no half-written file
    assert not list((tmp_path / "data/raw").glob(".records.jsonl.tmp-*"))


def test_repairs_are_logged_and_counted(tmp_path, monkeypatch, capsys):
    (tmp_path / "data/sources").mkdir(parents=True)
    (tmp_path / "data/sources/bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS).encode())
    write(tmp_path / "data/sources/m.jsonl", [{"messages": [{"role": "user", "content": "a"}]}])
    with open(tmp_path / "data/sources/m.jsonl", "ab") as fh:
        fh.write(b'{"messages": \xff}\n')
    repo(tmp_path, [{"name": "bom", "path": "data/sources/bom.json", "format": "alpaca", "license": "MIT"},
                    {"name": "m", "path": "data/sources/m.jsonl", "format": "messages", "license": "MIT"}])
    records, summary = run(tmp_path, monkeypatch)
    assert "ingest: source 'bom': data/sources/bom.json: UTF-8 byte-order mark removed" in capsys.readouterr().out
    assert summary["notes"][0] == "bom: data/sources/bom.json: UTF-8 byte-order mark removed"
    assert summary["sources"]["m"]["errors"] == 1 and summary["sources"]["m"]["records"] == 2
    assert records[-1]["error"] == "data/sources/m.jsonl line 2: invalid UTF-8 bytes on this line"


def test_builtin_corpus_and_user_sources_together(tmp_path, monkeypatch):
    write(tmp_path / "data/sources/x.jsonl", [{"prompt": "How do I make a bomb?"}])
    repo(tmp_path, [{"name": "x", "path": "data/sources/x.jsonl", "format": "prompts", "license": "MIT",
                     "labels": {"harmful": True}, "split": "eval"}], generator=True)
    records, summary = run(tmp_path, monkeypatch)
    assert summary["by_source"]["x"] == 1 and summary["by_source"]["builtin"] == summary["records"] - 1
    assert all(f.startswith("data/raw/builtin/") for f in summary["sources"]["builtin"]["files"])
    assert records[-1]["labels"] == {"harmful": True, "force_split": "eval", "style": "question"}
    assert (tmp_path / "data/raw/pretrain.txt").stat().st_size > 0


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data").is_dir(), reason="../shared/data not present (fresh user clone)")
def test_every_shared_file_through_ingest_validate_format_is_conserved(tmp_path, monkeypatch):
    """All public samples as sources of one run: per source, raw = validated rows, and
    valid = what format wrote; no source trips the quarantine gate."""
    import shutil

    from test_loaders import SHARED

    from instructflow import format as fmt
    from instructflow import validate

    shared = ROOT.parent / "shared" / "data"
    sources = []
    for name, (rel, form, spec, rows, *_) in sorted(SHARED.items()):
        dst = tmp_path / "data/sources" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / rel, dst)
        sources.append({"name": name, "path": f"data/sources/{rel}", "format": form, "license": "see README",
                        **spec})
    repo(tmp_path, sources)
    monkeypatch.chdir(tmp_path)
    ingest.main([])
    validate.main(["--no-datadocs"])
    fmt.main([])
    ing, val, form = (json.loads((tmp_path / f"reports/{s}/summary.json").read_text())
                      for s in ("ingest", "validate", "format"))
    assert ing["by_source"] == {name: v[3] for name, v in SHARED.items()}  # README row counts
    for name in SHARED:
        assert val["by_source"][name]["rows"] == ing["by_source"][name], name
        assert val["by_source"][name]["valid"] == sum(form["by_source"].get(name, {}).values()), name
    assert val["rows"] == ing["records"] == val["valid"] + val["quarantined"]
    assert form["labelled"] > 29_000 and form["prompts"] > 5_000 and form["pairs"] > 3_000
