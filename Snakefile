# instructflow: the executor of the DAG.
#
# DVC judges what is stale (content hashes in dvc.lock); each DVC stage runs one
# rule here with
#   snakemake --cores all --nolock --rerun-incomplete --allowed-rules <rule> -- <rule>
# Snakemake contributes logs, benchmarks, resources (gpu, mem_mb, runtime) and
# cluster execution through profiles (profiles/). Running Snakemake directly
# after `dvc pull` needs `snakemake --touch` first: DVC restores files with new
# modification times.
import os

from instructflow import malloc
from instructflow.config import read_params, validate_params

configfile: "params.yaml"


# Validate the file as the stages read it (3e-4 is a float there, not a string).
validate_params(read_params("params.yaml"))

EVAL_SUITES = [s["path"] for s in config["evaluate"]["suites"]]
USER_SOURCES = [s["path"] for s in config["ingest"]["sources"]]
# Output goes to the log and to the terminal, so a failing stage shows its message
# (file, record, rule) right in `dvc repro`; the shell runs with pipefail.
# src/ leads PYTHONPATH: a `--use-conda` environment has the dependencies but not the
# project itself (locally the .venv has both, and src/ is what it installed, editable).
# (Braces doubled twice: once for .format below, once for Snakemake; the shell runs with -u.)
# Every stage runs with tcmalloc where the system has it (src/instructflow/malloc.py: training
# steps 1.1-1.2x faster on a 2-core CPU, the same bytes); INSTRUCTFLOW_MALLOC=system keeps glibc's.
PRELOAD = malloc.preload()
STAGE = ((f"LD_PRELOAD={PRELOAD}${{{{{{{{LD_PRELOAD:+:$LD_PRELOAD}}}}}}}} " if PRELOAD else "")
         + "PYTHONPATH=src${{{{PYTHONPATH:+:$PYTHONPATH}}}} python -m instructflow.{} 2>&1 | tee {{log}}")
# For `--use-conda` (e.g. on cluster nodes); locally the project's .venv is used.
ENV = "profiles/envs/instructflow.yaml"
# Training rules on GPU nodes get a CUDA torch: profiles/slurm sets `train_env`.
TRAIN_ENV = config.get("train_env", ENV)


# What `workers: 0` uses (the data stages' worker processes); snakemake lowers it to --cores.
CORES = len(os.sched_getaffinity(0))


rule all:
    input:
        "reports/report.md",
        "reports/report.html",


rule ingest:
    input:
        USER_SOURCES,
    output:
        records="data/raw/records.jsonl",
        pretrain="data/raw/pretrain.txt",
        builtin=directory("data/raw/builtin"),
        summary="reports/ingest/summary.json",
    log:
        "logs/ingest.log",
    conda:
        ENV
    benchmark:
        "benchmarks/ingest.tsv"
    shell:
        STAGE.format("ingest")


rule validate:
    input:
        "data/raw/records.jsonl",
    output:
        valid="data/validated/valid.jsonl",
        quarantine="data/validated/quarantine.jsonl",
        summary="reports/validate/summary.json",
        datadocs=directory("reports/validate/datadocs"),
    log:
        "logs/validate.log",
    conda:
        ENV
    benchmark:
        "benchmarks/validate.tsv"
    threads: config["validate"]["workers"] or CORES  # worker processes; 0 = every core
    shell:
        STAGE.format("validate")


rule format:
    input:
        "data/validated/valid.jsonl",
    output:
        sft="data/formatted/sft.jsonl",
        pairs="data/formatted/pairs.jsonl",
        eval="data/formatted/eval.jsonl",
        prompts="data/formatted/prompts.jsonl",
        labelled="data/formatted/labelled.jsonl",
        summary="reports/format/summary.json",
    log:
        "logs/format.log",
    conda:
        ENV
    benchmark:
        "benchmarks/format.tsv"
    threads: config["format"]["workers"] or CORES  # worker processes; 0 = every core
    shell:
        STAGE.format("format")


# Extra evaluation suites (params evaluate.suites): the filter keeps training data off their prompts too.
EVAL_SUITES = [s["path"] for s in config["evaluate"].get("suites", []) if isinstance(s, dict) and "path" in s]


rule detector:
    input:
        "data/formatted/sft.jsonl",
        "data/formatted/pairs.jsonl",
        "data/formatted/labelled.jsonl",
        "data/formatted/eval.jsonl",  # training rows with an evaluation prompt are left out
    output:
        model=directory("models/detector"),
        metrics="reports/detector/metrics.json",
    log:
        "logs/detector.log",
    conda:
        ENV
    benchmark:
        "benchmarks/detector.tsv"
    threads: config["detector"]["threads"]
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=30,
    shell:
        STAGE.format("detector")


rule filter:
    input:
        "data/formatted/sft.jsonl",
        "data/formatted/pairs.jsonl",
        "data/formatted/eval.jsonl",
        "data/formatted/prompts.jsonl",
        "models/detector",
        EVAL_SUITES,
    output:
        sft="data/filtered/sft.jsonl",
        pairs="data/filtered/pairs.jsonl",
        prompts="data/filtered/prompts.jsonl",
        removed="data/filtered/removed.jsonl",
        summary="reports/filter/summary.json",
    log:
        "logs/filter.log",
    conda:
        ENV
    benchmark:
        "benchmarks/filter.tsv"
    threads: max(config["filter"]["threads"], config["filter"]["workers"] or CORES)  # 0 = every core
    shell:
        STAGE.format("filter")


rule base:
    input:
        "data/raw/pretrain.txt",
        "data/raw/records.jsonl",
        # Local base models (folders, .gguf) live here, so new weights rerun base.
        "data/sources/models",
    output:
        model=directory("models/base"),
        live=directory("reports/base/live"),
        metrics="reports/base/metrics.json",
    log:
        "logs/base.log",
    conda:
        TRAIN_ENV
    benchmark:
        "benchmarks/base.tsv"
    threads: config["model"]["threads"] or 1  # 0 = the free cores, decided by the stage
    resources:
        gpu=0,  # the SLURM profile asks for one (profiles/slurm)
        mem_mb=config["model"]["mem_mb"],
        runtime=30,
    shell:
        STAGE.format("base")


rule sft:
    input:
        "models/base",
        "data/filtered/sft.jsonl",
    output:
        model=directory("models/sft"),
        live=directory("reports/sft/live"),
        metrics="reports/sft/metrics.json",
    log:
        "logs/sft.log",
    conda:
        TRAIN_ENV
    benchmark:
        "benchmarks/sft.tsv"
    threads: config["sft"]["threads"] or 1  # 0 = the free cores, decided by the stage
    resources:
        gpu=0,  # the SLURM profile asks for one (profiles/slurm)
        mem_mb=config["sft"]["mem_mb"],
        runtime=60,
    shell:
        STAGE.format("sft")


rule onpolicy:
    input:
        # An adapter-trained SFT model (LoRA, prompt tuning) is stored against models/base.
        "models/base",
        "models/sft",
        "data/filtered/prompts.jsonl",
        "data/filtered/sft.jsonl",
    output:
        pairs="data/onpolicy/pairs.jsonl",
        skipped="data/onpolicy/skipped.jsonl",
        summary="reports/onpolicy/summary.json",
    log:
        "logs/onpolicy.log",
    conda:
        ENV
    benchmark:
        "benchmarks/onpolicy.tsv"
    threads: config["onpolicy"]["threads"] or 1
    resources:
        gpu=0,
        mem_mb=config["onpolicy"]["mem_mb"],
        runtime=60,
    shell:
        STAGE.format("onpolicy")


rule safety:
    input:
        # An adapter-trained SFT model (LoRA, prompt tuning) is stored against models/base.
        "models/base",
        "models/sft",
        "data/filtered/pairs.jsonl",
        "data/onpolicy/pairs.jsonl",
    output:
        model=directory("models/safety"),
        live=directory("reports/safety/live"),
        metrics="reports/safety/metrics.json",
    log:
        "logs/safety.log",
    conda:
        TRAIN_ENV
    benchmark:
        "benchmarks/safety.tsv"
    threads: config["safety"]["threads"] or 1  # 0 = the free cores, decided by the stage
    resources:
        gpu=0,  # the SLURM profile asks for one (profiles/slurm)
        mem_mb=config["safety"]["mem_mb"],
        runtime=60,
    shell:
        STAGE.format("safety")


rule evaluate:
    input:
        "models/base",
        "models/sft",
        "models/safety",
        "models/detector",
        "data/formatted/eval.jsonl",
        "data/filtered/sft.jsonl",
        EVAL_SUITES,
    output:
        generations="reports/evaluate/generations.jsonl",
        metrics="reports/evaluate/metrics.json",
    log:
        "logs/evaluate.log",
    conda:
        ENV
    benchmark:
        "benchmarks/evaluate.tsv"
    threads: config["evaluate"]["threads"]
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=30,
    shell:
        STAGE.format("evaluate")


rule report:
    input:
        "reports/ingest/summary.json",
        "reports/validate/summary.json",
        "reports/format/summary.json",
        "reports/detector/metrics.json",
        "reports/filter/summary.json",
        "reports/base/metrics.json",
        "reports/base/live",
        "reports/sft/metrics.json",
        "reports/sft/live",
        "reports/onpolicy/summary.json",
        "reports/safety/metrics.json",
        "reports/safety/live",
        "reports/evaluate/metrics.json",
        "reports/evaluate/generations.jsonl",
    output:
        md="reports/report.md",
        html="reports/report.html",
        plots=directory("reports/plots"),
    log:
        "logs/report.log",
    conda:
        ENV
    benchmark:
        "benchmarks/report.tsv"
    shell:
        STAGE.format("report")
