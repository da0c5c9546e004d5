"""Writes configs/data/word_problems.jsonl: one-step addition and subtraction word problems with
small numbers, `{"problem", "answer"}` lines that redraft reads as a math dataset (answers checked
by equivalence; a response without `\\boxed{}` is judged by its final number). The task of the
`smollm2` experiment preset. Deterministic: `python3 scripts/make_word_problems.py`."""

import json
import pathlib
import random

NAMES = ["Sam", "Mia", "Tom", "Ana", "Leo", "Eva", "Ben", "Zoe", "Max", "Ivy"]
THINGS = ["apples", "books", "coins", "pencils", "stickers", "marbles", "cards", "shells"]

ADD = [
    "{n} has {a} {t}. {p} gets {b} more {t}. How many {t} does {n} have now?",
    "There are {a} {t} in a box and {b} {t} on the table. How many {t} are there in all?",
    "{n} found {a} {t} on Monday and {b} {t} on Tuesday. How many {t} did {n} find?",
]
# Without it the model, told to think step by step (the math prompt's suffix), rambles past its
# answer: start pass@1 0.05 at temperature 0.7 on 16 problems x 4 samples, 64 new tokens.
ASK = " Answer in one short sentence."

SUB = [
    "{n} has {a} {t}. {p} gives away {b} {t}. How many {t} does {n} have left?",
    "There were {a} {t} in a jar. {n} took {b} of them. How many {t} are in the jar now?",
]


def problem(rng):
    n = rng.choice(NAMES)
    p = "She" if n in {"Mia", "Ana", "Eva", "Zoe", "Ivy"} else "He"
    t = rng.choice(THINGS)
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    if rng.random() < 0.5:
        return rng.choice(ADD).format(n=n, p=p, t=t, a=a, b=b) + ASK, a + b
    a, b = max(a, b), min(a, b)
    return rng.choice(SUB).format(n=n, p=p, t=t, a=a, b=b) + ASK, a - b


def main():
    rng = random.Random(0)
    seen, lines = set(), []
    while len(lines) < 2000:
        text, answer = problem(rng)
        if text not in seen:
            seen.add(text)
            lines.append(json.dumps({"problem": text, "answer": str(answer)}))
    out = pathlib.Path(__file__).resolve().parent.parent / "configs/data/word_problems.jsonl"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} problems to {out}")


if __name__ == "__main__":
    main()
