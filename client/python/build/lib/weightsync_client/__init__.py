"""Push weight versions from a PyTorch (or NumPy) trainer to a weightsync sidecar.

    import weightsync_client as ws
    response = ws.push(model.named_parameters(), version="step-100", target="127.0.0.1:50051")

One call sends one part of one version and returns when the whole version has been loaded by the
engines (or raises ``PushError`` with the sidecar's status). Tensors may be torch tensors (any
device: they are copied to the host), NumPy arrays, or ``RawTensor(data, dtype, shape)``.

Needs ``grpcio`` and ``protobuf`` (4.21 or newer); the protobuf message classes ship in
``_generated`` (``generate_stubs.sh`` regenerates them after a change to the proto, and
``tests/test_generated.py`` fails while they are stale). A fast CRC32C comes from the ``crc32c``
or ``google_crc32c`` module; without either, a slow pure-Python one is used.
"""
from __future__ import annotations

import collections
import concurrent.futures
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


def _crc32c_function():
    """(crc32c function, whether it is a fast native one)."""
    try:
        import crc32c  # Debian: python3-crc32c
        return crc32c.crc32c, True
    except ImportError:
        pass
    try:
        import google_crc32c
        return (lambda data: google_crc32c.value(bytes(data))), True
    except ImportError:
        pass
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)

    def slow(data):
        c = 0xFFFFFFFF
        for b in bytes(data):
            c = table[(c ^ b) & 0xFF] ^ (c >> 8)
        return c ^ 0xFFFFFFFF

    print("weightsync_client: no crc32c module; using a slow pure-Python CRC32C"
          " (push(checksums=False) skips it on TLS or loopback)", file=sys.stderr)
    return slow, False


_crc32c, FAST_CRC32C = _crc32c_function()
"""Whether a native CRC32C module is there; without one, consider push(checksums=False)."""

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
    """(little-endian bytes, safetensors dtype, shape) of a torch tensor, array or RawTensor."""
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


def _requests(named_tensors, version, part, parts, chunk_bytes, checksums=True):
    yield pb.UpdateWeightsRequest(header=pb.Header(
        weight_version=version, part_index=part, part_count=parts,
        options=None if checksums else {"crc32c": "off"}))
    count = 0
    total = 0
    for name, tensor in named_tensors:
        data, dtype, shape = _as_bytes(tensor)
        count += 1
        total += len(data)
        offset = 0
        while True:
            piece = data[offset:offset + chunk_bytes]
            yield pb.UpdateWeightsRequest(chunk=pb.TensorChunk(
                name=name, dtype=dtype, shape=shape, offset=offset, data=piece.tobytes(),
                crc32c=_crc32c(piece) if checksums else 0))
            offset += len(piece)
            if offset >= len(data):
                break
    yield pb.UpdateWeightsRequest(commit=pb.Commit(tensor_count=count, total_bytes=total))


def _channel(target: str, tls_ca: str | None, tls_cert: str | None, tls_key: str | None):
    """A plaintext channel, or TLS when any of the PEM files is given (the CA to trust; a client
    certificate and key for a sidecar that requires mutual TLS)."""
    options = [("grpc.max_send_message_length", 8 << 20),
               ("grpc.max_receive_message_length", 8 << 20)]
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
    N parallel streams; the first part that fails cancels the others, and the error raised is the
    one that says why. ``checksums=False`` sends no per-chunk CRC32C (and asks the sidecar not to
    check): for a Python without the ``crc32c`` module, where the pure-Python CRC32C moves about a
    megabyte a second, on TLS or loopback, whose transports check integrity themselves.
    """
    if not 0 < chunk_bytes <= CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be 1..{CHUNK_BYTES}")
    if streams < 1:
        raise ValueError("streams must be at least 1")
    if streams > 1 and (parts != 1 or part != 0):
        raise ValueError("streams splits a whole version into parts itself; leave part and parts at 0 and 1")
    tensors = list(named_tensors)
    own = channel is None
    ch = channel or _channel(target, tls_ca, tls_cert, tls_key)
    try:
        call = ch.stream_unary(_METHOD, request_serializer=pb.UpdateWeightsRequest.SerializeToString,
                               response_deserializer=pb.UpdateWeightsResponse.FromString)
        split = _split(tensors, streams)
        sender = _PartSender(call, version, parts if len(split) == 1 else len(split), chunk_bytes,
                             timeout, attempts, _auth(token), checksums)
        if len(split) == 1:
            return sender.send(part, split[0])
        return sender.send_all(split)
    finally:
        if own:
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

    def __init__(self, call, version, parts, chunk_bytes, timeout, attempts, metadata, checksums):
        self._call = call
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
                future = self._call.future(
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
    return [("authorization", "Bearer " + token)] if token else None


def status(target: str, timeout: float = 30.0, token: str | None = None,
           tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None):
    """The sidecar's ``GetStatusResponse``."""
    with _channel(target, tls_ca, tls_cert, tls_key) as ch:
        call = ch.unary_unary(_STATUS_METHOD,
                              request_serializer=pb.GetStatusRequest.SerializeToString,
                              response_deserializer=pb.GetStatusResponse.FromString)
        return call(pb.GetStatusRequest(), timeout=timeout, metadata=_auth(token))
