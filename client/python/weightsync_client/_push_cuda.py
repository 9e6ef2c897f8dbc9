"""push_cuda: a part sent as CUDA IPC handles to buckets on the trainer's GPU."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterable, Tuple

import grpc

from . import _tensors, _transport
from ._transport import PushError
from ._wire import pb

BUCKET_BYTES = 512 << 20
_BUCKETS_IN_FLIGHT = 2
_BUCKET_ALIGN = 256


def push_cuda(named_tensors: Iterable[Tuple[str, Any]], version: str, target: str, part: int = 0,
              parts: int = 1, bucket_bytes: int = BUCKET_BYTES, timeout: float | None = None,
              attempts: int = 3, channel: grpc.Channel | None = None, token: str | None = None,
              tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None):
    """Sends torch CUDA tensors to a sidecar on the same GPU by CUDA IPC handle, not by bytes.

    The tensors are copied (on the GPU) into buckets of ``bucket_bytes`` (at least the largest
    tensor), at most two at a time; each bucket goes over as a handle, the sidecar quantizes
    straight from it and acknowledges it, and the bucket's memory is then reused. The tensors
    themselves may change as soon as this returns. Returns the version's
    ``UpdateWeightsResponse``; raises ``PushError`` as ``push`` does (FAILED_PRECONDITION from a
    sidecar without this GPU: use ``push`` then).
    """
    import torch
    from . import _cuda
    tensors = list(named_tensors)
    if not tensors:
        raise ValueError("a version needs at least one tensor")
    device = None
    for name, t in tensors:
        if not isinstance(t, torch.Tensor) or not t.is_cuda:
            raise TypeError(f"{name}: push_cuda sends CUDA tensors; send host tensors with push")
        if str(t.dtype) not in _tensors.TORCH_DTYPES:
            raise TypeError(f"{name}: unsupported torch dtype {t.dtype}")
        if device is not None and t.device != device:
            raise ValueError(f"{name} is on {t.device}, the others on {device}: one GPU per push")
        device = t.device
    buckets = _buckets(tensors, bucket_bytes)
    size = max(bucket_bytes, max(_aligned(t.nbytes) for _, t in tensors))
    own = channel is None
    ch = channel or _transport.channel(target, tls_ca, tls_cert, tls_key)
    try:
        call = ch.stream_stream(_transport.CUDA_METHOD,
                                request_serializer=pb.UpdateWeightsRequest.SerializeToString,
                                response_deserializer=pb.UpdateWeightsCudaReply.FromString)
        for attempt in range(attempts):
            sender = _BucketSender(torch, _cuda, device, buckets, size, version, part, parts)
            try:
                result = None
                for reply in call(sender.requests(), timeout=timeout, metadata=_transport.auth(token)):
                    if reply.HasField("bucket_done"):
                        sender.acknowledged(reply.bucket_done.index)
                    else:
                        result = reply.result
                return result
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < attempts:
                    time.sleep(0.2 * (2 ** attempt))
                    continue
                raise PushError(e.code(), e.details()) from None
            finally:
                sender.stop()
    finally:
        if own:
            ch.close()


def _aligned(n):
    return (n + _BUCKET_ALIGN - 1) // _BUCKET_ALIGN * _BUCKET_ALIGN


def _buckets(tensors, bucket_bytes):
    """Consecutive tensors packed into buckets of at most bucket_bytes (one larger tensor alone),
    each tensor at an aligned offset: [[(name, tensor, offset), ...], ...]."""
    out, current, used = [], [], 0
    for name, t in tensors:
        n = _aligned(t.nbytes)
        if current and used + n > bucket_bytes:
            out.append(current)
            current, used = [], 0
        current.append((name, t, used))
        used += n
    out.append(current)
    return out


class _BucketSender:
    """The request stream of one push_cuda attempt: fills a bucket buffer on the GPU, sends its
    handle, and reuses the buffer once the sidecar has acknowledged it."""

    def __init__(self, torch, cuda, device, buckets, size, version, part, parts):
        self._torch = torch
        self._cuda = cuda
        self._device = device
        self._buckets = buckets
        self._size = size
        self._version = version
        self._part = part
        self._parts = parts
        self._done = {}
        self._stopped = threading.Event()
        self._buffers = []
        self._handles = []  # per buffer: the sidecar maps each allocation once per part

    def acknowledged(self, index):
        self._done[index].set()

    def stop(self):
        self._stopped.set()
        self._buffers.clear()

    def _wait(self, index):
        while not self._done[index].wait(0.1):
            if self._stopped.is_set():
                return False
        return True

    def requests(self):
        torch = self._torch
        torch.cuda.set_device(self._device)  # this runs on grpc's thread
        uuid = self._cuda.gpu_uuid(self._device.index)
        yield pb.UpdateWeightsRequest(header=pb.Header(
            weight_version=self._version, part_index=self._part, part_count=self._parts))
        count = total = 0
        for i, bucket in enumerate(self._buckets):
            if i >= _BUCKETS_IN_FLIGHT and not self._wait(i - _BUCKETS_IN_FLIGHT):
                return
            slot = i % _BUCKETS_IN_FLIGHT
            if slot == len(self._buffers):
                self._buffers.append(torch.empty(self._size, dtype=torch.uint8, device=self._device))
                self._handles.append(self._cuda.ipc_reference(self._buffers[slot].data_ptr()))
            buffer = self._buffers[slot]
            refs = []
            end = 0
            for name, t, offset in bucket:
                n = t.nbytes
                if n:
                    buffer[offset:offset + n].copy_(t.detach().contiguous().view(-1).view(torch.uint8))
                refs.append(pb.CudaTensor(name=name, dtype=_tensors.TORCH_DTYPES[str(t.dtype)],
                                          shape=list(t.shape), offset=offset))
                count += 1
                total += n
                end = offset + n
            torch.cuda.current_stream(self._device).synchronize()  # the sidecar reads it next
            handle, offset = self._handles[slot]
            self._done[i] = threading.Event()
            yield pb.UpdateWeightsRequest(cuda_bucket=pb.CudaBucket(
                index=i, ipc_handle=handle, handle_offset=offset, byte_length=end,
                gpu_uuid=uuid, tensors=refs))
        yield pb.UpdateWeightsRequest(commit=pb.Commit(tensor_count=count, total_bytes=total))
