#!/usr/bin/env python3
"""Pushes a BF16 safetensors checkpoint folder through weightsync_client (stdlib + grpc only).

usage: push_golden.py [--without-crc32c] [--streams N] TARGET MODEL_DIR VERSION [PART PARTS [FILTER]]
--without-crc32c: hide the crc32c modules, as on a Python without them (chunks carry zlib's CRC-32).
--streams N: split the version into N parts sent over parallel streams.
FILTER (optional): only tensors whose name contains it ('!X' for those that do not).
Prints the response's staged path and each engine's outcome; exits 1 with the status on failure.
"""
import json, os, struct, sys

if sys.argv[1:2] == ["--without-crc32c"]:
    sys.modules["crc32c"] = sys.modules["google_crc32c"] = None  # import fails as if absent
    del sys.argv[1]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import weightsync_client as ws  # noqa: E402


def read_folder(d):
    out = []
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(d, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            base = 8 + n
            for name, meta in header.items():
                if name == "__metadata__":
                    continue
                b, e = meta["data_offsets"]
                f.seek(base + b)
                out.append((name, ws.RawTensor(f.read(e - b), meta["dtype"], meta["shape"])))
    return out


def main():
    args = sys.argv[1:]
    streams = 1
    if args[:1] == ["--streams"]:
        streams, args = int(args[1]), args[2:]
    target, model, version = args[0:3]
    part, parts = (int(args[3]), int(args[4])) if len(args) > 4 else (0, 1)
    tensors = read_folder(model)
    if len(args) > 5:
        f = args[5]
        keep = (lambda n: f[1:] not in n) if f.startswith("!") else (lambda n: f in n)
        tensors = [t for t in tensors if keep(t[0])]
    try:
        r = ws.push(tensors, version=version, target=target, part=part, parts=parts,
                    streams=streams)
    except ws.PushError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("checksum", ws._wire.CHECKSUM_NAME)
    print("staged", r.staged_path)
    for e in r.engines:
        print("engine", e.engine, ws.pb.EngineOutcome.Name(e.outcome), e.loaded_version)
    print("timings total %.3f s" % r.timings.total_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
