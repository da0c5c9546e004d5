#!/usr/bin/env python3
"""Renders the committed chat templates (SmolLM2-135M-Instruct's, from its GGUF, and
Qwen2.5-Instruct's) with transformers' own `apply_chat_template`, for single- and multi-turn
conversations with and without a system prompt, including a feedback turn after a wrong answer;
redraft's test (crates/redraft-tokenizer/tests/real_templates.rs) must render them identically.

    python3 -m venv .venv && .venv/bin/pip install transformers gguf
    .venv/bin/python scripts/chat_template_fixtures.py
"""

import json
from pathlib import Path

from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "crates/redraft-tokenizer/tests/data/templates"
# Any tokenizer will do: the templates use no special-token variables. This one is a fixture.
GGUF = ROOT / "tests/data/gguf/llama-f32.gguf"

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"}],
    [
        {"role": "user", "content": "What is 17 * 3? Put the answer in <answer></answer>."},
        {"role": "assistant", "content": "17 * 3 = 41, so <answer>41</answer>"},
        {"role": "user", "content": "Your answer is wrong: 17 * 3 is not 41. Check the multiplication and answer again."},
    ],
    [
        {"role": "system", "content": "You are a careful solver.\nThink step by step."},
        {"role": "user", "content": "Is Alice a knight or a knave?"},
        {"role": "assistant", "content": "Alice is a knave."},
        {"role": "user", "content": "Feedback: the statement of Bob was not used."},
        {"role": "assistant", "content": "Alice is a knight."},
        {"role": "user", "content": "Correct. Explain why in one sentence."},
    ],
]


def main() -> None:
    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    out = []
    for path in sorted(TEMPLATES.glob("*.jinja")):
        template = path.read_text()
        for messages in CONVERSATIONS:
            for generation_prompt in (False, True):
                text = tok.apply_chat_template(
                    messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
                )
                out.append({"template": path.name, "messages": messages,
                            "add_generation_prompt": generation_prompt, "text": text})
    (TEMPLATES / "renderings.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(out)} renderings")


if __name__ == "__main__":
    main()
