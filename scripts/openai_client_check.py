"""Checks `redraft serve` with the official `openai` Python client (run by tests/serve.rs).

Usage: python openai_client_check.py http://127.0.0.1:PORT/v1 MODEL
Exits non-zero with a message on the first mismatch; prints `ok` at the end.
"""

import sys

import openai


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "hi"}]

    whole = client.chat.completions.create(
        model=model, messages=messages, max_tokens=6, temperature=0, logprobs=True
    )
    text = whole.choices[0].message.content

    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks, "the chat stream yielded no chunks"
    streamed = "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices
    )
    assert streamed == text, f"streamed {streamed!r} != whole {text!r}"
    logprobs = [
        entry.logprob
        for c in chunks
        if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content
        for entry in c.choices[0].logprobs.content
    ]
    assert logprobs == [e.logprob for e in whole.choices[0].logprobs.content], "log-probs differ"
    assert chunks[-1].usage is not None, "no usage chunk"
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert any(c.choices and c.choices[0].finish_reason for c in chunks), "no finish_reason"

    whole = client.completions.create(model=model, prompt="12+34=", max_tokens=5, temperature=0)
    pieces = client.completions.create(
        model=model, prompt="12+34=", max_tokens=5, temperature=0, stream=True
    )
    streamed = "".join(c.choices[0].text for c in pieces if c.choices)
    assert streamed == whole.choices[0].text, f"{streamed!r} != {whole.choices[0].text!r}"

    top = client.chat.completions.create(
        model=model, messages=messages, max_tokens=3, temperature=0, logprobs=True, top_logprobs=3
    )
    for entry in top.choices[0].logprobs.content:
        assert len(entry.top_logprobs) == 3, entry
        assert entry.top_logprobs[0].logprob == entry.logprob, entry
        assert entry.bytes is not None, entry

    try:
        client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=2,
            response_format={"type": "json_object"},
        )
    except openai.BadRequestError as error:
        assert "response_format" in str(error), str(error)
    else:
        raise AssertionError("response_format was not refused")
    print("ok")


if __name__ == "__main__":
    main()
