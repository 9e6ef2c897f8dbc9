#!/usr/bin/env python3
"""A Qwen3-4B-shaped set of BF16 tensors already on the GPU, into a staged FP8 folder on /dev/shm,
three ways (issue 10), in one run:
  (a) push_cuda: CUDA IPC buckets to a sidecar on this GPU (--device cuda);
  (b) push: the same tensors as bytes through the Python client (--streams, default 8, 4 and 1;
      each stream a connection of its own, checksums on: CRC32C, or zlib's CRC-32 without the
      crc32c module, as the client picks);
  (c) pure PyTorch: blockwise FP8 on the GPU, copy to the host, safetensors.torch.save_file.

usage: bench_cuda_ipc.py TARGET [--layers 36] [--baseline-dir /dev/shm/ws-baseline]
Prints one line per phase; the staged folders of (a) and (b) are versions ipc-4b and bytes-4b.
"""
import argparse, os, shutil, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client", "python"))
import torch  # noqa: E402
import weightsync_client as ws  # noqa: E402

HIDDEN, INTER, KV, HEAD, VOCAB = 2560, 9728, 1024, 128, 151936


def qwen3_4b(layers):
    g = torch.Generator(device="cuda").manual_seed(0)

    def w(*shape):
        return (torch.randn(*shape, generator=g, device="cuda", dtype=torch.float32) * 0.02).to(torch.bfloat16)

    t = [("model.embed_tokens.weight", w(VOCAB, HIDDEN))]
    for i in range(layers):
        p = f"model.layers.{i}."
        t += [(p + "self_attn.q_proj.weight", w(32 * HEAD, HIDDEN)),
              (p + "self_attn.k_proj.weight", w(KV, HIDDEN)),
              (p + "self_attn.v_proj.weight", w(KV, HIDDEN)),
              (p + "self_attn.o_proj.weight", w(HIDDEN, 32 * HEAD)),
              (p + "self_attn.q_norm.weight", w(HEAD)),
              (p + "self_attn.k_norm.weight", w(HEAD)),
              (p + "mlp.gate_proj.weight", w(INTER, HIDDEN)),
              (p + "mlp.up_proj.weight", w(INTER, HIDDEN)),
              (p + "mlp.down_proj.weight", w(HIDDEN, INTER)),
              (p + "input_layernorm.weight", w(HIDDEN)),
              (p + "post_attention_layernorm.weight", w(HIDDEN))]
    t.append(("model.norm.weight", w(HIDDEN)))
    torch.cuda.synchronize()
    return t


def torch_fp8_block(x):
    """Blockwise 128x128 e4m3 in plain PyTorch (the baseline; not the spec's exact rounding)."""
    n, k = x.shape
    pn, pk = -n % 128, -k % 128
    f = torch.nn.functional.pad(x.float(), (0, pk, 0, pn))
    b = f.view((n + pn) // 128, 128, (k + pk) // 128, 128)
    amax = b.abs().amax(dim=(1, 3), keepdim=True).clamp(min=1e-12)
    scale = amax / 448.0
    q = (b / scale).clamp(-448, 448).to(torch.float8_e4m3fn)
    q = q.view(n + pn, k + pk)[:n, :k].contiguous()
    return q, scale.view((n + pn) // 128, (k + pk) // 128).contiguous()


def baseline(tensors, out_dir):
    from safetensors.torch import save_file
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    t0 = time.perf_counter()
    quantized = {}
    for name, t in tensors:
        if t.dim() == 2 and "embed_tokens" not in name:
            q, s = torch_fp8_block(t)
            quantized[name] = q
            quantized[name + "_scale_inv"] = s
        else:
            quantized[name] = t
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    host = {k: v.cpu() for k, v in quantized.items()}
    t2 = time.perf_counter()
    save_file(host, os.path.join(out_dir, "model.safetensors"))
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def report(label, seconds, r):
    t = r.timings
    print(f"{label}: {seconds:.3f} s wall; sidecar receive {t.receive_seconds:.3f} quantize(wait) "
          f"{t.quantize_seconds:.3f} stage {t.stage_seconds:.3f} engine {t.engine_seconds:.3f} "
          f"total {t.total_seconds:.3f} s; staged-ready {seconds - t.engine_seconds:.3f} s; "
          f"{r.bytes_in / 1e9:.2f} GB in, {r.bytes_out / 1e9:.2f} GB out")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--layers", type=int, default=36)
    p.add_argument("--baseline-dir", default="/dev/shm/ws-baseline")
    p.add_argument("--cases", default="abc", help="which of (a), (b), (c) to run")
    p.add_argument("--streams", default="8,4,1", help="stream counts for (b)")
    p.add_argument("--rounds", type=int, default=3, help="versions pushed by (a); the trainer's"
                   " GPU memory is printed after each")
    p.add_argument("--pause", type=float, default=0.0, help="seconds between (a)'s versions (a"
                   " trainer's step), not timed")
    p.add_argument("--metrics", help="the sidecar's /metrics URL: its open CUDA IPC handles are"
                   " printed after (a)")
    p.add_argument("--no-warmup", action="store_true", help="skip the small warm-up versions (a"
                   " sidecar warmed up already): with --staging-reuse, their shard files, of"
                   " other sizes, would be the ones kept when they are pruned")
    a = p.parse_args()
    tensors = qwen3_4b(a.layers)
    total = sum(t.nbytes for _, t in tensors)
    print(f"{len(tensors)} tensors, {total / 1e9:.2f} GB BF16 on {torch.cuda.get_device_name()}")

    if not a.no_warmup:  # the JIT, the bucket buffers, the handle path
        ws.push_cuda(tensors[:40], version="warm-ipc", target=a.target)
        ws.push(tensors[:10], version="warm-bytes", target=a.target)

    for s in [int(n) for n in a.streams.split(",")] if "b" in a.cases else ():
        start = time.perf_counter()
        r = ws.push(tensors, version="bytes-4b" if s == 1 else f"bytes-4b-{s}s", target=a.target,
                    streams=s)
        report(f"(b) bytes, Python client, {s} stream(s), checksum {ws._wire.CHECKSUM_NAME}",
               time.perf_counter() - start, r)
    ipc = []
    rounds = a.rounds if "a" in a.cases else 0
    for i in range(rounds):
        if i and a.pause:
            time.sleep(a.pause)
        start = time.perf_counter()
        r = ws.push_cuda(tensors, version="ipc-4b" if i == rounds - 1 else f"ipc-4b-{i}",
                         target=a.target)
        ipc.append(time.perf_counter() - start)
        report(f"(a) CUDA IPC, round {i + 1}", ipc[-1], r)
        print(f"    trainer GPU memory after round {i + 1}: allocated "
              f"{torch.cuda.memory_allocated() / 2**20:.0f} MiB, reserved "
              f"{torch.cuda.memory_reserved() / 2**20:.0f} MiB")
    if rounds and a.metrics:
        import urllib.request
        text = urllib.request.urlopen(a.metrics, timeout=10).read().decode()
        print("sidecar after (a):", " ".join(
            line for line in text.splitlines() if line.startswith("weightsync_cuda_ipc_open_handles")))
    if "c" not in a.cases:
        return
    times = [baseline(tensors, a.baseline_dir) for _ in range(2)]
    q, d2h, write = min(times, key=sum)
    print(f"(c) pure PyTorch: quantize {q:.3f} s, to host {d2h:.3f} s, save_file {write:.3f} s, "
          f"total {q + d2h + write:.3f} s (best of {len(times)})")
    print(f"(c)/(a) = {(q + d2h + write) / min(ipc):.1f}x")


if __name__ == "__main__":
    main()
