#!/usr/bin/env python3
"""Pushes over mutual TLS: refused without a client certificate, loaded with one.

usage: push_tls.py TARGET CA CERT KEY   (prints 'tls push ok' and exits 0 when both behave)
"""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import numpy as np  # noqa: E402
import weightsync_client as ws  # noqa: E402

target, ca, cert, key = sys.argv[1:5]
w = [("model.layers.0.mlp.down_proj.weight", np.full((128, 128), 0.01, dtype=np.float32))]
try:
    ws.push(w, version="tls-0", target=target, tls_ca=ca, attempts=1)
    raise SystemExit("a client without a certificate got in")
except ws.PushError as e:
    assert e.code.name == "UNAVAILABLE", e
r = ws.push(w, version="tls-1", target=target, tls_ca=ca, tls_cert=cert, tls_key=key)
assert ws.pb.EngineOutcome.Name(r.engines[0].outcome) == "LOADED", r
assert ws.status(target, tls_ca=ca, tls_cert=cert, tls_key=key).last_version == "tls-1"
print("tls push ok")
