"""The from-scratch tokenizer and the chat template every model folder carries.

A byte-level BPE trained on the corpus itself, sized to it, with digits split one
per token (otherwise numbers become arbitrary chunks a small model cannot read).
The chat template marks assistant turns with `{% generation %}` so TRL can build
the assistant-only loss mask, and ends every turn with `<|end|>`, which is also
the end-of-sequence token: generation stops exactly where a reply ends.
"""

from __future__ import annotations

from typing import Iterable

END, PAD = "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, END, *ROLE_TOKENS]

# No newlines between turns: the role and end tokens delimit them, and each
# content segment then starts a fresh pre-token sequence, so with a prefix space
# "cold" as a reply is the same token as " cold" inside a sentence. (Newlines
# after role tokens made every first word of a reply a rare, split token, and
# `{%- -%}` trimming silently ate them anyway.)
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|' + message['role'] + '|>' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{- message['content'] + '<|end|>' -}}{%- endgeneration -%}"
    "{%- else -%}"
    "{{- message['content'] + '<|end|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE on `texts` and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Byte-level first (with a prefix space, so a word is one token wherever it
    # stands), then digits split one per token.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        pre_tokenizers.Digits(individual_digits=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=END, pad_token=PAD,
                                   additional_special_tokens=ROLE_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


def ensure_chat_template(tokenizer) -> None:
    """Give a user-supplied tokenizer our template and end-of-turn tokens if it lacks a template."""
    if tokenizer.chat_template:
        return
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token = END
    tokenizer.pad_token = PAD
