"""Writes the reasoning-gym conformance fixture of redraft's verifier.

For each family redraft scores as reasoning-gym does (knights_knaves, binary_matrix,
shortest_path, countdown, basic_arithmetic) it generates problems with reasoning-gym itself and,
for each problem, a spread of responses: right, wrong, partial, badly formatted, empty, with extra
text, and with several or unclosed <answer> tags. Each case records reasoning-gym's reward,
``score_answer(extract_answer(response), entry)``, the way reasoning-gym's own evaluation scores
a completion. One JSON line per problem, as reasoning-gym exports it plus its cases:

    {"question", "answer", "metadata", "cases": [{"response", "extracted", "score"}, ...]}

with the score as a string (Python's repr of the float, which Rust parses back exactly).

Output: crates/redraft-verifier/tests/data/reasoning_gym/cases.jsonl (read by the test
crates/redraft-verifier/tests/reasoning_gym.rs, which requires exact agreement on every case).

Recreate the environment from PyPI:

    python3.11 -m venv venv
    venv/bin/pip install reasoning-gym==0.1.19 transformers torch gguf
    venv/bin/python scripts/reasoning_gym_fixtures.py

(transformers, torch and gguf are for scripts/chat_template_fixtures.py; this script needs only
reasoning-gym.)
"""

import json
import random
from pathlib import Path

import reasoning_gym
from reasoning_gym.utils import extract_answer

OUT = Path(__file__).resolve().parent.parent / "crates/redraft-verifier/tests/data/reasoning_gym/cases.jsonl"
PROBLEMS = 20


def tag(a):
    return f"<answer>{a}</answer>"


def wrap_variants(a):
    """Ways of delivering the answer text `a`, well and badly formatted."""
    return [
        tag(a),
        f"Let me think.\n<think>steps</think>\n<answer> {a} </answer>",
        f"<answer>\n{a}\n</answer>\nDone.",
        a,  # no tags: extract_answer gives None
        f"<answer>wrong</answer> then <answer>{a}</answer>",  # the last tag counts
        f"<answer>{a}</answer> then <answer>wrong</answer>",
        f"<answer>{a}",  # unclosed
        f"<Answer>{a}</Answer>",  # case matters
        f"<answer>The answer is {a}.</answer>",  # extra text inside
    ]


def kk_cases(entry, rng):
    names = entry["metadata"]["names"]
    sol = entry["metadata"]["solution"]
    terms = entry["metadata"]["knight_knave_terms"]
    right = entry["answer"]

    def say(values, sep=", and ", role_case=str):
        parts = [
            f"{n} is {role_case(terms['a_knight'] if v else terms['a_knave'])}" for n, v in zip(names, values)
        ]
        return sep.join(parts)

    flipped = [not v for v in sol]
    one_wrong = list(sol)
    one_wrong[0] = not one_wrong[0]
    answers = [
        right,
        say(sol, sep=", "),
        say(list(reversed(sol)), sep=" and ") if len(set(sol)) > 1 else say(sol, sep=" and "),
        say(sol, sep="; "),
        say(sol).upper(),
        "(" + say(sol, sep=") (") + ")",
        ", ".join(f"{n}: {terms['knight'] if v else terms['knave']}" for n, v in zip(names, sol)),
        say(flipped),
        say(one_wrong),
        say(sol[:-1]) if len(sol) > 1 else "",
        say(sol) + f", and Zed is {terms['a_knight']}",
        f"{names[0]} is {terms['a_knight']}",
        "knight knave",
        "",
        "   ",
        "I cannot tell.",
        say(sol).replace(" and ", " and and "),
    ]
    out = [tag(a) for a in answers]
    out += wrap_variants(right)
    out.append("")
    return out


def bm_cases(entry, rng):
    right = entry["answer"]
    sol = entry["metadata"]["solution"]
    bumped = [row[:] for row in sol]
    bumped[0][0] += 1
    fmt = lambda m: "\n".join(" ".join(str(x) for x in r) for r in m)
    answers = [
        right,
        str(sol),  # a Python list literal: 0.1 in reasoning-gym
        json.dumps(sol),
        str([tuple(r) for r in sol]),
        str(tuple(tuple(r) for r in sol)),
        "[" + ",\n".join(str(r) for r in sol) + "]",
        str(bumped),
        fmt(bumped),
        right.replace("\n", " \n"),
        right.replace(" ", ","),
        right.replace("\n", ";"),
        right + "\n",
        str([[str(x) for x in r] for r in sol]),
        str([[float(x) for x in r] for r in sol]),
        str(sol)[:-1],
        "[[" + "]]",
        "",
        "no idea",
        str([[-x for x in r] for r in sol]),
        str([[+x for x in r] for r in sol]).replace("[", "[+", 1),
    ]
    out = [tag(a) for a in answers]
    out += wrap_variants(right)
    out.append("")
    return out


def sp_cases(entry, rng):
    right = entry["answer"]
    moves = right.split()
    answers = [right, right.upper(), "  " + right + "  ", right.replace(" ", ", "), right.replace(" ", "  ")]
    if right != "infeasible":
        # A longer valid path: wander off and back on the first step if possible.
        back = {"up": "down", "down": "up", "left": "right", "right": "left"}
        answers.append(" ".join([moves[0], back[moves[0]]] + moves))
        answers.append(" ".join(moves[:-1]))
        answers.append(" ".join(moves + [moves[-1]]))
        answers.append(" ".join(reversed(moves)))
        answers.append("infeasible")
        answers.append(" ".join(m[0] for m in moves))
        answers.append(" ".join(moves + ["up", "down"]))
    else:
        answers += ["right", "up down", "Infeasible", "no path"]
    answers += ["", "\n", "north", right + " done"]
    out = [tag(a) for a in answers]
    out += wrap_variants(right)
    out.append("")
    return out


def cd_cases(entry, rng):
    right = entry["answer"]
    nums = entry["metadata"]["numbers"]
    target = entry["metadata"]["target"]
    answers = [
        right,
        right.replace(" ", ""),
        f"({right})",
        f"{right} = {target}",
        " + ".join(str(n) for n in nums),
        " * ".join(str(n) for n in nums),
        " + ".join(str(n) for n in nums[:-1]),
        " + ".join(str(n) for n in nums) + " + 1",
        right.replace("*", "×"),
        right.replace("*", "x"),
        f"{right} + 0*{nums[0]}",
        f"{right} + 0",
        f"{right} + {nums[0]} - {nums[0]}",
        f"{right} + {nums[0]}/0",
        f"{right} + 0/0",
        f"{right} + ({nums[0]} - {nums[0]})/0",
        f"{right} * 1.0",
        f"({right}) ** 1",
        f"{right} // 1",
        f"{right} + 2^2",
        f"{right} + 1/100000000",
        f"{right} + 1/1000",
        "(" + right,
        "",
        "x + y",
        str(target),
        f"{right}\n",
        f"{right}.",
        f"-(-({right}))",
    ]
    out = [tag(a) for a in answers]
    out += wrap_variants(right)
    out.append("")
    return out


def ba_cases(entry, rng):
    right = entry["answer"]
    v = int(right)
    answers = [
        right,
        str(v + 1),
        str(-v) if v != 0 else "1",
        f"{right}.0",
        f"The answer is {right}",
        f"{right}{right}",
        f" {right}",
        f"+{right}" if v >= 0 else right.replace("-", "- "),
        f"{v:,}",
        "",
        "unknown",
        f"{right} ✓",
        f"x={right}",
    ]
    out = [tag(a) for a in answers]
    out += wrap_variants(right)
    out.append("")
    return out


FAMILIES = {
    "knights_knaves": (kk_cases, {"n_people": 3}),
    "binary_matrix": (bm_cases, {"min_n": 2, "max_n": 5}),
    "shortest_path": (sp_cases, {"min_rows": 3, "max_rows": 5, "min_cols": 3, "max_cols": 5}),
    "countdown": (cd_cases, {}),
    "basic_arithmetic": (ba_cases, {}),
}


def main():
    OUT.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, (cases, config) in FAMILIES.items():
        data = reasoning_gym.create_dataset(name, size=PROBLEMS, seed=42, **config)
        rng = random.Random(42)
        for entry in data:
            entry = json.loads(json.dumps(entry))  # as exported: tuples become lists
            scored = []
            for response in cases(entry, rng):
                extracted = extract_answer(response)
                score = data.score_answer(extracted, entry)
                # The score as Python's repr, so that it is read back bit for bit.
                scored.append({"response": response, "extracted": extracted, "score": repr(float(score))})
            lines.append({**entry, "cases": scored})
    with OUT.open("w") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"wrote {len(lines)} problems, {sum(len(l['cases']) for l in lines)} cases to {OUT}")


if __name__ == "__main__":
    main()
