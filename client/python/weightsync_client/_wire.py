"""The bytes of the UpdateWeights stream: the messages of a part (header, chunks, commit) and each
chunk's checksum (docs/wire.md)."""
from __future__ import annotations

try:
    from ._generated.weightsync.v1 import weightsync_pb2 as pb
except ImportError as e:  # pragma: no cover - a setup problem, explained to the user
    raise ImportError(
        "weightsync_client: cannot import its protobuf message classes (" + str(e) + "); "
        "install the package with its dependencies (grpcio, protobuf>=4.21)") from e

import collections
import concurrent.futures

from ._tensors import HostStaging

CHUNK_BYTES = 4 << 20


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


checksum, CHECKSUM_NAME, FAST_CRC32C = _checksum_function()
"""Whether a native CRC32C module is there; without one, chunks carry zlib's CRC-32 instead."""


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


def chunk_message(name, dtype, shape, offset, piece, crc):
    """One serialized UpdateWeightsRequest carrying ``piece``, which is copied once (into the
    message's bytes) instead of three times (``tobytes``, the message, its serialization): the
    chunk's other fields are serialized by protobuf and ``data`` is appended as its own field,
    which the wire format allows in any order. That one copy runs without the GIL where it can
    (``_GilFreeCopy``): with several streams, the GIL is what the sending threads queue on."""
    head = pb.TensorChunk(name=name, dtype=dtype, shape=shape, offset=offset,
                          crc32c=crc).SerializeToString()
    n = len(piece)
    data_prefix = _DATA_FIELD + _varint(n)
    inner = len(head) + len(data_prefix) + n
    prefix = b"".join((_CHUNK_FIELD, _varint(inner), head, data_prefix))
    if _GIL_FREE is not None and n >= _GilFreeCopy.MIN_BYTES and not piece.readonly:
        return _GIL_FREE.join(prefix, piece)
    return b"".join((prefix, piece))


class _GilFreeCopy:
    """Builds ``prefix + piece`` as a new bytes object with the piece's bytes copied by
    ``ctypes.memmove``, which releases the GIL (``b"".join`` copies while holding it).

    grpcio takes a serialized message only as ``bytes``, so the bytes object is made
    uninitialized (``PyBytes_FromStringAndSize(NULL, n)``) and filled before anyone else sees it,
    through its character buffer's address: a CPython layout, checked when the module loads (on
    another interpreter, or if the check fails, ``chunk_message`` joins as before)."""

    MIN_BYTES = 64 << 10  # below this the GIL is held for less than the calls cost

    def __init__(self):
        import ctypes
        import sys
        if sys.implementation.name != "cpython":
            raise RuntimeError("not CPython")
        self._ctypes = ctypes
        # a prototype of our own: ctypes.pythonapi's shared function objects stay as they are
        prototype = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_ssize_t)
        self._new = prototype(("PyBytes_FromStringAndSize", ctypes.pythonapi))
        self._offset = bytes.__basicsize__ - 1  # PyBytesObject.ob_sval
        probe = bytes(range(256)) * 4
        if ctypes.string_at(id(probe) + self._offset, len(probe)) != probe:
            raise RuntimeError("unexpected bytes layout")
        check = self.join(b"head", memoryview(bytearray(probe)))
        if check != b"head" + probe:
            raise RuntimeError("the GIL-free copy does not reproduce its input")

    def join(self, prefix, piece):
        ctypes = self._ctypes
        n = len(piece)
        message = self._new(None, len(prefix) + n)
        base = id(message) + self._offset
        ctypes.memmove(base, prefix, len(prefix))
        source = ctypes.c_char.from_buffer(piece)  # a writable, contiguous buffer's address
        try:
            ctypes.memmove(base + len(prefix), ctypes.addressof(source), n)
        finally:
            del source  # releases the export of piece's buffer
        return message


def _gil_free_copy():
    try:
        return _GilFreeCopy()
    except Exception:  # noqa: BLE001 - any surprise means: join as before
        return None


_GIL_FREE = _gil_free_copy()


LOOKAHEAD = 3
"""Chunks whose checksum and copy may be under way while an earlier one is being sent."""

CHUNK_WORKERS = 8
"""Worker threads a push may give its streams for checksums and copies, two a stream."""


def workers_per_stream(streams):
    """Two workers a stream up to 4 streams, none past that: measured on the H200 host
    (docs/measurements/wire-speed-2026-12-02-session8.md), two a stream gained on 1 and 4 streams
    (10.4 -> 6.3-7.3 s, 3.4 -> 2.9-3.0 s) and lost on 8 (one or two a stream: 3.2-4.0 s against
    3.1-3.6 s inline): 8 streams already keep the cores busy, and more threads queue on the GIL."""
    return 2 if 2 * streams <= CHUNK_WORKERS else 0


def requests(named_tensors, version, part, parts, chunk_bytes, checksums=True, workers=2):
    """The serialized messages of one part: header, chunks, commit.

    With ``workers``, each chunk's checksum and copy (both without the GIL) run on that many
    threads, up to ``LOOKAHEAD`` chunks ahead of the one grpcio is sending, instead of between
    grpcio's sends on its one thread (on one stream that thread was busy checksumming most of
    the time); with 0, inline."""
    # "off" in its older spelling, which sidecars before the "checksum" option understand too
    options = {"checksum": CHECKSUM_NAME} if checksums else {"crc32c": "off"}
    yield pb.UpdateWeightsRequest(header=pb.Header(
        weight_version=version, part_index=part, part_count=parts,
        options=options)).SerializeToString()
    count = 0
    total = 0
    staging = HostStaging()
    pool = (concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="weightsync-chunk")
            if workers else None)
    try:
        for name, tensor in named_tensors:
            count += 1
            for dtype, shape, offset, size, window in staging.windows(tensor):
                total += len(window)
                pending = collections.deque()
                # every chunk of a window is made before the next window is asked for: a GPU
                # tensor's window is a pinned buffer that is then refilled
                for at in range(0, max(len(window), 1), chunk_bytes):
                    args = (name, dtype, shape, offset + at, window[at:at + chunk_bytes], checksums)
                    if pool is None:
                        yield _chunk(*args)
                        continue
                    pending.append(pool.submit(_chunk, *args))
                    if len(pending) >= LOOKAHEAD:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        staging.close()
    yield pb.UpdateWeightsRequest(commit=pb.Commit(
        tensor_count=count, total_bytes=total)).SerializeToString()


def _chunk(name, dtype, shape, offset, piece, checksums):
    return chunk_message(name, dtype, shape, offset, piece, checksum(piece) if checksums else 0)
