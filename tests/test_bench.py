"""`make bench --batching`: how repeats become the figures (medians, ratios to today's padded batching).
No timing is asserted: the figures go to benchmarks/batching.json."""

import json

import pytest

from instructflow import bench


def run(rate, cpu=1.0, load=0.5):
    return {"supervised_tokens_per_s": rate, "cpu_seconds": cpu, "wall_seconds": cpu, "real_token_fraction": 0.7,
            "timed_steps": 4, "load_average": load}


def test_summary_takes_medians_and_ratios_to_padded():
    out = bench.summarize({"padded": [run(8.0), run(2.0), run(8.4)],  # one repeat hit by another job's burst
                           "grouped+supervised_head": [run(16.0), run(17.0, load=3.1), run(16.6)]})
    assert out["padded"]["supervised_tokens_per_s"] == 8.0 and out["padded"]["speedup_vs_padded"] == 1.0
    assert out["grouped+supervised_head"]["supervised_tokens_per_s"] == 16.6
    assert out["grouped+supervised_head"]["speedup_vs_padded"] == round(16.6 / 8.0, 2)
    assert out["grouped+supervised_head"]["repeats_tokens_per_s"] == [16.0, 17.0, 16.6]
    assert out["grouped+supervised_head"]["load_average"] == [0.5, 3.1, 0.5]


def test_variants_put_todays_batching_first_and_cover_every_mode():
    assert list(bench.VARIANTS)[0] == "padded" and bench.VARIANTS["padded"] == ("padded", "all", "auto")
    from instructflow import config

    modes = {m for m, _, _ in bench.VARIANTS.values()}
    heads = {h for _, h, _ in bench.VARIANTS.values()}
    dtypes = {d for _, _, d in bench.VARIANTS.values()}
    enum = config.params_schema()["properties"]["sft"]["properties"]
    assert modes == set(enum["batching"]["enum"]) - {"auto"} and heads == set(enum["lm_head"]["enum"]) - {"auto"}
    assert dtypes == {"auto", "bfloat16"} <= set(enum["dtype"]["enum"])  # float32 and the CPU's bf16 autocast


def test_counting_collator_counts_real_slots_supervised_and_examples_per_batch():
    import torch

    def pad(examples):  # a padding collator: labels -100 on padding and on the prompt's first token
        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.zeros(len(examples), width, dtype=torch.long)
        labels = torch.full((len(examples), width), -100)
        for i, e in enumerate(examples):
            ids[i, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
            labels[i, 1:len(e["input_ids"])] = torch.tensor(e["input_ids"][1:])
        return {"input_ids": ids, "labels": labels}

    sink = []
    collate = bench.counting_collator(pad, sink)
    batch = collate([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}])
    assert batch["input_ids"].shape == (2, 3)  # the wrapped collator's batch, unchanged
    collate([{"input_ids": [1, 2]}])
    assert sink == [(4, 6, 2, 2), (2, 2, 1, 1)]


def test_word_ngrams_bench_compares_sklearn_and_numpy_on_the_same_texts(tmp_path):
    from instructflow import bench_data

    texts = ["Hello, world: it's fine.", "naïve café au lait", "x"] * 20
    out = bench_data.word_ngrams_bench(texts, tmp_path, repeats=2)  # no offensive member in tmp_path
    [(name, row)] = out.items()
    assert name.startswith("hashed word 1-2 grams")
    assert row["equal"] is True and row["texts"] == 60 and row["repeats"] == 2
    assert row["sklearn_s"] > 0 and row["numpy_s"] > 0 and row["speedup"] > 0


@pytest.mark.slow
def test_malloc_bench_runs_each_allocator_in_its_own_process_and_compares_the_weights(tmp_path):
    from instructflow import malloc

    result = bench.malloc_bench(tmp_path / "malloc.json", steps=2, repeats=1, layers=1)
    assert json.loads((tmp_path / "malloc.json").read_text()) == result
    assert result["allocators"]["glibc"]["ran_with"] == ["glibc"]
    assert result["ratio_vs_glibc"]["glibc"] == 1.0 and result["same_weights"] is True
    lib = malloc.preload()
    if not lib:
        assert list(result["allocators"]) == ["glibc"] and "no tcmalloc" in result["note"]
        pytest.skip("no tcmalloc here: only glibc measured")
    assert result["allocators"][lib]["ran_with"][0].startswith("libtcmalloc")
    assert all(len(r["step_s"]) == 2 and r["median_step_s"] > 0 for v in result["runs"].values() for r in v)
