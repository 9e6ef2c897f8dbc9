"""What push puts on the wire, without a server: the CRC32C, and header, chunks and commit."""
import numpy as np
import pytest

import weightsync_client as ws
from weightsync_client import _wire


def _parsed(requests):
    return [ws.pb.UpdateWeightsRequest.FromString(r) for r in requests]


def test_the_checksum_is_crc32c_with_the_module_and_zlibs_crc32_without_it():
    check = {"crc32c": 0xE3069283, "crc32": 0xCBF43926}  # the standard check values
    assert _wire.checksum(b"123456789") == check[_wire.CHECKSUM_NAME]
    assert _wire.checksum(memoryview(b"123456789")) == check[_wire.CHECKSUM_NAME]
    assert _wire.CHECKSUM_NAME == ("crc32c" if ws.FAST_CRC32C else "crc32")


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_a_version_is_a_header_chunks_that_cover_each_tensor_and_a_commit(workers):
    """Inline or on workers that run ahead: the same chunks, in order."""
    w = np.arange(1000, dtype=np.float32).reshape(10, 100)
    norm = ws.RawTensor(b"\x00\x3f" * 100, "BF16", (100,))
    requests = _parsed(_wire.requests([("a.weight", w), ("a.norm", norm)], "v7", 1, 3,
                                      chunk_bytes=1024, workers=workers))
    kinds = [r.WhichOneof("kind") for r in requests]
    assert kinds[0] == "header" and kinds[-1] == "commit"
    assert (requests[0].header.weight_version, requests[0].header.part_index,
            requests[0].header.part_count) == ("v7", 1, 3)
    assert requests[0].header.options["checksum"] == _wire.CHECKSUM_NAME
    chunks = [r.chunk for r in requests[1:-1]]
    got = {}
    for c in chunks:
        assert len(c.data) <= 1024 and c.crc32c == _wire.checksum(c.data)
        got.setdefault(c.name, bytearray()).extend(c.data)
        assert c.offset == len(got[c.name]) - len(c.data)  # in order, no gap, no overlap
    assert bytes(got["a.weight"]) == w.tobytes() and bytes(got["a.norm"]) == norm.data
    assert [c.dtype for c in chunks if c.name == "a.weight"][0] == "F32"
    assert list(chunks[0].shape) == [10, 100]
    assert (requests[-1].commit.tensor_count, requests[-1].commit.total_bytes) == (2, 4000 + 200)


def test_checksums_off_says_so_in_the_header():
    requests = _parsed(_wire.requests([("x", ws.RawTensor(b"ab", "U8", (2,)))], "v", 0, 1, 4,
                                    checksums=False))
    assert requests[0].header.options["crc32c"] == "off"
    assert requests[1].chunk.crc32c == 0


def test_a_chunk_serialized_by_hand_equals_protobufs_own():
    data = bytes(range(256)) * 700  # long enough for a multi-byte length
    mine = _wire.chunk_message("m.w", "BF16", (350, 256), 4096, memoryview(data), 12345)
    theirs = ws.pb.UpdateWeightsRequest(chunk=ws.pb.TensorChunk(
        name="m.w", dtype="BF16", shape=(350, 256), offset=4096, data=data, crc32c=12345))
    assert ws.pb.UpdateWeightsRequest.FromString(mine) == theirs


def test_a_large_writable_piece_is_copied_without_the_gil_into_the_same_bytes():
    assert _wire._GIL_FREE is not None, "CPython: the GIL-free copy must be on"
    data = bytearray(range(256)) * 4096  # 1 MiB, writable: the memmove path
    piece = memoryview(data)[100:]
    mine = _wire.chunk_message("m.w", "BF16", (len(piece) // 2,), 0, piece, 7)
    assert type(mine) is bytes
    theirs = ws.pb.UpdateWeightsRequest(chunk=ws.pb.TensorChunk(
        name="m.w", dtype="BF16", shape=(len(piece) // 2,), offset=0, data=bytes(piece),
        crc32c=7))
    assert ws.pb.UpdateWeightsRequest.FromString(mine) == theirs
    data[100:110] = b"x" * 10  # the message is a copy, not a view of the piece
    assert ws.pb.UpdateWeightsRequest.FromString(mine) == theirs


def test_each_stream_has_a_connection_of_its_own_unless_a_channel_is_given():
    """A grpcio server in this process records each call's peer (its client address and port):
    distinct ports are distinct connections."""
    import concurrent.futures
    import os
    import socket
    import threading

    import grpc

    peers, callers, lock = [], [], threading.Lock()

    def update(requests, context):
        names = set()
        for r in requests:
            if r.WhichOneof("kind") == "chunk":
                names.add(r.chunk.name)
        with lock:
            peers.append(context.peer())
            callers.append(dict(context.invocation_metadata()).get("weightsync-caller"))
        return ws.pb.UpdateWeightsResponse(weight_version="v", tensors_in=len(names))

    handler = grpc.method_handlers_generic_handler("weightsync.v1.WeightSync", {
        "UpdateWeights": grpc.stream_unary_rpc_method_handler(
            update, request_deserializer=ws.pb.UpdateWeightsRequest.FromString,
            response_serializer=ws.pb.UpdateWeightsResponse.SerializeToString)})
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        tensors = [(f"w{i}", np.full(1000, i, dtype=np.float32)) for i in range(6)]
        ws.push(tensors, "v", f"127.0.0.1:{port}", streams=3)
        assert len(peers) == 3 and len(set(peers)) == 3, peers
        # the name the sidecar shares its streams by: this process, the same on every stream
        assert set(callers) == {"%s:%d" % (socket.gethostname(), os.getpid())}, callers
        peers.clear()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as shared:
            ws.push(tensors, "v", f"127.0.0.1:{port}", streams=3, channel=shared)
        assert len(peers) == 3 and len(set(peers)) == 1, peers
    finally:
        server.stop(None)
