#!/usr/bin/env python3
"""The project's reference generator: writes the golden fixtures under testdata/golden/.

It is an oracle independent of the Java code: PyTorch on the CPU (where division is correctly
rounded; on CUDA, PyTorch divides by a scalar through its reciprocal and gets other bytes) and
PyTorch's own float8_e4m3fn conversion, written from docs/quantization.md.

usage:
  make_golden.py all OUT_ROOT          writes OUT_ROOT/bf16 (the input) and the four outputs
  make_golden.py quantize IN OUT_ROOT  the four outputs of any BF16 folder (to check this
                                       generator against another golden set, e.g. ../shared/golden)

The outputs are OUT_ROOT/{fp8,fp8_ue8m0,int4_g128,int4_g32}. Needs torch, numpy, safetensors.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

torch.set_num_threads(1)  # the bytes must not depend on it; one thread keeps that obvious

# --- selection rules (docs/quantization.md, "Which tensors are quantized") -------------------
FP8_EXCLUDED = ["layernorm", "embed", "router", "mlp.gate.", "norm", "lm_head", "eh_proj",
                "weights_proj", "conv1d", "A_log", "dt_bias", "in_proj_a", "in_proj_b"]
INT4_DEFAULT_IGNORE = ["re:.*lm_head.*", "re:.*norm.*", "re:.*embed.*", "re:.*self_attn.*",
                       "re:.*shared_experts.*", r"re:.*mlp\.(gate|up|gate_up|down)_proj.*",
                       r"re:.*mlp\.gate\.*"]
FLOATS = (torch.bfloat16, torch.float16, torch.float32)


def module_name(name):
    return name[:-len(".weight")] if name.endswith(".weight") else name


def fp8_selected(name, t):
    return (t.dim() == 2 and t.dtype in FLOATS and "weight" in name
            and not any(s in name for s in FP8_EXCLUDED))


def int4_ignored(module):
    import re
    for rule in INT4_DEFAULT_IGNORE:
        if rule.startswith("re:"):
            if re.match(rule[3:], module):
                return True
        elif module == rule or module.startswith(rule + "."):
            return True
    return False


# --- arithmetic (docs/quantization.md) ------------------------------------------------------
def f32(x):
    return torch.tensor(x, dtype=torch.float32)


def full(like, value):
    # a materialized tensor, never a broadcast scalar: no kernel may turn x / s into x * (1/s)
    return torch.full(like.shape, value, dtype=torch.float32)


def block_amax_bf16(w):
    """max |w| over each 128x128 block, in BF16 (exact); edge blocks partial (zero padding)."""
    n, k = w.shape
    nb, kb = -(-n // 128), -(-k // 128)
    padded = torch.zeros((nb * 128, kb * 128), dtype=torch.bfloat16)
    padded[:n, :k] = w
    return padded.abs().view(nb, 128, kb, 128).amax(dim=(1, 3))


def per_element(blocks, n, k):
    return blocks.repeat_interleave(128, 0).repeat_interleave(128, 1)[:n, :k].contiguous()


def fp8_block(w):
    n, k = w.shape
    amax = torch.maximum(block_amax_bf16(w), torch.tensor(1e-12, dtype=torch.bfloat16)).float()
    s = amax / full(amax, 448.0)
    q = (w.float() / per_element(s, n, k)).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return q, s


def fp8_block_ue8m0(w):
    n, k = w.shape
    amax = block_amax_bf16(w).float()
    sf = torch.maximum(amax, full(amax, float(f32(1e-4)))) / full(amax, 448.0)
    mant, exp = torch.frexp(sf)  # sf = mant * 2^exp, mant in [0.5, 1)
    s = torch.where(mant == 0.5, sf, torch.ldexp(torch.ones_like(sf), exp))
    inv = full(s, 1.0) / s  # exact: s is a power of two
    q = (w.float() * per_element(inv, n, k)).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return q, s


ONE_SEVENTH = f32(1.0 / 7.0)
assert struct.unpack("<I", struct.pack("<f", float(ONE_SEVENTH)))[0] == 0x3E124925


def int4_group(w, g):
    n, k = w.shape
    x = w.float().view(n, k // g, g)
    amax = x.abs().amax(dim=-1)
    s = torch.maximum(amax * torch.full(amax.shape, float(ONE_SEVENTH)),
                      full(amax, float(f32(1e-5))))
    q = torch.round(x / s.unsqueeze(-1).expand(n, k // g, g).contiguous())  # half to even
    q = q.clamp(-7, 7).view(n, k)
    u = (q + 8).to(torch.int64).numpy().astype(np.uint32).reshape(n, k // 8, 8)
    packed = np.zeros((n, k // 8), dtype=np.uint32)
    for j in range(8):
        packed |= u[:, :, j] << np.uint32(4 * j)
    return (torch.from_numpy(packed.view(np.int32).copy()), s.to(torch.bfloat16),
            torch.tensor([n, k], dtype=torch.int32))


# --- folders ----------------------------------------------------------------------------------
def read_folder(d):
    """[(shard file, {name: tensor} in file order)] in the index's shard order."""
    idx = os.path.join(d, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx)
             else sorted(f for f in os.listdir(d) if f.endswith(".safetensors")))
    shards = []
    for fn in files:
        with safe_open(os.path.join(d, fn), framework="pt") as f:
            shards.append((fn, {name: f.get_tensor(name) for name in f.keys()}))
    return shards


def write_folder(out, shards, config, source=None):
    os.makedirs(out)
    weight_map, total = {}, 0
    for fn, tensors in shards:
        save_file(tensors, os.path.join(out, fn), metadata={"format": "pt"})
        for name, t in tensors.items():
            weight_map[name] = fn
            total += t.numel() * t.element_size()
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
                  f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    if source:
        for fn in sorted(os.listdir(source)):
            if (not fn.endswith(".safetensors") and fn not in ("config.json", "model.safetensors.index.json")
                    and os.path.isfile(os.path.join(source, fn))):
                shutil.copyfile(os.path.join(source, fn), os.path.join(out, fn))


def convert(src, out, fmt, group=128):
    shards, passthrough, indivisible = [], set(), set()
    for fn, tensors in read_folder(src):
        result = {}
        for name, t in tensors.items():
            if t.dtype in FLOATS and not torch.isfinite(t.float()).all():
                raise SystemExit(f"{name}: non-finite input")
            if fmt.startswith("fp8") and fp8_selected(name, t):
                q, s = (fp8_block_ue8m0 if fmt == "fp8-block-ue8m0" else fp8_block)(t)
                result[name], result[name + "_scale_inv"] = q, s
            elif (fmt == "int4-group" and name.endswith(".weight") and t.dim() == 2
                  and t.dtype in FLOATS and not int4_ignored(module_name(name))):
                if t.shape[1] % group != 0:
                    indivisible.add(module_name(name))
                    result[name] = t
                else:
                    x = name[:-len(".weight")]
                    (result[x + ".weight_packed"], result[x + ".weight_scale"],
                     result[x + ".weight_shape"]) = int4_group(t, group)
            else:
                passthrough.add(module_name(name))
                result[name] = t
        shards.append((fn, result))
    config = json.load(open(os.path.join(src, "config.json")))
    if fmt.startswith("fp8"):
        qc = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
              "weight_block_size": [128, 128], "modules_to_not_convert": sorted(passthrough)}
        if fmt == "fp8-block-ue8m0":
            qc["scale_fmt"] = "ue8m0"
    else:
        qc = {"config_groups": {"group_0": {
                  "input_activations": None, "output_activations": None, "targets": ["Linear"],
                  "weights": {"actorder": None, "block_structure": None, "dynamic": False,
                              "group_size": group, "num_bits": 4, "observer": "minmax",
                              "observer_kwargs": {}, "strategy": "group", "symmetric": True,
                              "type": "int"}}},
              "format": "pack-quantized", "ignore": INT4_DEFAULT_IGNORE + sorted(indivisible),
              "kv_cache_scheme": None, "quant_method": "compressed-tensors",
              "quantization_status": "compressed"}
    config["quantization_config"] = qc
    write_folder(out, shards, config, source=src)


OUTPUTS = [("fp8", "fp8-block", 128), ("fp8_ue8m0", "fp8-block-ue8m0", 128),
           ("int4_g128", "int4-group", 128), ("int4_g32", "int4-group", 32)]


# --- the input model: small, with every edge case planted ----------------------------------
def e4m3_positive_values():
    codes = torch.arange(0, 0x7F, dtype=torch.uint8)  # 0x00 .. 0x7E (448); 0x7F is NaN
    return codes.view(torch.float8_e4m3fn).float()


def planted_fp8_block():
    """A 128x128 block with amax 448 (so s = 1 exactly and q = e4m3(w)): every midpoint between
    neighbouring e4m3 codes (ties to even), each also negated, values one BF16 ulp either side of
    some midpoints, and negative values that round to zero (they must encode as 0x80)."""
    v = e4m3_positive_values()
    mids = (v[:-1] + v[1:]) / 2  # exact in f32, and in BF16 (4 significant bits)
    assert torch.equal(mids.to(torch.bfloat16).float(), mids)
    bits = mids[8::7].to(torch.bfloat16).view(torch.int16)
    near = torch.cat([(bits + 1).view(torch.bfloat16).float(), (bits - 1).view(torch.bfloat16).float()])
    to_zero = torch.tensor([-2.0 ** -10, -2.0 ** -11, -2.0 ** -13, -1e-30, -0.0])
    values = torch.cat([torch.tensor([448.0]), mids, -mids, near, -near, to_zero])
    block = torch.zeros(128 * 128)
    block[:values.numel()] = values
    rest = 128 * 128 - values.numel()
    block[values.numel():] = values[torch.arange(rest) % values.numel()].flip(0)
    block[values.numel():] = block[values.numel():] * torch.where(torch.arange(rest) % 3 == 0, -1.0, 1.0)
    block[values.numel():] = block[values.numel():].clamp(-447.0, 447.0)
    return block.view(128, 128).to(torch.bfloat16)


def build_model(out):
    gen = torch.Generator().manual_seed(20261201)

    def randn(*shape, scale=0.02):
        return (torch.randn(*shape, generator=gen) * scale).to(torch.bfloat16)

    gate0 = randn(256, 256)
    gate0[:128, :128] = 0.0                                     # an all-zero block / group
    tiny = torch.arange(1, 128 * 128 + 1, dtype=torch.float32).view(128, 128) % 97 * 2.0 ** -133
    tiny = tiny * torch.where(torch.arange(128 * 128).view(128, 128) % 2 == 0, 1.0, -1.0)
    gate0[:128, 128:] = tiny.to(torch.bfloat16)                 # BF16 subnormals, both signs
    gate0[5, 130] = -0.0
    gate0[130, 5] = 3e38                                        # a huge outlier
    gate0[128:, 128:] = planted_fp8_block()                     # ties between e4m3 codes

    up0 = randn(128, 256)
    halves = torch.arange(-14, 15, dtype=torch.float32) / 2     # -7.0, -6.5, ..., 7.0
    for r in range(4):                                          # amax 7: INT4 s = 7 * f32(1/7) = 1
        row = halves[torch.arange(256) % halves.numel()].roll(r)
        row[::32] = 7.0 if r % 2 == 0 else -7.0                 # every 32-group has amax 7
        up0[r] = row.to(torch.bfloat16)
    up0[4, :128] = (torch.randn(128, generator=gen) * 1e-6).to(torch.bfloat16)  # below 1e-5
    up0[5, :] = (torch.randn(256, generator=gen) * 1e-4).to(torch.bfloat16)      # below 1e-4 (ue8m0)

    shard1 = {
        "model.embed_tokens.weight": randn(64, 256),
        "model.layers.0.input_layernorm.weight": (1 + randn(256)).to(torch.bfloat16),
        "model.layers.0.post_attention_layernorm.weight": (1 + randn(256)).to(torch.bfloat16),
        "model.layers.0.self_attn.q_proj.weight": randn(200, 256),   # partial row block
        "model.layers.0.self_attn.q_proj.bias": randn(200),
        "model.layers.0.self_attn.o_proj.weight": randn(256, 200),   # partial column block
        "model.layers.0.self_attn.k_norm.weight": (1 + randn(64)).to(torch.bfloat16),
        "model.layers.0.mlp.gate.weight": randn(4, 256),              # the router
        "model.layers.0.mlp.experts.0.gate_proj.weight": gate0,
        "model.layers.0.mlp.experts.0.up_proj.weight": up0,
        "model.layers.0.mlp.experts.0.down_proj.weight": randn(128, 256, scale=3.0),
        "model.layers.0.mlp.experts.1.gate_proj.weight": randn(128, 160),  # K: G=32 yes, G=128 no
        "model.layers.0.mlp.experts.1.up_proj.weight": randn(64, 200),     # K: neither G
        "model.layers.0.mlp.experts.1.down_proj.weight": randn(130, 128),  # 2-row edge block
        "model.layers.0.mlp.shared_experts.gate_proj.weight": randn(128, 128),
    }
    shard2 = {
        "model.layers.1.input_layernorm.weight": (1 + randn(256)).to(torch.bfloat16),
        "model.layers.1.mlp.gate_proj.weight": randn(128, 256),
        "model.layers.1.mlp.down_proj.weight": randn(256, 128, scale=50.0),
        "model.layers.1.linear_attn.conv1d.weight": randn(64, 4),
        "model.layers.1.linear_attn.A_log": torch.randn(8, generator=gen),  # F32 pass-through
        "model.layers.1.linear_attn.dt_bias": randn(8),
        "model.layers.1.self_attn.weights_proj.weight": randn(64, 128),
        "model.layers.1.mtp.eh_proj.weight": randn(64, 128),
        "model.layers.1.mlp.experts.fused.weight": randn(2, 16, 16),       # 3-D: pass-through
        "model.norm.weight": (1 + randn(256)).to(torch.bfloat16),
        "lm_head.weight": randn(64, 256),
    }
    config = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
              "hidden_size": 256, "num_hidden_layers": 2, "num_experts": 2,
              "torch_dtype": "bfloat16", "vocab_size": 64, "tie_word_embeddings": False}
    write_folder(out, [("model-00001-of-00002.safetensors", shard1),
                       ("model-00002-of-00002.safetensors", shard2)], config)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        f.write('{"model_max_length": 4096}\n')  # a non-tensor file that convert copies


def coverage(root):
    """A few counts that show the edge cases are really in the fixtures."""
    fp8 = dict(t for _, ts in read_folder(os.path.join(root, "fp8")) for t in ts.items())
    codes = fp8["model.layers.0.mlp.experts.0.gate_proj.weight"].view(torch.uint8)
    s = fp8["model.layers.0.mlp.experts.0.gate_proj.weight_scale_inv"]
    print(f"coverage: gate0 fp8 codes 0x80 = {(codes == 0x80).sum().item()},"
          f" 0x00 = {(codes == 0).sum().item()}, scales {s.flatten().tolist()}")


def main(argv):
    if len(argv) == 3 and argv[1] == "all":
        root = argv[2]
        build_model(os.path.join(root, "bf16"))
        src = os.path.join(root, "bf16")
    elif len(argv) == 4 and argv[1] == "quantize":
        src, root = argv[2], argv[3]
    else:
        print(__doc__)
        return 2
    for folder, fmt, g in OUTPUTS:
        convert(src, os.path.join(root, folder), fmt, g)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(root) for f in fs)
    print(f"wrote {root}: {total} bytes")
    coverage(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
