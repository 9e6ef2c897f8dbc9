#!/usr/bin/env python3
"""A real consumer check: PyTorch loads a staged FP8 or INT4 folder with safetensors.torch,
dequantizes per docs/quantization.md and reports, per quantized tensor, the max and RMS relative error
against the BF16 input.

usage: consumer_check.py BF16_DIR QUANTIZED_DIR
"""
import glob, json, os, sys
import torch
from safetensors.torch import load_file


def load_dir(d):
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        out.update(load_file(f))
    return out


def main():
    src, q = load_dir(sys.argv[1]), load_dir(sys.argv[2])
    qc = json.load(open(os.path.join(sys.argv[2], "config.json")))["quantization_config"]
    worst = 0.0
    rows = 0
    for name, w in sorted(src.items()):
        w = w.float()
        if qc["quant_method"] == "fp8" and name + "_scale_inv" in q:
            codes, s = q[name].float(), q[name + "_scale_inv"]
            n, k = codes.shape
            s_full = s.repeat_interleave(128, 0)[:n].repeat_interleave(128, 1)[:, :k]
            deq = codes * s_full
        elif qc["quant_method"] == "compressed-tensors" and name.endswith(".weight") \
                and name[:-7] + ".weight_packed" in q:
            base = name[:-7]
            packed, scale = q[base + ".weight_packed"], q[base + ".weight_scale"].float()
            n, k8 = packed.shape
            shifts = torch.arange(0, 32, 4, dtype=torch.int32)
            nib = ((packed.unsqueeze(-1) >> shifts) & 0xF).reshape(n, k8 * 8).float() - 8
            g = (k8 * 8) // scale.shape[1]
            deq = nib * scale.repeat_interleave(g, 1)
        else:
            continue
        denom = w.abs().max().clamp_min(1e-30)
        err = (deq - w)
        rel_max = (err.abs().max() / denom).item()
        rel_rms = (err.pow(2).sum() / w.pow(2).sum().clamp_min(1e-30)).sqrt().item()
        worst = max(worst, rel_rms)
        rows += 1
        print(f"{name:55s} max|err|/max|w| {rel_max:.3e}  rel RMS {rel_rms:.3e}")
    print(f"{rows} quantized tensors dequantized by PyTorch; worst rel RMS {worst:.3e}")


if __name__ == "__main__":
    main()
