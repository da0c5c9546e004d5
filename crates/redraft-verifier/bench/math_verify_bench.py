#!/usr/bin/env python3
"""Times Math-Verify on the conformance set and prints one JSON object.

Usage: math_verify_bench.py [CASES.jsonl] [--min-seconds S]

Same protocol as redraft_verifier::bench::conformance_throughput: verify every (gold, pred)
case, repeat whole passes until at least S seconds have passed (one pass minimum),
single-threaded, and report verdicts per second and agreement with the expected labels.
Needs `pip install math-verify`. Math-Verify's own per-call timeouts are left at defaults.
"""

import argparse
import json
import pathlib
import sys
import time


def main() -> int:
    here = pathlib.Path(__file__).resolve()
    default = here.parents[1] / "tests" / "data" / "conformance" / "math_answer_equivalence.jsonl"
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="?", default=str(default))
    ap.add_argument("--min-seconds", type=float, default=2.0)
    args = ap.parse_args()
    try:
        from math_verify import parse, verify
    except ImportError:
        print(json.dumps({"error": "math-verify is not installed (pip install math-verify)"}))
        return 2
    cases = [json.loads(l) for l in open(args.cases, encoding="utf-8") if l.strip()]

    def check(c):
        try:
            return bool(verify(parse(c["gold"]), parse(c["pred"])))
        except Exception:  # noqa: BLE001 - a crash counts as "not equivalent"
            return False

    start = time.perf_counter()
    passes = 0
    agree = 0
    while True:
        for c in cases:
            ok = check(c)
            if passes == 0 and ok == c["expected"]:
                agree += 1
        passes += 1
        if time.perf_counter() - start >= args.min_seconds or not cases:
            break
    seconds = time.perf_counter() - start
    verdicts = passes * len(cases)
    print(json.dumps({
        "tool": "math-verify",
        "cases": len(cases),
        "passes": passes,
        "verdicts": verdicts,
        "seconds": seconds,
        "verdicts_per_second": verdicts / seconds if seconds > 0 else 0.0,
        "agreement": agree / len(cases) if cases else 0.0,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
