"""Push weight versions from a PyTorch (or NumPy) trainer to a weightsync sidecar.

    import weightsync_client as ws
    response = ws.push(model.named_parameters(), version="step-100", target="127.0.0.1:50051")

One call sends one part of one version and returns when the whole version has been loaded by the
engines (or raises ``PushError`` with the sidecar's status). Tensors may be torch tensors (any
device: they are copied to the host), NumPy arrays, or ``RawTensor(data, dtype, shape)``.

Needs ``grpcio`` and ``protobuf`` (4.21 or newer); the protobuf message classes ship in
``_generated`` (``generate_stubs.sh`` regenerates them after a change to the proto, and
``tests/test_generated.py`` fails while they are stale). Chunks carry a CRC32C from the ``crc32c``
or ``google_crc32c`` module; without either, zlib's CRC-32 (as fast), which the header declares.
"""
from __future__ import annotations

from ._push import push
from ._push_cuda import BUCKET_BYTES, push_cuda
from ._transport import PushError, status
from ._tensors import RawTensor
from ._wire import CHUNK_BYTES, FAST_CRC32C, pb

__all__ = ["push", "push_cuda", "status", "RawTensor", "PushError", "CHUNK_BYTES", "BUCKET_BYTES",
           "FAST_CRC32C"]
