#!/usr/bin/env python3
"""The Python client's torch branch: pushes the golden BF16 model as CUDA tensors.

usage: torch_push.py TARGET BF16_DIR VERSION
"""
import glob, os, sys
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client", "python"))
import weightsync_client as ws  # noqa: E402

tensors = {}
for f in sorted(glob.glob(os.path.join(sys.argv[2], "*.safetensors"))):
    tensors.update(load_file(f, device="cuda"))
r = ws.push(sorted(tensors.items()), version=sys.argv[3], target=sys.argv[1])
print("torch push:", r.weight_version, r.staged_path,
      [ws.pb.EngineOutcome.Name(e.outcome) for e in r.engines], "%.3f s" % r.timings.total_seconds)
