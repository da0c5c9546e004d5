#!/usr/bin/env python3
"""Write the tiny random checkpoints and transformers reference outputs used by the parity tests.

Usage (from the repository root; needs `pip install torch transformers safetensors`):

    python3 scripts/make_model_fixtures.py [--out crates/redraft-model/tests/fixtures]

For each fixture it writes a Hugging Face model directory (config.json + safetensors, exactly as
`save_pretrained` writes them) and `reference.json` with a left-padded batch of token ids, its
attention mask, the position ids transformers was given, and transformers' fp32 per-token
log-probs of each next token and per-position entropies. The tests read these files and need no
Python. Re-running the script with the same versions rewrites the same files.
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

SEED = 20261123


def batch(vocab, seq_len, pads, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (len(pads), seq_len), generator=g)
    mask = torch.ones_like(ids)
    for row, pad in enumerate(pads):
        ids[row, :pad] = 0
        mask[row, :pad] = 0
    # Left padding: positions count real tokens only, as `generate` computes them.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def reference(model, ids, mask, positions):
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def write(out_dir, name, model, ids, mask, positions, note, **save_kwargs):
    path = os.path.join(out_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    model.save_pretrained(path, **save_kwargs)
    for extra in ("generation_config.json",):
        p = os.path.join(path, extra)
        if os.path.exists(p):
            os.remove(p)
    # Reload what was written (bf16 files are rounded) so the reference matches the files exactly.
    cls = type(model)
    reloaded = cls.from_pretrained(path, dtype=torch.float32)
    logp, entropy = reference(reloaded, ids, mask, positions)
    ref = dict(
        note=note,
        transformers=transformers.__version__,
        torch=torch.__version__,
        input_ids=ids.tolist(),
        attention_mask=mask.tolist(),
        position_ids=positions.tolist(),
        # logprobs[b][t] = log p(ids[b][t+1] | ids[b][..=t]); meaningful where mask[b][t] == 1.
        logprobs=logp.tolist(),
        entropy=entropy.tolist(),
    )
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump(ref, f)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="crates/redraft-model/tests/fixtures")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # 1. Llama: grouped-query attention, untied head, default RoPE, f32 weights.
    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                      tie_word_embeddings=False, attention_bias=False, initializer_range=0.1,
                      bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).float()
    ids, mask, pos = batch(96, 24, [0, 5, 11], SEED + 1)
    write(args.out, "llama", model, ids, mask, pos, "Llama, GQA 4/2, untied, f32")

    # 2. Llama 3 style: llama3 RoPE frequency scaling, weights saved in bf16.
    torch.manual_seed(SEED + 2)
    cfg = LlamaConfig(vocab_size=80, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                      rms_norm_eps=1e-5,
                      rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 16},
                      tie_word_embeddings=False, attention_bias=False, initializer_range=0.1)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    ids, mask, pos = batch(80, 40, [0, 13], SEED + 3)
    write(args.out, "llama3-bf16", model, ids, mask, pos, "Llama 3 RoPE scaling, MQA, bf16 file")

    # 3. Qwen2: q/k/v biases, tied embeddings, rope theta 1e6, sharded safetensors, and the
    #    older config layout (top-level rope_theta) that most published checkpoints use.
    torch.manual_seed(SEED + 4)
    cfg = Qwen2Config(vocab_size=112, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                      tie_word_embeddings=True, initializer_range=0.1, use_sliding_window=False)
    model = Qwen2ForCausalLM(cfg).float()
    with torch.no_grad():  # non-zero biases so that a missed bias shows up in the parity test
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0.0, 0.1)
    ids, mask, pos = batch(112, 20, [3, 0, 8, 1], SEED + 5)
    path = write(args.out, "qwen2-sharded", model, ids, mask, pos,
                 "Qwen2, biases, tied embeddings, sharded, legacy config layout", max_shard_size="40KB")
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        conf = json.load(f)
    rope = conf.pop("rope_parameters")
    conf["rope_theta"] = rope["rope_theta"]
    conf["rope_scaling"] = None
    with open(cfg_path, "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
    print("wrote fixtures to", args.out)


if __name__ == "__main__":
    main()
