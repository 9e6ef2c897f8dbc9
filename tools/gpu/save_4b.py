#!/usr/bin/env python3
"""Writes the Qwen3-4B-shaped BF16 set (bench_cuda_ipc.qwen3_4b: the same tensors, same seed) as a
checkpoint folder, for the CLI push (the Java client) to send: OUT/model.safetensors + config.json.

usage: save_4b.py OUT_DIR [--layers 36]
"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda_ipc import qwen3_4b  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=36)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    tensors = {name: t.cpu() for name, t in qwen3_4b(a.layers)}
    save_file(tensors, os.path.join(a.out, "model.safetensors"))
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
                   "num_hidden_layers": a.layers, "torch_dtype": "bfloat16"}, f)
    print(f"{len(tensors)} tensors, {sum(t.nbytes for t in tensors.values()) / 1e9:.2f} GB in {a.out}")


if __name__ == "__main__":
    main()
