from instructflow.tokenizer import END, train_tokenizer

TEXTS = ["What is the opposite of hot?", "cold", "Repeat the word cat two times.", "cat cat",
         "The opposite of big is small. 12 + 34 = 46"] * 20


def test_chat_template_and_assistant_mask():
    tok = train_tokenizer(TEXTS, 400)
    msgs = [{"role": "user", "content": "What is the opposite of hot?"},
            {"role": "assistant", "content": "cold"}]
    enc = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    masked = [tok.convert_ids_to_tokens(i) for i, m in zip(ids, mask) if m]
    # exactly the reply and the end-of-turn token, nothing of the prompt
    assert tok.convert_tokens_to_string(masked).strip() == "cold" + END
    assert masked[-1] == END and tok.eos_token == END
    assert sum(mask) == len(masked) and mask[0] == 0


def test_generation_prompt_and_word_tokens():
    tok = train_tokenizer(TEXTS, 400)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>hi<|end|><|assistant|>"
    # a reply word is one token, the same with or without a preceding space
    assert len(tok.tokenize("cold")) == 1
    assert tok.tokenize("cold") == tok.tokenize(" cold")
    # digits one per token
    assert [t.strip("Ġ") for t in tok.tokenize("1234") if t.strip("Ġ")] == ["1", "2", "3", "4"]
