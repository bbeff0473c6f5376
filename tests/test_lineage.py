from instructflow import lineage
from instructflow.config import FormatConfig


def test_stamp_hashes_inputs_and_carries_params(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    (tmp_path / "d" / ".snakemake_timestamp").write_text("")
    (tmp_path / "d" / "lineage.json").write_text("{}")
    (tmp_path / "b.txt").write_text("b")
    stamp = lineage.stamp("format", [tmp_path / "d", tmp_path / "b.txt"], FormatConfig(eval_fraction=0.2), 7)
    assert stamp["stage"] == "format" and stamp["seed"] == 7
    assert stamp["params"]["eval_fraction"] == 0.2
    names = [p.rsplit("/", 1)[-1] for p in stamp["inputs"]]
    assert sorted(names) == ["a.txt", "b.txt"]
    assert stamp["inputs"][(tmp_path / "b.txt").as_posix()] == lineage.file_sha256(tmp_path / "b.txt")
    assert {"torch", "transformers", "trl"} <= set(stamp["libraries"])
    assert set(stamp["code"]) == {"commit", "dirty"}
    # no clocks: the same inputs stamp the same way
    assert lineage.stamp("format", [tmp_path / "d", tmp_path / "b.txt"], FormatConfig(eval_fraction=0.2), 7) == stamp
