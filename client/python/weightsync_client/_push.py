"""push: a part (or a whole version split over several streams) sent as bytes."""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, Iterable, Tuple

import grpc

from . import _tensors, _transport, _wire
from ._transport import PushError
from ._wire import CHUNK_BYTES, pb


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
        _transport.channel(target, tls_ca, tls_cert, tls_key, stream=i) for i in range(len(split))]
    try:
        # the requests are serialized by _requests itself (one copy of the bytes)
        calls = [ch.stream_unary(_transport.METHOD, request_serializer=None,
                                 response_deserializer=pb.UpdateWeightsResponse.FromString)
                 for ch in channels]
        sender = _PartSender(calls, version, parts if len(split) == 1 else len(split), chunk_bytes,
                             timeout, attempts, _transport.auth(token), checksums,
                             _wire.workers_per_stream(len(split)))
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
    sizes = [_tensors.nbytes(t) for _, t in tensors]
    load = [0] * count
    owner = [0] * len(tensors)
    for i in sorted(range(len(tensors)), key=lambda i: -sizes[i]):
        lightest = min(range(count), key=lambda p: load[p])
        owner[i] = lightest
        load[lightest] += max(1, sizes[i])
    return [[t for i, t in enumerate(tensors) if owner[i] == p] for p in range(count)]


class _PartSender:
    """Sends parts of one version, retrying a part refused with UNAVAILABLE; with several parts
    in flight, the first failure cancels the calls of the others."""

    def __init__(self, calls, version, parts, chunk_bytes, timeout, attempts, metadata, checksums,
                 workers):
        self._calls = calls  # part i goes over calls[i % len(calls)]
        self._version = version
        self._parts = parts
        self._chunk_bytes = chunk_bytes
        self._timeout = timeout
        self._attempts = attempts
        self._metadata = metadata
        self._checksums = checksums
        self._workers = workers  # per stream, for checksums and copies (_wire.requests)
        self._lock = threading.Lock()
        self._live = {}
        self._cancelled = False

    def send(self, index, tensors):
        for attempt in range(self._attempts):
            with self._lock:
                if self._cancelled:
                    raise PushError(grpc.StatusCode.CANCELLED, "another part of the version failed")
                future = self._calls[index % len(self._calls)].future(
                    _wire.requests(tensors, self._version, index, self._parts, self._chunk_bytes,
                                   self._checksums, self._workers),
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
