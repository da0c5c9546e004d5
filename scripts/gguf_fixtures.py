#!/usr/bin/env python3
"""Writes the GGUF fixtures of redraft-gguf's tests with the `gguf` package (llama.cpp's own
Python library): one small file per tensor type, holding a tensor `x` in that type and a tensor
`expected` with gguf-py's own dequantization of `x` in F32, so the Rust reader is checked
against the reference implementation.

    pip install gguf numpy
    python3 scripts/gguf_fixtures.py   # writes crates/redraft-gguf/tests/data/*.gguf
"""

from pathlib import Path

import gguf
import numpy as np
from gguf.quants import dequantize, quantize

OUT = Path(__file__).resolve().parent.parent / "crates/redraft-gguf/tests/data"
Q = gguf.GGMLQuantizationType
ROWS, COLS = 3, 512


def quantized(qtype: "Q", rng: np.random.Generator) -> np.ndarray:
    """Bytes of ROWS x COLS values in `qtype`: quantized from random floats where gguf-py can
    quantize, else random blocks whose f16 scale fields are set to sane values."""
    values = rng.normal(0.0, 1.0, size=(ROWS, COLS)).astype(np.float32)
    try:
        return quantize(values, qtype)
    except (NotImplementedError, gguf.quants.QuantError):
        pass
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(ROWS, COLS // block_elems, block_bytes), dtype=np.uint8)
    scale = lambda: np.frombuffer(np.float16(rng.uniform(0.01, 0.1)).tobytes(), np.uint8)  # noqa: E731
    for row in blocks:
        for block in row:
            if qtype in (Q.Q4_K, Q.Q5_K):  # d, dmin first
                block[0:2], block[2:4] = scale(), scale()
            elif qtype == Q.Q6_K:  # d last
                block[208:210] = scale()
    return blocks.reshape(ROWS, -1)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for qtype in [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K]:
        data = quantized(qtype, rng)
        expected = dequantize(data, qtype).astype(np.float32)
        writer = gguf.GGUFWriter(OUT / f"{qtype.name.lower()}.gguf", arch="llama")
        writer.add_string("fixture.type", qtype.name)
        writer.add_tensor("x", data, raw_dtype=qtype)
        writer.add_tensor("expected", expected)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        print(f"{qtype.name}: {data.nbytes} bytes, expected shape {expected.shape}")


if __name__ == "__main__":
    main()
