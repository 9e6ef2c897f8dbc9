#!/usr/bin/env python3
"""Pushes NumPy arrays through weightsync_client: a good version, then one with a NaN, then the
same over parallel streams (streams=3): a NaN in one part fails the version with that part's error
and leaves the engine on the last good version.

usage: push_numpy.py TARGET   (prints 'numpy push ok' and exits 0 when both behave)
"""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import numpy as np  # noqa: E402
import weightsync_client as ws  # noqa: E402

target = sys.argv[1]
rng = np.random.default_rng(0)
w = (rng.standard_normal((256, 384)) * 0.02).astype(np.float32)
r = ws.push([("model.layers.0.mlp.down_proj.weight", w),
             ("model.norm.weight", np.ones(384, dtype=np.float16))], version="np-1", target=target)
assert r.tensors_in == 2, r
assert r.tensors_out == 3, r  # weight, its scale_inv, the norm
assert ws.pb.EngineOutcome.Name(r.engines[0].outcome) == "LOADED", r

bad = w.copy()
bad[3, 5] = np.nan
try:
    ws.push([("model.layers.0.mlp.down_proj.weight", bad)], version="np-2", target=target)
    raise SystemExit("a NaN was accepted")
except ws.PushError as e:
    assert e.code.name == "INVALID_ARGUMENT", e
    assert "model.layers.0.mlp.down_proj.weight" in e.details and "element 1157" in e.details, e
st = ws.status(target)
assert st.last_version == "np-1", st

layers = [(f"model.layers.{i}.mlp.down_proj.weight", w * (i + 1)) for i in range(3)]
poisoned = list(layers)
poisoned[1] = (layers[1][0], bad)
try:
    ws.push(poisoned, version="np-3", target=target, streams=3)
    raise SystemExit("a NaN was accepted over parallel streams")
except ws.PushError as e:
    assert e.code.name == "INVALID_ARGUMENT", e
    assert "model.layers.1.mlp.down_proj.weight" in e.details and "element 1157" in e.details, e
assert ws.status(target).last_version == "np-1"
r = ws.push(layers, version="np-4", target=target, streams=3)
assert r.tensors_in == 3 and r.tensors_out == 6, r
assert ws.pb.EngineOutcome.Name(r.engines[0].outcome) == "LOADED", r
try:
    ws.push(layers, version="np-5", target=target, streams=2, parts=2)
    raise SystemExit("streams with parts was accepted")
except ValueError:
    pass
print("numpy push ok")
