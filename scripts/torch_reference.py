#!/usr/bin/env python3
"""PyTorch/transformers CPU peer benchmark for a tiny randomly initialised Llama.

Measures, for each model size:
  (a) one RL-style train step: forward + token-level policy-gradient loss
      -(advantage * logprob_of_taken_token) masked mean + backward + AdamW step
  (b) autoregressive sampling with `model.generate` (KV cache, temperature 1.0,
      no top-k / top-p, no early stop)
and prints everything (workload definitions, FLOP formulas, results) as one JSON
object on stdout, so that a Rust (burn) implementation can copy the workloads.

Usage:  python scripts/torch_reference.py [--sizes tiny,big] [--attn sdpa|eager] [--out FILE]
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

# ----------------------------------------------------------------------------
# Workload definitions (copy these exactly into the Rust side)
# ----------------------------------------------------------------------------
MODELS = {
    "tiny": dict(vocab_size=64, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, intermediate_size=512, max_position_embeddings=256),
    "big": dict(vocab_size=32000, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=8, intermediate_size=2048, max_position_embeddings=256),
    # Qwen2.5-0.5B's layer shapes (grouped-query attention, 14 query heads over 2 key/value
    # heads), four layers and the big vocabulary.
    "gqa": dict(vocab_size=32000, hidden_size=896, num_hidden_layers=4, num_attention_heads=14,
                num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=256),
    # SmolLM2-135M's and Qwen2.5-0.5B's shapes (untied, no biases).
    "smollm2": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, intermediate_size=1536, max_position_embeddings=256),
    "qwen0.5b": dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                     num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=256),
}
COMMON_MODEL = dict(hidden_act="silu", rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
                    attention_bias=False, mlp_bias=False, initializer_range=0.02, dtype="float32",
                    bos_token_id=None, eos_token_id=None, pad_token_id=None)
TRAIN = {
    "tiny": dict(batch=16, seq=128, prompt_len=32, warmup=3, iters=10),
    "big": dict(batch=8, seq=256, prompt_len=64, warmup=3, iters=10),
    "gqa": dict(batch=8, seq=256, prompt_len=64, warmup=3, iters=10),
    "smollm2": dict(batch=4, seq=128, prompt_len=32, warmup=1, iters=3),
    "qwen0.5b": dict(batch=2, seq=128, prompt_len=32, warmup=1, iters=3),
}
GEN = {
    "tiny": dict(batch=16, prompt_len=32, new_tokens=64, warmup=1, iters=5),
    "big": dict(batch=8, prompt_len=64, new_tokens=128, warmup=1, iters=5),
    "gqa": dict(batch=8, prompt_len=64, new_tokens=128, warmup=1, iters=5),
    "smollm2": dict(batch=8, prompt_len=32, new_tokens=32, warmup=1, iters=5),
    "qwen0.5b": dict(batch=8, prompt_len=32, new_tokens=32, warmup=1, iters=5),
}
ADAMW = dict(lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
SEED = 1234

WORKLOAD_TEXT = {
    "model": "transformers LlamaForCausalLM, random init (Linear and Embedding weights ~ N(0, initializer_range=0.02), RMSNorm weights = 1), "
             "fp32, SwiGLU MLP, RoPE theta 1e4, no biases, untied lm_head, num_key_value_heads == num_attention_heads (tiny, big) or 2 of 14 (gqa, qwen0.5b) or 3 of 9 (smollm2)",
    "train_step": (
        "input_ids ~ Uniform{0..V-1}, shape [B, T] (fresh random batch per step, generated before timing). "
        "logits = model(input_ids).logits  [B, T, V] (fp32). "
        "logp = log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:])  [B, T-1] (log-prob of the taken next token). "
        "advantage ~ N(0,1) of shape [B], broadcast over tokens. "
        "mask[b, j] = 1 if (j + 1) >= prompt_len else 0 for j in 0..T-2 (i.e. only 'completion' targets, positions prompt_len..T-1). "
        "loss = sum(-(advantage[:, None] * logp) * mask) / sum(mask). "
        "Timed region = optimizer.zero_grad(set_to_none=True) + forward + loss + backward + AdamW.step() "
        "(torch.optim.AdamW, default CPU for-loop implementation). warmup steps untimed, then median over timed steps."
    ),
    "generation": (
        "prompt ~ Uniform{0..V-1}, shape [B, P], attention_mask all ones (no padding). "
        "model.generate(do_sample=True, temperature=1.0, top_k=0 (disabled), top_p=1.0, max_new_tokens=N, "
        "min_new_tokens=0, eos_token_id=None (no early stop possible), use_cache=True (DynamicCache)); "
        "output shape [B, P+N] asserted. Prefill computes logits only for the last position (logits_to_keep=1). "
        "tokens/s = B*N / wall time of the whole generate() call (prefill + N-1 decode forwards + sampling). "
        "warmup calls untimed, then median over timed calls (quiet mode as for train_step)."
    ),
}

FLOP_TEXT = {
    "notation": "d=hidden, L=layers, F=intermediate, V=vocab, B=batch, T=train seq, P=prompt len, N=new tokens",
    "matmul_params_per_layer": "Pl = 2*d*d + 2*d*kv + 3*d*F   (q,o + k,v of width kv = d*kv_heads/heads + gate,up,down)",
    "matmul_params": "Pm = L*Pl + d*V   (includes lm_head; excludes embedding lookup and RMSNorm weights)",
    "attn_fwd_per_token": "4*d*ctx per layer (QK^T: 2*d*ctx, AV: 2*d*ctx), ctx = number of keys attended (causal: query i attends i keys)",
    "forward_seq": "fwd(B,T) = B*(2*Pm*T + L*4*d*T*(T+1)/2)",
    "train": "train = 3*fwd(B,T)   (backward ~= 2x forward; optimizer/softmax/norm flops ignored)",
    "train_naive": "train_naive = 6*n_params*B*T   (all parameters incl. embedding, no attention term)",
    "gen_prefill": "prefill = B*(2*L*Pl*P + 2*d*V + L*4*d*P*(P+1)/2)   (lm_head only on last position)",
    "gen_decode": "decode = sum_{j=1..N-1} B*(2*Pm + L*4*d*(P+j))   (N-1 one-token forwards; token N needs no forward)",
    "gen": "gen = prefill + decode;  gen_naive = 2*n_params*B*(P+N)",
}


def flops(cfg, tr, gn, n_params):
    d, L, F, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = d * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    Pl = 2 * d * d + 2 * d * kv + 3 * d * F
    Pm = L * Pl + d * V
    B, T = tr["batch"], tr["seq"]
    fwd = B * (2 * Pm * T + L * 4 * d * T * (T + 1) // 2)
    train = 3 * fwd
    gb, P, N = gn["batch"], gn["prompt_len"], gn["new_tokens"]
    prefill = gb * (2 * L * Pl * P + 2 * d * V + L * 4 * d * P * (P + 1) // 2)
    decode = sum(gb * (2 * Pm + L * 4 * d * (P + j)) for j in range(1, N))
    return dict(
        matmul_params_per_layer=Pl, matmul_params=Pm,
        train_forward=fwd, train=train, train_naive=6 * n_params * B * T,
        gen_prefill=prefill, gen_decode=decode, gen=prefill + decode,
        gen_naive=2 * n_params * gb * (P + N),
    )


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return None


def sys_busy_s():
    """System-wide busy CPU seconds (all processes) from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal
        return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


class Contention:
    """Share of the machine's CPU capacity used by *other* processes during a region.
    other = (system busy - own process cpu) / (wall * ncpu). Jiffy resolution (10 ms)."""

    def __enter__(self):
        self.w0, self.c0, self.s0 = time.perf_counter(), time.process_time(), sys_busy_s()
        return self

    def __exit__(self, *a):
        w, c, s = time.perf_counter() - self.w0, time.process_time() - self.c0, sys_busy_s()
        self.other_cores = None if s is None or self.s0 is None else max(0.0, ((s - self.s0) - c) / w)
        self.own_cores = c / w


def wait_quiet(max_wait_s, thresh=0.25, window=2.0):
    """Wait (up to max_wait_s) until other processes use < thresh cores over a `window` s interval."""
    t0 = time.perf_counter()
    last = None
    while True:
        with Contention() as c:
            time.sleep(window)
        last = c.other_cores
        if last is None or last < thresh or time.perf_counter() - t0 > max_wait_s:
            return dict(waited_s=round(time.perf_counter() - t0, 1), other_cores_at_start=last)


class Timer:
    """Wall time, own process CPU time (cpu/wall ~= threads kept busy) and CPU used by *other* processes
    (in cores, from /proc/stat; > ~0.3 means the measurement was contended)."""

    def __enter__(self):
        self.w0, self.c0, self.s0 = time.perf_counter(), time.process_time(), sys_busy_s()
        return self

    def __exit__(self, *a):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0
        s = sys_busy_s()
        self.other = None if s is None or self.s0 is None else max(0.0, ((s - self.s0) - self.cpu) / self.wall)


def summarize(walls, cpus, others, quiet_thresh=0.3):
    out = dict(
        median_s=statistics.median(walls), min_s=min(walls), max_s=max(walls), mean_s=statistics.fmean(walls),
        all_s=[round(x, 6) for x in walls],
        cpu_over_wall_median=statistics.median(c / w for c, w in zip(cpus, walls)),
        other_procs_cores_per_iter=[None if o is None else round(o, 2) for o in others],
    )
    quiet = [w for w, o in zip(walls, others) if o is not None and o < quiet_thresh]
    out["quiet_iters"] = len(quiet)
    out["quiet_median_s"] = statistics.median(quiet) if quiet else None
    return out


def build_model(name, attn):
    cfg = dict(MODELS[name])
    torch.manual_seed(SEED)
    conf = LlamaConfig(**cfg, hidden_act="silu", rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       tie_word_embeddings=False, attention_bias=False, mlp_bias=False, initializer_range=0.02,
                       bos_token_id=None, eos_token_id=None, pad_token_id=None, use_cache=True)
    conf._attn_implementation = attn
    model = LlamaForCausalLM(conf).to(torch.float32)
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = 0  # only used for padding finished rows; none finish
    return cfg, conf, model


QUIET_THRESH = 0.3  # an iteration is "quiet" if other processes used < 0.3 cores during it


def timed_loop(step_fn, warmup, iters, quiet_mode, max_extra_s):
    """Run warmup untimed calls, then timed calls of step_fn(i) -> extra.
    quiet_mode: keep going (waiting for quiet between contended iterations) until `iters` quiet samples are
    collected or max_extra_s seconds have been spent beyond the first `iters` samples."""
    for i in range(warmup):
        step_fn(i)
    walls, cpus, others, extras = [], [], [], []
    i = warmup
    t_start = time.perf_counter()
    t_after_n = None
    while True:
        with Timer() as t:
            extra = step_fn(i)
        i += 1
        walls.append(t.wall)
        cpus.append(t.cpu)
        others.append(t.other)
        extras.append(extra)
        n_quiet = sum(1 for o in others if o is not None and o < QUIET_THRESH)
        if len(walls) >= iters and t_after_n is None:
            t_after_n = time.perf_counter()
        if not quiet_mode:
            if len(walls) >= iters:
                break
            continue
        if n_quiet >= iters:
            break
        if t_after_n is not None and time.perf_counter() - t_after_n > max_extra_s:
            break
        if t.other is not None and t.other >= QUIET_THRESH:
            wait_quiet(min(120.0, max_extra_s))
    return walls, cpus, others, extras, time.perf_counter() - t_start


def stats_block(walls, cpus, others, iters):
    s = summarize(walls, cpus, others)
    quiet = [w for w, o in zip(walls, others) if o is not None and o < QUIET_THRESH]
    if len(quiet) >= max(1, iters // 2):
        s["primary_s"], s["primary_kind"] = statistics.median(quiet), f"median of {len(quiet)} quiet iterations"
    else:
        s["primary_s"], s["primary_kind"] = statistics.median(walls), f"median of all {len(walls)} (CONTENDED)"
    return s


def bench_train(model, V, tr, adamw_impl="default", quiet_mode=False, max_extra_s=600):
    B, T, Pp = tr["batch"], tr["seq"], tr["prompt_len"]
    g = torch.Generator().manual_seed(SEED + 1)
    n = tr["warmup"] + tr["iters"]
    batches = [(torch.randint(0, V, (B, T), generator=g), torch.randn(B, generator=g)) for _ in range(n)]
    j = torch.arange(T - 1)
    mask = ((j + 1) >= Pp).float().unsqueeze(0).expand(B, T - 1)
    impl = {"default": {}, "foreach": dict(foreach=True), "fused": dict(fused=True)}[adamw_impl]
    opt = torch.optim.AdamW(model.parameters(), lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"],
                            weight_decay=ADAMW["weight_decay"], **impl)
    model.train()
    losses = []

    def step(i):
        ids, adv = batches[i % n]
        opt.zero_grad(set_to_none=True)
        with Timer() as t_f:
            logits = model(input_ids=ids, use_cache=False).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            loss = (-(adv.unsqueeze(1) * logp) * mask).sum() / mask.sum()
        with Timer() as t_b:
            loss.backward()
        with Timer() as t_o:
            opt.step()
        losses.append(loss.item())
        return (t_f.wall, t_b.wall, t_o.wall)

    cont = Contention().__enter__()
    walls, cpus, others, parts, span = timed_loop(step, tr["warmup"], tr["iters"], quiet_mode, max_extra_s)
    cont.__exit__()
    s = stats_block(walls, cpus, others, tr["iters"])
    s["series_wall_s"] = span
    s["other_procs_cores_during_series"] = cont.other_cores
    s["own_cores_during_series"] = cont.own_cores
    qparts = [p for p, o in zip(parts, others) if o is not None and o < QUIET_THRESH] or parts
    s["split_median_s"] = dict(forward_and_loss=statistics.median(p[0] for p in qparts),
                               backward=statistics.median(p[1] for p in qparts),
                               adamw_step=statistics.median(p[2] for p in qparts))
    s["split_from"] = "quiet iterations" if any(o is not None and o < QUIET_THRESH for o in others) \
        else "all iterations (contended)"
    s["tokens_per_step"] = B * T
    s["loss_tokens_per_step"] = int(mask.sum().item())
    s["tokens_per_s_primary"] = B * T / s["primary_s"]
    s["loss_first_last"] = [losses[0], losses[-1]]
    return s


def bench_gen(model, V, gn, quiet_mode=False, max_extra_s=600):
    B, P, N = gn["batch"], gn["prompt_len"], gn["new_tokens"]
    g = torch.Generator().manual_seed(SEED + 2)
    model.eval()
    n = gn["warmup"] + gn["iters"]
    prompts = [torch.randint(0, V, (B, P), generator=g) for _ in range(n)]

    def step(i):
        prompt = prompts[i % n]
        torch.manual_seed(SEED + 100 + i)
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                             temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=N, min_new_tokens=0,
                             eos_token_id=None, pad_token_id=0, use_cache=True)
        assert out.shape == (B, P + N), out.shape
        return None

    cont = Contention().__enter__()
    walls, cpus, others, _, span = timed_loop(step, gn["warmup"], gn["iters"], quiet_mode, max_extra_s)
    cont.__exit__()
    s = stats_block(walls, cpus, others, gn["iters"])
    s["series_wall_s"] = span
    s["other_procs_cores_during_series"] = cont.other_cores
    s["own_cores_during_series"] = cont.own_cores
    s["new_tokens_total"] = B * N
    s["tokens_per_s_primary"] = B * N / s["primary_s"]
    s["tokens_per_s_median_all"] = B * N / s["median_s"]
    s["tokens_per_s_best"] = B * N / s["min_s"]

    # Separate prefill-only measurement (one forward over the prompt with a fresh cache, last-position logits).
    def pre_step(i):
        with torch.no_grad():
            model(input_ids=prompts[i % n], use_cache=True, logits_to_keep=1)

    pw, pc, po, _, _ = timed_loop(pre_step, 1, max(5, gn["iters"]), quiet_mode, min(120, max_extra_s))
    ps = stats_block(pw, pc, po, max(5, gn["iters"]))
    s["prefill_only"] = dict(primary_s=ps["primary_s"], primary_kind=ps["primary_kind"], all_s=ps["all_s"],
                             other_procs_cores_per_iter=ps["other_procs_cores_per_iter"])
    s["decode_per_step_est_s"] = (s["primary_s"] - ps["primary_s"]) / max(1, N - 1)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,big")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-gen", action="store_true")
    ap.add_argument("--adamw", default="default", choices=["default", "foreach", "fused"],
                    help="torch.optim.AdamW implementation (default = per-parameter for-loop on CPU)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--wait-quiet", type=float, default=0.0,
                    help="before each measured series wait up to this many seconds for other load < 0.25 cores")
    ap.add_argument("--quiet-mode", type=int, default=1,
                    help="1: keep iterating (waiting between contended iterations) until `iters` quiet samples")
    ap.add_argument("--max-extra-s", type=float, default=600.0,
                    help="quiet mode: give up collecting quiet samples after this many extra seconds")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(False)
    res = dict(
        env=dict(python=sys.version.split()[0], torch=torch.__version__, transformers=transformers.__version__,
                 torch_cuda_build=torch.version.cuda, cpu_capability=torch.backends.cpu.get_cpu_capability(),
                 num_threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
                 machine=platform.machine(), nproc=os.cpu_count(), attn_implementation=args.attn,
                 loadavg_start=loadavg(), seed=SEED),
        workload_text=WORKLOAD_TEXT, flop_formulas=FLOP_TEXT, adamw=ADAMW, results={},
    )
    for name in args.sizes.split(","):
        t0 = time.perf_counter()
        cfg, conf, model = build_model(name, args.attn)
        n_params = sum(p.numel() for p in model.parameters())
        r = dict(model=dict(cfg, **{k: v for k, v in COMMON_MODEL.items()}), params=n_params,
                 params_embedding=model.model.embed_tokens.weight.numel(),
                 params_lm_head=model.lm_head.weight.numel(),
                 attn_impl_effective=model.config._attn_implementation,
                 config_effective={k: v for k, v in model.config.to_dict().items() if k in (
                     "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_parameters",
                     "tie_word_embeddings", "hidden_act", "initializer_range", "attention_bias", "mlp_bias", "dtype")},
                 train_workload=TRAIN[name], gen_workload=GEN[name])
        fl = flops(cfg, TRAIN[name], GEN[name], n_params)
        r["flops"] = fl
        if not args.skip_train:
            r["quiet_wait_train"] = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
            r["loadavg_before_train"] = loadavg()
            reset = reset_peak()
            tr = bench_train(model, cfg["vocab_size"], TRAIN[name], args.adamw, bool(args.quiet_mode),
                             args.max_extra_s)
            tr["peak_rss_bytes"] = peak_rss_bytes() if reset else None
            tr["adamw_impl"] = args.adamw
            tr["gflops_per_s_primary"] = fl["train"] / tr["primary_s"] / 1e9
            tr["gflops_per_s_best"] = fl["train"] / tr["min_s"] / 1e9
            tr["gflops_naive_per_s_primary"] = fl["train_naive"] / tr["primary_s"] / 1e9
            r["train"] = tr
        if not args.skip_gen:
            # fresh model for generation so AdamW updates do not matter (same weights as init)
            _, _, model = build_model(name, args.attn)
            r["quiet_wait_gen"] = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
            r["loadavg_before_gen"] = loadavg()
            reset = reset_peak()
            gr = bench_gen(model, cfg["vocab_size"], GEN[name], bool(args.quiet_mode), args.max_extra_s)
            gr["peak_rss_bytes"] = peak_rss_bytes() if reset else None
            gr["gflops_per_s_primary"] = fl["gen"] / gr["primary_s"] / 1e9
            gr["gflops_per_s_best"] = fl["gen"] / gr["min_s"] / 1e9
            gr["gflops_naive_per_s_primary"] = fl["gen_naive"] / gr["primary_s"] / 1e9
            gr["prefill_gflops_per_s"] = fl["gen_prefill"] / gr["prefill_only"]["primary_s"] / 1e9
            r["gen"] = gr
        r["wall_total_s"] = time.perf_counter() - t0
        res["results"][name] = r
        print(f"[{name}] done in {r['wall_total_s']:.1f}s", file=sys.stderr, flush=True)
    res["env"]["loadavg_end"] = loadavg()
    txt = json.dumps(res, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(txt + "\n")
    print(txt, flush=True)


if __name__ == "__main__":
    main()
