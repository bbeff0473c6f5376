"""instructflow-chat MODEL: talk to a model folder through its own chat template, streaming.

    instructflow-chat models/safety                      # interactive; /reset clears, /exit quits
    instructflow-chat models/sft --prompt "Opposite of hot?"   # one shot, for scripts

Any Hugging Face model folder with a tokenizer chat template works (the
pipeline's models/base, models/sft, models/safety, or a local SmolLM2 folder),
and so does an adapter folder a LoRA or prompt-tuning stage wrote: the base it
names is loaded and the adapter applied (`training.load_model`).
Loading is safe: safetensors only, never remote code. Decoding is greedy unless
`--temperature` is above 0, so a one-shot answer is reproducible. Tokens are
printed as they are generated (transformers' TextIteratorStreamer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from threading import Thread


def load(path: str | Path):
    """(model, tokenizer) from a local folder; a clear error when it cannot chat."""
    from transformers import AutoTokenizer

    from . import training

    path = Path(path)
    if not (path / "config.json").is_file() and not training.is_adapter_folder(path):
        raise SystemExit(f"instructflow-chat: {path}: not a model folder (no config.json, no {training.POINTER})")
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if not tokenizer.chat_template:
        raise SystemExit(f"instructflow-chat: {path}: the tokenizer has no chat template; "
                         "this command needs an instruction-tuned (chat) model folder")
    try:
        model, tokenizer = training.load_model(path, "float32", "cpu")
    except (FileNotFoundError, ValueError) as err:  # an adapter whose base is gone or changed
        raise SystemExit(f"instructflow-chat: {err}") from None
    model.eval()
    return model, tokenizer


def reply(model, tokenizer, messages: list[dict], max_new_tokens: int = 128, temperature: float = 0.0,
          out=None) -> str:
    """Generate the assistant's next turn for `messages`, streaming text to `out` as it comes."""
    import torch
    from transformers import TextIteratorStreamer

    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(**inputs, max_new_tokens=max_new_tokens, streamer=streamer,
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                  eos_token_id=tokenizer.eos_token_id)
    kwargs |= {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    errors: list[BaseException] = []

    def generate():
        try:
            with torch.no_grad():
                model.generate(**kwargs)
        except BaseException as err:  # surfaced in the caller's thread below
            errors.append(err)
            streamer.end()

    thread = Thread(target=generate, daemon=True)
    thread.start()
    parts = []
    for text in streamer:
        parts.append(text)
        if out is not None:
            out.write(text)
            out.flush()
    thread.join()
    if errors:
        raise errors[0]
    return "".join(parts).strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model folder (config.json, safetensors, tokenizer with a chat template)")
    ap.add_argument("--prompt", help="one-shot: answer this and exit")
    ap.add_argument("--system", default="", help="optional system message")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (reproducible)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    model, tokenizer = load(args.model)
    history = [{"role": "system", "content": args.system}] if args.system else []
    if args.prompt is not None:
        reply(model, tokenizer, [*history, {"role": "user", "content": args.prompt}], args.max_new_tokens,
              args.temperature, out=sys.stdout)
        sys.stdout.write("\n")
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {args.model} (/reset clears the conversation, /exit or Ctrl-D quits)", file=sys.stderr)
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            history = history[:1] if args.system else []
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        answer = reply(model, tokenizer, history, args.max_new_tokens, args.temperature, out=sys.stdout)
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": answer})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
