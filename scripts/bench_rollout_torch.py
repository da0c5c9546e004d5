#!/usr/bin/env python3
"""The PyTorch + transformers side of `cargo xtask bench rollout`: group sampling with `generate`.

xtask passes the whole specification as JSON (the models' config.json as redraft writes it, and
the workloads), so both sides run the same shapes with the same settings:

    python3 scripts/bench_rollout_torch.py --spec '{"seed": 1234, "threads": [2, 1], "warmup": 1,
        "iters": 5, "min_timed_s": 1.0, "max_iters": 1000, "models": {"tiny": {<config.json>}},
        "workloads": [{"name": "...", "model": "tiny", "prompts": 4, "group": 8,
                       "prompt_len": 32, "new_tokens": 64}]}'

For each workload: B = `prompts` prompts of `prompt_len` uniform random token ids (fresh for every
call, drawn before timing; no padding), sampled `group` times each with

    model.generate(input_ids, attention_mask=ones, do_sample=True, temperature=1.0, top_k=0,
                   top_p=1.0, num_return_sequences=group, max_new_tokens=N, min_new_tokens=0,
                   eos_token_id=None, pad_token_id=0, use_cache=True)

on a random-init LlamaForCausalLM (fp32, SDPA attention, seed `seed`). `warmup` untimed calls,
then at least `iters` timed ones (more while they add up to less than `min_timed_s` seconds, up
to `max_iters`), with `torch.set_num_threads(t)` for each `t` of `threads` in turn (the
first is the reference setting; one thread is added because PyTorch's OpenMP threads slow down
many-fold when another process holds one of two cores). Prints one JSON object on stdout: the
environment and, per workload name and thread count, the median and all wall times in seconds,
the CPU other processes used meanwhile (in cores, from /proc/stat; None where unreadable) and
the process's peak resident memory over the calls (`peak_rss_bytes`, the model included: the
high-water mark is reset through /proc/self/clear_refs first; None where that fails).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from peak_memory import peak_rss_bytes, reset_peak


def busy_s():
    """CPU seconds all processes have used (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal
        return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def build_model(config_json, seed):
    """A random-init LlamaForCausalLM for a config.json dict, with no stop or special tokens."""
    conf = LlamaConfig.from_dict(dict(config_json, use_cache=True))
    conf._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = LlamaForCausalLM(conf).to(torch.float32)
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = 0  # only pads finished rows; none finish
    return model


def bench_group(model, vocab, w, seed, warmup, iters, min_timed_s, max_iters):
    """Wall times of the timed group-sampling calls after `warmup` untimed ones (at least `iters`
    and `min_timed_s` seconds in all, at most `max_iters`), and the cores other processes kept
    busy from the first timed call to the last (None if unknown)."""
    b, g, p, n = w["prompts"], w["group"], w["prompt_len"], w["new_tokens"]
    gen = torch.Generator().manual_seed(seed + 3)
    times, series_start = [], None
    i = 0
    while len(times) < max_iters and (len(times) < iters or sum(times) < min_timed_s):
        prompt = torch.randint(0, vocab, (b, p), generator=gen)
        mask = torch.ones_like(prompt)
        torch.manual_seed(seed + 100 + i)
        if i == warmup:
            series_start = (time.perf_counter(), busy_s(), time.process_time())
        start = time.perf_counter()
        out = model.generate(input_ids=prompt, attention_mask=mask, do_sample=True,
                             temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=g,
                             max_new_tokens=n, min_new_tokens=0, eos_token_id=None,
                             pad_token_id=0, use_cache=True)
        elapsed = time.perf_counter() - start
        assert out.shape == (b * g, p + n), out.shape
        if i >= warmup:
            times.append(elapsed)
        i += 1
    others = None
    if series_start is not None:
        wall0, busy0, own0 = series_start
        busy1, own1 = busy_s(), time.process_time()
        if busy0 is not None and busy1 is not None:
            others = max(0.0, (busy1 - busy0 - (own1 - own0)) / (time.perf_counter() - wall0))
    return times, others


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", required=True, help="the JSON specification (see the docstring)")
    args = ap.parse_args()
    spec = json.loads(args.spec)

    threads = spec.get("threads", [2])
    seed, warmup, iters = spec["seed"], spec["warmup"], spec["iters"]
    min_timed_s, max_iters = spec.get("min_timed_s", 0.0), spec.get("max_iters", iters)
    res = dict(
        env=dict(python=sys.version.split()[0], torch=torch.__version__,
                 transformers=transformers.__version__, num_threads=threads,
                 cpu_capability=torch.backends.cpu.get_cpu_capability(),
                 machine=platform.machine(), nproc=os.cpu_count(), attn_implementation="sdpa",
                 seed=seed, warmup=warmup, iters=iters, min_timed_s=min_timed_s,
                 max_iters=max_iters),
        results={},
    )
    models = {}
    for t in threads:
        torch.set_num_threads(t)
        for w in spec["workloads"]:
            name = w["model"]
            if name not in models:
                models[name] = build_model(spec["models"][name], seed)
            t0 = time.perf_counter()
            reset = reset_peak()
            times, others = bench_group(models[name], spec["models"][name]["vocab_size"], w,
                                        seed, warmup, iters, min_timed_s, max_iters)
            entry = res["results"].setdefault(w["name"], dict(workload=w, threads={}))
            entry["threads"][str(t)] = dict(median_s=statistics.median(times),
                                            all_s=[round(x, 6) for x in times],
                                            other_cores=others,
                                            peak_rss_bytes=peak_rss_bytes() if reset else None)
            print(f"[{w['name']}, {t} threads] {time.perf_counter() - t0:.1f}s", file=sys.stderr,
                  flush=True)
    print(json.dumps(res, indent=1), flush=True)


if __name__ == "__main__":
    main()
