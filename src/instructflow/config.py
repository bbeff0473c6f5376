"""Typed views of `params.yaml`, one dataclass per stage section.

`params.yaml` is the single place for every knob: it is DVC's params file and
Snakemake's configfile. Each stage reads only its own section (plus `seed`)
through `load(section)`, and `dvc.yaml` declares exactly those sections, so
`dvc.lock` records what each stage consumed. The JSON schema Snakemake validates
the file against is generated from these dataclasses, so the two cannot drift.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARAMS_FILE = "params.yaml"


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field that carries its help text (shown in the schema)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda d=default: dataclasses.replace(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


# --------------------------------------------------------------------------- ingest
@dataclass
class SourceConfig:
    name: str = _f("", "Short source name, used in record ids and provenance.")
    path: str = _f("", "File to read, relative to the repository root.")
    format: str = _f("alpaca", "One of: alpaca (JSON list), messages (JSONL with a `messages` list).")
    license: str = _f("unknown", "License of the source data, carried into every record.")


@dataclass
class GeneratorConfig:
    enabled: bool = _f(True, "Generate the built-in default corpus.")
    items_per_family: int = _f(60, "Distinct items (word pairs, reviews, lists...) per task family.")
    harmful_per_category: int = _f(24, "Harmful requests generated per harm category.")
    lookalikes: int = _f(120, "Harmless look-alike requests that share dangerous words.")
    harmful_compliance: int = _f(40, "Harmful requests answered with compliance (the filter must catch them).")
    toxic: int = _f(30, "Task answers laced with insults (the filter must catch them).")
    malformed: int = _f(12, "Malformed, empty or unparseable records (validation must catch them).")
    duplicates: int = _f(12, "Exact duplicate records (validation must catch them).")
    pretrain_repeats: int = _f(3, "How many shuffled passes of world facts go into the pretraining text.")


@dataclass
class IngestConfig:
    generator: GeneratorConfig = _f(GeneratorConfig(), "The built-in, seeded corpus generator.")
    sources: list = _f([], "User files to ingest: a list of {name, path, format, license}.")

    def __post_init__(self) -> None:
        if isinstance(self.generator, dict):
            self.generator = _build(GeneratorConfig, self.generator, "ingest.generator")
        self.sources = [
            s if isinstance(s, SourceConfig) else _build(SourceConfig, s, f"ingest.sources[{i}]")
            for i, s in enumerate(self.sources)
        ]


# --------------------------------------------------------------------------- validate
@dataclass
class ValidateConfig:
    min_rows: int = _f(10, "Fewer raw records than this stops the pipeline (dataset-level rule).")
    max_invalid_fraction: float = _f(0.5, "Stop the pipeline if a larger share of rows fails row-level rules.")
    max_chars: int = _f(4000, "Longest prompt or response accepted, in characters.")


# --------------------------------------------------------------------------- format
@dataclass
class FormatConfig:
    eval_fraction: float = _f(0.1, "Share of seen-phrasing items held out for evaluation, by content hash.")
    system_prompt: str = _f("", "Optional system message prepended to every chat example.")


# --------------------------------------------------------------------------- filter
@dataclass
class FilterConfig:
    harmful_terms: list = _f([], "Words that mark a request as harmful (matched as whole words).")
    compliance_markers: list = _f([], "Phrases that show a response complies with a request.")
    toxic_terms: list = _f([], "Insults and slurs; a response containing one is removed as toxic.")
    refusal_text: str = _f("I can't help with that.", "Chosen reply when harmful compliance becomes a safety pair.")
    refusal_markers: list = _f([], "Phrases that mark a reply as a refusal.")


# --------------------------------------------------------------------------- base (section `model`)
@dataclass
class ModelConfig:
    base: str = _f("", "Local Hugging Face model folder (or hub id); empty = tiny model pretrained from scratch.")
    vocab_size: int = _f(1024, "BPE vocabulary size for the from-scratch tokenizer (sized to the corpus).")
    hidden_size: int = _f(128, "Width of the from-scratch Llama model.")
    num_layers: int = _f(4, "Decoder layers of the from-scratch model.")
    num_heads: int = _f(4, "Attention heads of the from-scratch model.")
    intermediate_size: int = _f(384, "MLP width of the from-scratch model.")
    max_length: int = _f(128, "Context length of the from-scratch model.")
    pretrain_steps: int = _f(300, "Optimizer steps of causal-LM pretraining on the plain-text corpus.")
    pretrain_batch_size: int = _f(32, "Blocks per pretraining step.")
    pretrain_block_size: int = _f(64, "Tokens per pretraining block.")
    learning_rate: float = _f(3e-3, "Peak pretraining learning rate (tiny models need a high one).")
    threads: int = _f(2, "torch CPU threads; use 1 when jobs run side by side.")


# --------------------------------------------------------------------------- sft
@dataclass
class SFTConfig:
    method: str = _f("full", "full (all weights) or lora (PEFT adapters, merged on save).")
    learning_rate: float = _f(2e-3, "Peak learning rate (cosine decay, 5% warm-up).")
    epochs: float = _f(6.0, "Upper bound on passes over the training split; early stopping may end sooner.")
    batch_size: int = _f(32, "Examples per optimizer step.")
    eval_steps: int = _f(50, "Steps between validation-loss checks.")
    patience: int = _f(3, "Validation checks without improvement before early stopping.")
    validation_fraction: float = _f(0.05, "Share of the training split used for validation loss, by hash.")
    max_length: int = _f(128, "Truncate examples to this many tokens.")
    lora_r: int = _f(16, "LoRA rank when method is lora.")
    threads: int = _f(2, "torch CPU threads.")


# --------------------------------------------------------------------------- safety
@dataclass
class SafetyConfig:
    method: str = _f("dpo", "dpo (preference pairs, SFT model as reference) or refusal_sft (SFT on chosen replies).")
    beta: float = _f(0.1, "DPO temperature: how far the policy may move from the reference.")
    sft_weight: float = _f(1.0, "Weight of the SFT (NLL) term on chosen replies added to the DPO loss.")
    learning_rate: float = _f(5e-4, "Peak learning rate.")
    epochs: float = _f(2.0, "Passes over the preference pairs.")
    batch_size: int = _f(16, "Pairs per optimizer step.")
    max_length: int = _f(128, "Truncate prompt + reply to this many tokens.")
    threads: int = _f(2, "torch CPU threads.")


# --------------------------------------------------------------------------- evaluate
@dataclass
class EvaluateConfig:
    max_new_tokens: int = _f(24, "Greedy decoding budget per prompt.")
    batch_size: int = _f(64, "Prompts per generation batch.")
    refusal_markers: list = _f([], "Phrases that mark a reply as a refusal (case-insensitive prefix or substring).")
    threads: int = _f(2, "torch CPU threads.")


@dataclass
class ReportConfig:
    examples_per_group: int = _f(3, "Sample generations shown per evaluation group.")


SECTIONS: dict[str, type] = {
    "ingest": IngestConfig,
    "validate": ValidateConfig,
    "format": FormatConfig,
    "filter": FilterConfig,
    "model": ModelConfig,
    "sft": SFTConfig,
    "safety": SafetyConfig,
    "evaluate": EvaluateConfig,
    "report": ReportConfig,
}


class ParamsError(ValueError):
    """params.yaml does not match the schema; the message names the key."""


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ParamsError(f"{PARAMS_FILE}: `{where}` must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ParamsError(f"{PARAMS_FILE}: unknown key(s) {unknown} in `{where}`; allowed: {sorted(names)}")
    return cls(**data)


def _yaml_loader():
    """SafeLoader that also reads `3e-4` as a float (YAML 1.1 wants `3.0e-4`),
    so `dvc exp run -S sft.learning_rate=3e-4` means what the user typed."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def read_params(path: str | Path = PARAMS_FILE) -> dict:
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_yaml_loader()) or {}


def load(section: str, path: str | Path = PARAMS_FILE) -> tuple[Any, int]:
    """Return (typed section config, seed) after validating the whole file."""
    params = read_params(path)
    validate_params(params)
    return _build(SECTIONS[section], params.get(section, {}), section), int(params["seed"])


# --------------------------------------------------------------------------- schema
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", list: "array"}


def _schema_of(cls: type) -> dict:
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            prop = _schema_of(t)
        else:
            prop = {"type": _JSON_TYPES[t]}
            if t is list and f.name == "sources":
                prop["items"] = _schema_of(SourceConfig)
        prop["description"] = f.metadata.get("help", "")
        props[f.name] = prop
    return {"type": "object", "properties": props, "additionalProperties": False}


def params_schema() -> dict:
    """JSON schema of params.yaml, generated from the dataclasses above."""
    props = {name: _schema_of(cls) for name, cls in SECTIONS.items()}
    props["seed"] = {"type": "integer", "description": "Seed for every random choice in every stage."}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": props,
        "required": ["seed", *SECTIONS],
        "additionalProperties": False,
    }


def validate_params(params: dict) -> None:
    import jsonschema

    try:
        jsonschema.validate(params, params_schema())
    except jsonschema.ValidationError as err:
        where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        raise ParamsError(f"{PARAMS_FILE}: `{where}`: {err.message}") from None
    for name in ("sft", "safety"):
        method = params[name].get("method")
        allowed = {"sft": ("full", "lora"), "safety": ("dpo", "refusal_sft")}[name]
        if method is not None and method not in allowed:
            raise ParamsError(f"{PARAMS_FILE}: `{name}.method` is {method!r}; allowed: {list(allowed)}")
