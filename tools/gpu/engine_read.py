#!/usr/bin/env python3
"""The engine side of a staged folder (issue 21, item 5): what an engine's disk loader does with
it, read every shard's tensors into GPU memory with safetensors, timed, best of --rounds.
usage: engine_read.py FOLDER [--rounds 3]
"""
import argparse, glob, os, time

import torch
from safetensors import safe_open

p = argparse.ArgumentParser()
p.add_argument("folder")
p.add_argument("--rounds", type=int, default=3)
a = p.parse_args()
files = sorted(glob.glob(os.path.join(a.folder, "*.safetensors")))
size = sum(os.path.getsize(f) for f in files)
best = None
for r in range(a.rounds):
    torch.cuda.synchronize()
    start = time.perf_counter()
    held = []
    for f in files:
        with safe_open(f, framework="pt", device="cuda") as st:
            held += [st.get_tensor(k) for k in st.keys()]
    torch.cuda.synchronize()
    s = time.perf_counter() - start
    best = s if best is None else min(best, s)
    print(f"round {r + 1}: {len(held)} tensors, {size / 1e9:.2f} GB from {len(files)} file(s) into"
          f" the GPU in {s:.3f} s ({size / s / 1e9:.1f} GB/s)")
    del held
print(f"engine-side read of {a.folder}: best {best:.3f} s")
