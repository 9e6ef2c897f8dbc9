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

import collections
import concurrent.futures
import os
import socket
import struct
import sys
import threading
import time
from typing import Iterable, Tuple, Any

try:
    from ._generated.weightsync.v1 import weightsync_pb2 as pb
except ImportError as e:  # pragma: no cover - a setup problem, explained to the user
    raise ImportError(
        "weightsync_client: cannot import its protobuf message classes (" + str(e) + "); "
        "install the package with its dependencies (grpcio, protobuf>=4.21)") from e

import grpc

__all__ = ["push", "push_cuda", "status", "RawTensor", "PushError", "CHUNK_BYTES", "BUCKET_BYTES",
           "FAST_CRC32C"]

CHUNK_BYTES = 4 << 20
BUCKET_BYTES = 512 << 20
_BUCKETS_IN_FLIGHT = 2
_BUCKET_ALIGN = 256
_METHOD = "/weightsync.v1.WeightSync/UpdateWeights"
_CUDA_METHOD = "/weightsync.v1.WeightSync/UpdateWeightsCuda"
_STATUS_METHOD = "/weightsync.v1.WeightSync/GetStatus"

RawTensor = collections.namedtuple("RawTensor", ["data", "dtype", "shape"])
"""Raw little-endian bytes with a safetensors dtype name (e.g. "BF16") and a shape."""


class PushError(Exception):
    """The sidecar refused or failed the version; ``code`` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def _checksum_function():
    """(checksum function, the header's "checksum" option for it, whether it is CRC32C).

    CRC32C through the ``crc32c`` (or ``google_crc32c``) module where one is installed; otherwise
    zlib's CRC-32, which every Python has, runs at memory speed and releases the GIL, declared in
    the header so that the sidecar checks that instead (docs/wire.md). Never a Python loop."""
    try:
        import crc32c  # Debian: python3-crc32c
        return crc32c.crc32c, "crc32c", True
    except ImportError:
        pass
    try:
        import google_crc32c
        return (lambda data: google_crc32c.value(bytes(data))), "crc32c", True
    except ImportError:
        pass
    import zlib
    return zlib.crc32, "crc32", False


_checksum, _CHECKSUM_NAME, FAST_CRC32C = _checksum_function()
"""Whether a native CRC32C module is there; without one, chunks carry zlib's CRC-32 instead."""

_TORCH_DTYPES = {
    "torch.bfloat16": "BF16", "torch.float16": "F16", "torch.float32": "F32",
    "torch.float64": "F64", "torch.int8": "I8", "torch.uint8": "U8", "torch.int16": "I16",
    "torch.int32": "I32", "torch.int64": "I64", "torch.bool": "BOOL",
    "torch.float8_e4m3fn": "F8_E4M3",
}
_NUMPY_DTYPES = {
    "bfloat16": "BF16", "float16": "F16", "float32": "F32", "float64": "F64", "int8": "I8",
    "uint8": "U8", "int16": "I16", "int32": "I32", "int64": "I64", "bool": "BOOL",
}


def _as_bytes(tensor: Any) -> Tuple[memoryview, str, Tuple[int, ...]]:
    """(little-endian bytes, safetensors dtype, shape) of a host torch tensor, array or RawTensor
    (a view of the tensor's memory where it is contiguous: no copy)."""
    if isinstance(tensor, RawTensor):
        return memoryview(tensor.data).cast("B"), tensor.dtype, tuple(int(d) for d in tensor.shape)
    module = type(tensor).__module__
    if module.startswith("torch"):
        dtype = _TORCH_DTYPES.get(str(tensor.dtype))
        if dtype is None:
            raise TypeError(f"unsupported torch dtype {tensor.dtype}")
        import torch
        host = tensor.detach().contiguous().cpu()
        raw = host.view(torch.uint8).numpy() if host.numel() else b""
        return memoryview(raw).cast("B"), dtype, tuple(host.shape)
    if module.startswith("numpy"):
        dtype = _NUMPY_DTYPES.get(str(tensor.dtype))
        if dtype is None:
            raise TypeError(f"unsupported numpy dtype {tensor.dtype}")
        import numpy
        arr = numpy.ascontiguousarray(tensor)
        if arr.dtype.byteorder == ">":
            arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
        return memoryview(arr.reshape(-1).view(numpy.uint8)), dtype, tuple(arr.shape)
    raise TypeError(f"cannot send a {type(tensor).__name__}: use a torch tensor, a numpy array or RawTensor")


def _varint(n):
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_CHUNK_FIELD = b"\x12"  # UpdateWeightsRequest.chunk: field 2, length-delimited
_DATA_FIELD = b"\x2a"   # TensorChunk.data: field 5, length-delimited


def _chunk_message(name, dtype, shape, offset, piece, crc):
    """One serialized UpdateWeightsRequest carrying ``piece``, which is copied once (into the
    message's bytes) instead of three times (``tobytes``, the message, its serialization): the
    chunk's other fields are serialized by protobuf and ``data`` is appended as its own field,
    which the wire format allows in any order."""
    head = pb.TensorChunk(name=name, dtype=dtype, shape=shape, offset=offset,
                          crc32c=crc).SerializeToString()
    n = len(piece)
    data_prefix = _DATA_FIELD + _varint(n)
    inner = len(head) + len(data_prefix) + n
    return b"".join((_CHUNK_FIELD, _varint(inner), head, data_prefix, piece))


def _requests(named_tensors, version, part, parts, chunk_bytes, checksums=True):
    """The serialized messages of one part: header, chunks, commit."""
    # "off" in its older spelling, which sidecars before the "checksum" option understand too
    options = {"checksum": _CHECKSUM_NAME} if checksums else {"crc32c": "off"}
    yield pb.UpdateWeightsRequest(header=pb.Header(
        weight_version=version, part_index=part, part_count=parts,
        options=options)).SerializeToString()
    count = 0
    total = 0
    staging = _HostStaging()
    try:
        for name, tensor in named_tensors:
            count += 1
            for dtype, shape, offset, size, window in staging.windows(tensor):
                total += len(window)
                at = 0
                while True:
                    piece = window[at:at + chunk_bytes]
                    yield _chunk_message(name, dtype, shape, offset + at, piece,
                                         _checksum(piece) if checksums else 0)
                    at += len(piece)
                    if at >= len(window):
                        break
    finally:
        staging.close()
    yield pb.UpdateWeightsRequest(commit=pb.Commit(
        tensor_count=count, total_bytes=total)).SerializeToString()


class _HostStaging:
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
            data, dtype, shape = _as_bytes(tensor)
            yield dtype, shape, 0, len(data), data
            return
        dtype = _TORCH_DTYPES.get(str(tensor.dtype))
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


def _channel(target: str, tls_ca: str | None, tls_cert: str | None, tls_key: str | None,
             stream: int = 0):
    """A plaintext channel, or TLS when any of the PEM files is given (the CA to trust; a client
    certificate and key for a sidecar that requires mutual TLS). Channels of different ``stream``
    numbers never share a connection: grpcio would otherwise put channels with the same target
    and options on one subchannel, and one connection tops out near one core's speed."""
    options = [("grpc.max_send_message_length", 8 << 20),
               ("grpc.max_receive_message_length", 8 << 20),
               ("grpc.use_local_subchannel_pool", 1),
               ("weightsync.stream", stream)]
    if tls_ca is None and tls_cert is None and tls_key is None:
        return grpc.insecure_channel(target, options=options)
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")

    def read(path):
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(root_certificates=read(tls_ca),
                                         private_key=read(tls_key),
                                         certificate_chain=read(tls_cert))
    return grpc.secure_channel(target, creds, options=options)


def push(named_tensors: Iterable[Tuple[str, Any]], version: str, target: str, part: int = 0,
         parts: int = 1, chunk_bytes: int = CHUNK_BYTES, timeout: float | None = None,
         attempts: int = 3, channel: grpc.Channel | None = None, token: str | None = None,
         tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
         streams: int = 1, checksums: bool = True):
    """Sends ``named_tensors`` as part ``part`` of ``parts`` of weight version ``version``.

    Returns the sidecar's ``UpdateWeightsResponse`` (timings, sizes, each engine's result) once
    the whole version has been loaded. A part refused with UNAVAILABLE is retried as a whole (the
    tensors are read again, so pass a list, not a one-shot iterator, when attempts > 1).
    Raises ``PushError`` with the sidecar's status otherwise. ``token`` is sent as
    ``authorization: Bearer <token>`` (for a sidecar started with ``--auth-token-file``).
    ``tls_ca``/``tls_cert``/``tls_key`` (PEM paths) connect over TLS (for ``--tls-cert``; the
    client certificate for ``--tls-client-ca``).

    ``streams=N`` splits a whole version (``parts=1``) into N parts of about equal bytes, sent over
    N parallel streams, each on a connection of its own (unless ``channel`` is given, which they
    then share); the first part that fails cancels the others, and the error raised is the one
    that says why. Each chunk carries a CRC32C (``crc32c`` module) or, without that module,
    zlib's CRC-32, declared in the header; ``checksums=False`` sends none (and asks the sidecar
    not to check), on TLS or loopback, whose transports check integrity themselves.

    Host tensors are sent from their own memory; CUDA tensors are copied to the host through two
    reused pinned buffers, the next piece copied while the current one is sent.
    """
    if not 0 < chunk_bytes <= CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be 1..{CHUNK_BYTES}")
    if streams < 1:
        raise ValueError("streams must be at least 1")
    if streams > 1 and (parts != 1 or part != 0):
        raise ValueError("streams splits a whole version into parts itself; leave part and parts at 0 and 1")
    tensors = list(named_tensors)
    split = _split(tensors, streams)
    channels = [channel] if channel is not None else [
        _channel(target, tls_ca, tls_cert, tls_key, stream=i) for i in range(len(split))]
    try:
        # the requests are serialized by _requests itself (one copy of the bytes)
        calls = [ch.stream_unary(_METHOD, request_serializer=None,
                                 response_deserializer=pb.UpdateWeightsResponse.FromString)
                 for ch in channels]
        sender = _PartSender(calls, version, parts if len(split) == 1 else len(split), chunk_bytes,
                             timeout, attempts, _auth(token), checksums)
        if len(split) == 1:
            return sender.send(part, split[0])
        return sender.send_all(split)
    finally:
        if channel is None:
            for ch in channels:
                ch.close()


def _split(tensors, streams):
    """Parts of about equal bytes (largest tensor into the lightest part), each in the caller's
    order; never an empty part, which the sidecar refuses."""
    if not tensors:
        raise ValueError("a version needs at least one tensor")
    count = min(streams, len(tensors))
    if count == 1:
        return [tensors]
    sizes = [_nbytes(t) for _, t in tensors]
    load = [0] * count
    owner = [0] * len(tensors)
    for i in sorted(range(len(tensors)), key=lambda i: -sizes[i]):
        lightest = min(range(count), key=lambda p: load[p])
        owner[i] = lightest
        load[lightest] += max(1, sizes[i])
    return [[t for i, t in enumerate(tensors) if owner[i] == p] for p in range(count)]


def _nbytes(tensor):
    """A tensor's size in bytes without copying it (a torch tensor may be on a GPU)."""
    if isinstance(tensor, RawTensor):
        return memoryview(tensor.data).nbytes
    return int(tensor.nbytes)


class _PartSender:
    """Sends parts of one version, retrying a part refused with UNAVAILABLE; with several parts
    in flight, the first failure cancels the calls of the others."""

    def __init__(self, calls, version, parts, chunk_bytes, timeout, attempts, metadata, checksums):
        self._calls = calls  # part i goes over calls[i % len(calls)]
        self._version = version
        self._parts = parts
        self._chunk_bytes = chunk_bytes
        self._timeout = timeout
        self._attempts = attempts
        self._metadata = metadata
        self._checksums = checksums
        self._lock = threading.Lock()
        self._live = {}
        self._cancelled = False

    def send(self, index, tensors):
        for attempt in range(self._attempts):
            with self._lock:
                if self._cancelled:
                    raise PushError(grpc.StatusCode.CANCELLED, "another part of the version failed")
                future = self._calls[index % len(self._calls)].future(
                    _requests(tensors, self._version, index, self._parts, self._chunk_bytes,
                              self._checksums),
                    timeout=self._timeout, metadata=self._metadata)
                self._live[index] = future
            try:
                return future.result()
            except grpc.FutureCancelledError:
                raise PushError(grpc.StatusCode.CANCELLED, "another part of the version failed") from None
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < self._attempts:
                    time.sleep(0.2 * (2 ** attempt))
                    continue
                raise PushError(e.code(), e.details()) from None

    def send_all(self, split):
        response, error = None, None
        with concurrent.futures.ThreadPoolExecutor(len(split)) as pool:
            sent = [pool.submit(self.send, i, tensors) for i, tensors in enumerate(split)]
            for f in concurrent.futures.as_completed(sent):
                try:
                    response = f.result()
                except PushError as e:
                    if error is None or (_consequence(error) and not _consequence(e)):
                        error = e
                    self._cancel_all()
        if error is not None:
            raise error
        return response

    def _cancel_all(self):
        with self._lock:
            self._cancelled = True
            for future in self._live.values():
                future.cancel()


def _consequence(error):
    """A part stopped because another failed, rather than the failure itself."""
    return error.code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED)


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
        if str(t.dtype) not in _TORCH_DTYPES:
            raise TypeError(f"{name}: unsupported torch dtype {t.dtype}")
        if device is not None and t.device != device:
            raise ValueError(f"{name} is on {t.device}, the others on {device}: one GPU per push")
        device = t.device
    buckets = _buckets(tensors, bucket_bytes)
    size = max(bucket_bytes, max(_aligned(t.nbytes) for _, t in tensors))
    own = channel is None
    ch = channel or _channel(target, tls_ca, tls_cert, tls_key)
    try:
        call = ch.stream_stream(_CUDA_METHOD,
                                request_serializer=pb.UpdateWeightsRequest.SerializeToString,
                                response_deserializer=pb.UpdateWeightsCudaReply.FromString)
        for attempt in range(attempts):
            sender = _BucketSender(torch, _cuda, device, buckets, size, version, part, parts)
            try:
                result = None
                for reply in call(sender.requests(), timeout=timeout, metadata=_auth(token)):
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
                refs.append(pb.CudaTensor(name=name, dtype=_TORCH_DTYPES[str(t.dtype)],
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


def _auth(token):
    """Call metadata: the token, and the name the sidecar shares its streams by (host:pid)."""
    caller = [("weightsync-caller", _CALLER)]
    return caller + [("authorization", "Bearer " + token)] if token else caller


_CALLER = "%s:%d" % (socket.gethostname().encode("ascii", "replace").decode("ascii"), os.getpid())


def status(target: str, timeout: float = 30.0, token: str | None = None,
           tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None):
    """The sidecar's ``GetStatusResponse``."""
    with _channel(target, tls_ca, tls_cert, tls_key) as ch:
        call = ch.unary_unary(_STATUS_METHOD,
                              request_serializer=pb.GetStatusRequest.SerializeToString,
                              response_deserializer=pb.GetStatusResponse.FromString)
        return call(pb.GetStatusRequest(), timeout=timeout, metadata=_auth(token))
