"""What push puts on the wire, without a server: the CRC32C, and header, chunks and commit."""
import numpy as np

import weightsync_client as ws


def test_crc32c_is_the_castagnoli_checksum():
    assert ws._crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert ws._crc32c(b"") == 0


def test_a_version_is_a_header_chunks_that_cover_each_tensor_and_a_commit():
    w = np.arange(1000, dtype=np.float32).reshape(10, 100)
    norm = ws.RawTensor(b"\x00\x3f" * 100, "BF16", (100,))
    requests = list(ws._requests([("a.weight", w), ("a.norm", norm)], "v7", 1, 3, chunk_bytes=1024))
    kinds = [r.WhichOneof("kind") for r in requests]
    assert kinds[0] == "header" and kinds[-1] == "commit"
    assert (requests[0].header.weight_version, requests[0].header.part_index,
            requests[0].header.part_count) == ("v7", 1, 3)
    chunks = [r.chunk for r in requests[1:-1]]
    got = {}
    for c in chunks:
        assert len(c.data) <= 1024 and c.crc32c == ws._crc32c(c.data)
        got.setdefault(c.name, bytearray()).extend(c.data)
        assert c.offset == len(got[c.name]) - len(c.data)  # in order, no gap, no overlap
    assert bytes(got["a.weight"]) == w.tobytes() and bytes(got["a.norm"]) == norm.data
    assert [c.dtype for c in chunks if c.name == "a.weight"][0] == "F32"
    assert list(chunks[0].shape) == [10, 100]
    assert (requests[-1].commit.tensor_count, requests[-1].commit.total_bytes) == (2, 4000 + 200)


def test_checksums_off_says_so_in_the_header():
    requests = list(ws._requests([("x", ws.RawTensor(b"ab", "U8", (2,)))], "v", 0, 1, 4,
                                 checksums=False))
    assert requests[0].header.options["crc32c"] == "off"
    assert requests[1].chunk.crc32c == 0
