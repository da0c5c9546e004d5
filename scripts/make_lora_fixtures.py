#!/usr/bin/env python3
"""Write the PEFT LoRA adapters and reference log-probs used by redraft-model's LoRA parity tests,
and check that an adapter redraft wrote loads in peft to the log-probs it should.

Environment (any recent versions should do; the fixtures were made with torch 2.15,
transformers 5.24 and peft 0.21 from PyPI):

    python3 -m venv venv && venv/bin/pip install torch transformers peft safetensors

Usage (from the repository root):

    venv/bin/python scripts/make_lora_fixtures.py            # (re)write the fixtures
    venv/bin/python scripts/make_lora_fixtures.py --check ADAPTER_DIR --expect REFERENCE_JSON

The base model is the tiny Llama of scripts/make_model_fixtures.py
(crates/redraft-model/tests/fixtures/llama). Each fixture is a PEFT adapter folder exactly as
`PeftModel.save_pretrained` writes it (adapter_config.json + adapter_model.safetensors) with
random, non-zero A and B, plus `reference.json`: peft's fp32 per-token log-probs of the base
fixture's left-padded batch with the adapter applied (same layout as the base's reference.json).

`--check` loads ADAPTER_DIR (for example one that redraft saved) onto the same base with peft and
prints the max |log-prob difference| against the `logprobs` of REFERENCE_JSON over real tokens;
it exits non-zero when the difference exceeds 1e-4.

`--check ADAPTER_DIR --base MODEL_DIR --scores SCORES_JSONL --rows ROWS_JSONL` compares instead
with what `redraft score --model MODEL_DIR --adapter ADAPTER_DIR --input ROWS_JSONL` printed
(ROWS_JSONL: `{"tokens": [...]}` lines), row by row: for an adapter that `redraft train` wrote
on any base transformers can load.
"""
import argparse
import json
import os
import shutil
import sys

import torch
import peft
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaForCausalLM

BASE = "crates/redraft-model/tests/fixtures/llama"
SEED = 20261202

FIXTURES = {
    # Classic scaling alpha / r on a subset of the projections.
    "llama-lora": dict(r=4, lora_alpha=8, lora_dropout=0.05, use_rslora=False,
                       target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]),
    # rsLoRA scaling alpha / sqrt(r) on all seven projections.
    "llama-rslora": dict(r=8, lora_alpha=6, lora_dropout=0.0, use_rslora=True,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                         "up_proj", "down_proj"]),
}


def base_batch(base):
    with open(os.path.join(base, "reference.json")) as f:
        ref = json.load(f)
    return (torch.tensor(ref["input_ids"]), torch.tensor(ref["attention_mask"]),
            torch.tensor(ref["position_ids"]))


def logprobs(model, ids, mask, positions):
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
    logp_all = torch.log_softmax(logits, dim=-1)
    return logp_all[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def max_diff(ours, theirs, mask):
    worst = 0.0
    for row in range(len(ours)):
        for t in range(len(ours[row])):
            if mask[row][t] == 1:
                worst = max(worst, abs(ours[row][t] - theirs[row][t]))
    return worst


def make(out_dir, base):
    ids, mask, pos = base_batch(base)
    for i, (name, kwargs) in enumerate(FIXTURES.items()):
        torch.manual_seed(SEED + i)
        model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **kwargs))
        with torch.no_grad():  # B is zero at init: make both factors non-zero
            for pname, p in model.named_parameters():
                if "lora_A" in pname or "lora_B" in pname:
                    p.normal_(0.0, 0.2)
        path = os.path.join(out_dir, name)
        shutil.rmtree(path, ignore_errors=True)
        model.save_pretrained(path)
        for extra in ("README.md",):
            p = os.path.join(path, extra)
            if os.path.exists(p):
                os.remove(p)
        # Reload what was written, as a user of the adapter would.
        reloaded = PeftModel.from_pretrained(
            LlamaForCausalLM.from_pretrained(base, dtype=torch.float32), path)
        logp = logprobs(reloaded, ids, mask, pos)
        with open(os.path.join(path, "reference.json"), "w") as f:
            json.dump(dict(note=f"PEFT LoRA {kwargs} on {base}", peft=peft.__version__,
                           transformers=transformers.__version__, torch=torch.__version__,
                           logprobs=logp.tolist()), f)
        print("wrote", path)


def check(adapter, expect, base):
    ids, mask, pos = base_batch(base)
    model = PeftModel.from_pretrained(
        LlamaForCausalLM.from_pretrained(base, dtype=torch.float32), adapter)
    logp = logprobs(model, ids, mask, pos).tolist()
    with open(expect) as f:
        theirs = json.load(f)["logprobs"]
    diff = max_diff(logp, theirs, mask[:, :-1].tolist())
    print(f"{adapter}: peft {peft.__version__}, max |log-prob difference| vs {expect} = {diff:e}")
    return diff <= 1e-4


def check_scores(adapter, base, rows_path, scores_path):
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base, dtype=torch.float32),
                                      adapter)
    model.eval()
    with open(rows_path) as f:
        rows = [json.loads(line)["tokens"] for line in f if line.strip()]
    with open(scores_path) as f:
        scores = [json.loads(line)["logprobs"] for line in f if line.strip()]
    worst = 0.0
    for ids, ours in zip(rows, scores):
        ids = torch.tensor([ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
        theirs = logp[0, :-1].gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1).tolist()
        worst = max([worst] + [abs(a - b) for a, b in zip(ours, theirs)])
    print(f"{adapter} on {base}: peft {peft.__version__}, {len(rows)} rows, "
          f"max |log-prob difference| vs redraft score = {worst:e}")
    return worst <= 1e-4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="crates/redraft-model/tests/fixtures")
    ap.add_argument("--base", default=BASE)
    ap.add_argument("--check", metavar="ADAPTER_DIR")
    ap.add_argument("--expect", metavar="REFERENCE_JSON")
    ap.add_argument("--rows", metavar="ROWS_JSONL")
    ap.add_argument("--scores", metavar="SCORES_JSONL")
    args = ap.parse_args()
    if args.check and args.scores:
        sys.exit(0 if check_scores(args.check, args.base, args.rows, args.scores) else 1)
    if args.check:
        sys.exit(0 if check(args.check, args.expect, args.base) else 1)
    make(args.out, args.base)


if __name__ == "__main__":
    main()
