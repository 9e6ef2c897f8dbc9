#!/usr/bin/env python3
"""Python client throughput: one version of random BF16 4096x4096 tensors pushed to a running
sidecar with weightsync_client.push, over 1 stream and over S parallel streams; the best of R
rounds, as `weightsync bench ingest` reports (c) for the Java client.

usage: bench_python_client.py TARGET [--bytes N] [--streams S] [--rounds R]
Needs numpy, grpcio, protobuf and the generated stubs (client/python/generate_stubs.sh).
"""
import argparse, os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "client", "python"))
import numpy as np  # noqa: E402
import weightsync_client as ws  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--bytes", type=float, default=1 << 30)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    rng = np.random.default_rng(5)
    one = (rng.standard_normal((4096, 4096), dtype=np.float32) * 0.02)
    bf16 = (one.view(np.uint32) >> 16).astype(np.uint16)  # truncation is fine for a benchmark
    count = max(a.streams, int(a.bytes) // bf16.nbytes // a.streams * a.streams)
    tensors = [(f"model.layers.{i}.mlp.up_proj.weight", ws.RawTensor(bf16, "BF16", (4096, 4096)))
               for i in range(count)]
    total = count * bf16.nbytes
    print(f"{count} tensors of 4096 x 4096 BF16 = {total / 1e9:.2f} GB per push, "
          f"{os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"{'CRC32C per chunk' if ws.FAST_CRC32C else 'no CRC32C (no crc32c module here)'}")
    best = {}
    for r in range(a.rounds):
        for s in (1, a.streams):
            start = time.perf_counter()
            resp = ws.push(tensors, version=f"py-{r}-{s}", target=a.target, streams=s,
                           checksums=ws.FAST_CRC32C)
            seconds = time.perf_counter() - start
            best[s] = max(best.get(s, 0), total / seconds / 1e9)
            print(f"round {r + 1} streams {s}: {total / seconds / 1e9:.2f} GB/s "
                  f"(sidecar: receive {resp.timings.receive_seconds:.2f} s, "
                  f"total {resp.timings.total_seconds:.2f} s)")
    for s, g in best.items():
        print(f"best: {s} stream(s) {g:.2f} GB/s")


if __name__ == "__main__":
    main()
