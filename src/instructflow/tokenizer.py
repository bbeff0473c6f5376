"""The from-scratch tokenizer and the chat template every model folder carries.

A byte-level BPE trained on the corpus itself, sized to it, with digits split one
per token (otherwise numbers become arbitrary chunks a small model cannot read).
The chat template marks assistant turns with `{% generation %}` so TRL can build
the assistant-only loss mask, and ends every turn with `<|end|>`, which is also
the end-of-sequence token: generation stops exactly where a reply ends.
"""

from __future__ import annotations

import os
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


# --------------------------------------------------------------------------- a user's model
# Sentinels no real text contains, to locate message contents in a rendering.
_SYS, _USER, _REPLY = "\x02sys\x02", "\x03user\x03", "\x04reply\x04"


def _render(tokenizer, messages: list[dict], **kw) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kw)


def default_system_prompt(tokenizer) -> str | None:
    """The system text the template injects when the messages have none, or None.

    Rendering [user] and [system(sentinel), user] gives the same prefix up to
    where the system content goes; what the first has there instead of the
    sentinel, up to the common ending, is the injected default."""
    plain = _render(tokenizer, [{"role": "user", "content": _USER}])
    try:
        with_sys = _render(tokenizer, [{"role": "system", "content": _SYS}, {"role": "user", "content": _USER}])
    except Exception:  # templates that reject a system role inject none either
        return None
    common = os.path.commonprefix([plain, with_sys])
    rest_sys, rest_plain = with_sys[len(common):], plain[len(common):]
    if not rest_sys.startswith(_SYS):
        return None
    after = rest_sys[len(_SYS):]
    if not after or not rest_plain.endswith(after) or len(rest_plain) == len(after):
        return None
    return rest_plain[: len(rest_plain) - len(after)]


def drop_default_system_prompt(tokenizer) -> str | None:
    """Make the template inject no system prompt of its own; return the text it injected.

    The default is a literal in the template (SmolLM2, Qwen). Blank the whole
    quoted literal that holds it (its header and end-of-turn go too); if that
    is not how the template is written, blank the text alone (an empty system
    turn remains); if neither removes it, stop with a clear message."""
    text = default_system_prompt(tokenizer)
    if text is None:
        return None
    template = tokenizer.chat_template
    candidates = []
    at = template.find(text)
    if at >= 0:
        for quote in ("'", '"'):
            start, end = template.rfind(quote, 0, at), template.find(quote, at + len(text))
            if start >= 0 and end >= 0 and "{" not in template[start:end] and "}" not in template[start:end]:
                candidates.append(template[:start + 1] + template[end:])
        candidates.append(template.replace(text, ""))
    for patched in candidates:
        tokenizer.chat_template = patched
        if default_system_prompt(tokenizer) is None and text not in _render(tokenizer, [{"role": "user", "content": "x"}]):
            return text
    tokenizer.chat_template = template
    raise ValueError(
        f"params.yaml: `model.default_system_prompt: drop`: the chat template injects the system prompt {text!r} "
        "into every example that has none, and it is not a literal this stage can remove. Set "
        "`format.system_prompt` to the system prompt you want, or `model.default_system_prompt: keep`.")


def end_of_turn_token(tokenizer) -> str | None:
    """The special token that closes an assistant turn in the template (ChatML: <|im_end|>)."""
    text = _render(tokenizer, [{"role": "user", "content": _USER}, {"role": "assistant", "content": _REPLY}])
    if _REPLY not in text:
        return None
    tail = text[text.index(_REPLY) + len(_REPLY):]
    specials = sorted(set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab()), key=len, reverse=True)
    return next((t for t in specials if t and tail.startswith(t)), None)


def prepare_tokenizer(tokenizer, model, default_system: str = "drop") -> dict:
    """Make a user's tokenizer ready for training; return what was decided (for metrics).

    - a chat template (instructflow's when it has none);
    - the template's own default system prompt dropped (or kept, and reported);
    - EOS = the token that ends an assistant turn, so generation stops there;
    - a pad token that is not EOS when avoidable (collators and masks then
      never confuse padding with a learned end of turn)."""
    before, vocab_before = len(tokenizer), set(tokenizer.get_vocab())
    ensure_chat_template(tokenizer)
    report: dict = {}
    if default_system == "drop":
        report["default_system_prompt_dropped"] = drop_default_system_prompt(tokenizer)
    else:
        report["default_system_prompt_kept"] = default_system_prompt(tokenizer)
    eot = end_of_turn_token(tokenizer)
    if eot and eot != tokenizer.eos_token:
        report["eos_token_was"] = tokenizer.eos_token
        tokenizer.eos_token = eot
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        sample = _render(tokenizer, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                     {"role": "assistant", "content": "a"}])
        vocab = tokenizer.get_vocab()
        choices = [t for t in (PAD, tokenizer.unk_token, "<|endoftext|>", "<pad>", "[PAD]")
                   if t and t in vocab and t != tokenizer.eos_token and t not in sample]
        if choices:
            tokenizer.pad_token = choices[0]
        else:
            tokenizer.add_special_tokens({"pad_token": PAD})
    tokenizer.padding_side = "right"
    if len(tokenizer) != before:
        model.resize_token_embeddings(len(tokenizer))
        # New rows start untrained: LoRA stages train exactly these rows (training.new_token_ids).
        report["added_tokens"] = sorted(set(tokenizer.get_vocab()) - vocab_before)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    report |= {"eos_token": tokenizer.eos_token, "pad_token": tokenizer.pad_token}
    return report

