#!/usr/bin/env python3
"""Writes a synthetic BF16 checkpoint folder of about SIZE bytes (default 2 GiB) for benchmarks.

Shaped like a transformer's projection weights (4096 x 4096 tensors, 32 MiB each), gaussian values
of standard deviation 0.02 rounded to BF16, so no NaN or Inf. Needs numpy.

    python3 tools/bench/make_model.py OUT_DIR [--bytes 2GiB]
"""
import argparse
import json
import os
import struct

import numpy as np

UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def size(text):
    for unit in sorted(UNITS, key=len, reverse=True):
        if unit and text.endswith(unit):
            return int(float(text[: -len(unit)]) * UNITS[unit])
    return int(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--bytes", default="2GiB", type=size)
    a = p.parse_args()
    rows = cols = 4096
    per = rows * cols * 2
    count = max(1, a.bytes // per)
    rng = np.random.default_rng(7)
    block = (rng.standard_normal(rows * cols, dtype=np.float32) * 0.02).view(np.uint32)
    # round to nearest even into the upper 16 bits: BF16
    bf16 = ((block + 0x7FFF + ((block >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
    header, offset = {}, 0
    for i in range(count):
        header[f"model.layers.{i}.mlp.up_proj.weight"] = {
            "dtype": "BF16", "shape": [rows, cols], "data_offsets": [offset, offset + per]}
        offset += per
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _ in range(count):
            f.write(bf16)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"architectures": ["SyntheticForCausalLM"], "torch_dtype": "bfloat16"}, f)
    print(f"{a.out}: {count} tensors, {offset / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
