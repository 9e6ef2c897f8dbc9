"""The tensors a trainer sends: which kinds and dtypes, their bytes read in place, a GPU tensor's
bytes through reused pinned buffers."""
from __future__ import annotations

import collections
from typing import Any, Tuple

RawTensor = collections.namedtuple("RawTensor", ["data", "dtype", "shape"])
"""Raw little-endian bytes with a safetensors dtype name (e.g. "BF16") and a shape."""


TORCH_DTYPES = {
    "torch.bfloat16": "BF16", "torch.float16": "F16", "torch.float32": "F32",
    "torch.float64": "F64", "torch.int8": "I8", "torch.uint8": "U8", "torch.int16": "I16",
    "torch.int32": "I32", "torch.int64": "I64", "torch.bool": "BOOL",
    "torch.float8_e4m3fn": "F8_E4M3",
}
NUMPY_DTYPES = {
    "bfloat16": "BF16", "float16": "F16", "float32": "F32", "float64": "F64", "int8": "I8",
    "uint8": "U8", "int16": "I16", "int32": "I32", "int64": "I64", "bool": "BOOL",
}


def as_bytes(tensor: Any) -> Tuple[memoryview, str, Tuple[int, ...]]:
    """(little-endian bytes, safetensors dtype, shape) of a host torch tensor, array or RawTensor
    (a view of the tensor's memory where it is contiguous: no copy)."""
    if isinstance(tensor, RawTensor):
        return memoryview(tensor.data).cast("B"), tensor.dtype, tuple(int(d) for d in tensor.shape)
    module = type(tensor).__module__
    if module.startswith("torch"):
        dtype = TORCH_DTYPES.get(str(tensor.dtype))
        if dtype is None:
            raise TypeError(f"unsupported torch dtype {tensor.dtype}")
        import torch
        host = tensor.detach().contiguous().cpu()
        raw = host.view(torch.uint8).numpy() if host.numel() else b""
        return memoryview(raw).cast("B"), dtype, tuple(host.shape)
    if module.startswith("numpy"):
        dtype = NUMPY_DTYPES.get(str(tensor.dtype))
        if dtype is None:
            raise TypeError(f"unsupported numpy dtype {tensor.dtype}")
        import numpy
        arr = numpy.ascontiguousarray(tensor)
        if arr.dtype.byteorder == ">":
            arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
        return memoryview(arr.reshape(-1).view(numpy.uint8)), dtype, tuple(arr.shape)
    raise TypeError(f"cannot send a {type(tensor).__name__}: use a torch tensor, a numpy array or RawTensor")


def nbytes(tensor):
    """A tensor's size in bytes without copying it (a torch tensor may be on a GPU)."""
    if isinstance(tensor, RawTensor):
        return memoryview(tensor.data).nbytes
    return int(tensor.nbytes)


class HostStaging:
    """Where a tensor's bytes are read from: a host tensor in place; a GPU tensor through two
    reused pinned host buffers of ``PINNED_BYTES``, the next window copied (on a stream of its
    own) while the current one is sent, instead of a fresh ``tensor.cpu()`` per tensor."""

    PINNED_BYTES = 32 << 20

    def __init__(self):
        self._torch = None
        self._slots = []
        self._stream = None

    def windows(self, tensor):
        """(dtype, shape, offset, tensor bytes, window) for consecutive windows of the tensor's
        bytes; a window stays valid until the next is asked for."""
        module = type(tensor).__module__
        if not (module.startswith("torch") and tensor.is_cuda):
            data, dtype, shape = as_bytes(tensor)
            yield dtype, shape, 0, len(data), data
            return
        dtype = TORCH_DTYPES.get(str(tensor.dtype))
        if dtype is None:
            raise TypeError(f"unsupported torch dtype {tensor.dtype}")
        torch = self._setup(tensor)
        flat = tensor.detach().contiguous().view(-1).view(torch.uint8)
        n = flat.numel()
        shape = tuple(tensor.shape)
        if n == 0:
            yield dtype, shape, 0, 0, memoryview(b"")
            return
        size = self.PINNED_BYTES
        starts = list(range(0, n, size))

        def issue(i):
            slot = self._slots[i % 2]
            length = min(size, n - starts[i])
            with torch.cuda.stream(self._stream):
                slot[0][:length].copy_(flat[starts[i]:starts[i] + length], non_blocking=True)
                slot[1].record(self._stream)
            return length

        self._stream.wait_stream(torch.cuda.current_stream(tensor.device))  # the tensor is ready
        lengths = {0: issue(0)}
        for i in range(len(starts)):
            if i + 1 < len(starts):
                lengths[i + 1] = issue(i + 1)  # overlaps sending window i
            slot = self._slots[i % 2]
            slot[1].synchronize()
            view = memoryview(slot[2])[:lengths.pop(i)]
            yield dtype, shape, starts[i], n, view
            # window i was serialized (copied) before the generator resumed: its slot is free

    def _setup(self, tensor):
        import torch
        torch.cuda.set_device(tensor.device)  # this runs on grpc's thread
        if not self._slots:
            self._torch = torch
            self._stream = torch.cuda.Stream(tensor.device)
            for _ in range(2):
                host = torch.empty(self.PINNED_BYTES, dtype=torch.uint8, pin_memory=True)
                self._slots.append((host, torch.cuda.Event(), host.numpy()))
        return torch

    def close(self):
        self._slots.clear()
