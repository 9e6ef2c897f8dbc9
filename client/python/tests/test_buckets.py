"""push_cuda's bucket packing and push's stream split, without a GPU (NumPy arrays stand in for
tensors: both only read .nbytes)."""
import numpy as np

from weightsync_client import _push, _push_cuda

MiB = 1 << 20


def test_buckets_are_aligned_in_order_and_a_large_tensor_goes_alone():
    t = [(f"t{i}", np.zeros(n, dtype=np.uint8)) for i, n in enumerate(
        [3 * MiB, 100, 1 * MiB, 10 * MiB, 2 * MiB, 2 * MiB, 1])]
    buckets = _push_cuda._buckets(t, 4 * MiB)
    names = [[name for name, _, _ in b] for b in buckets]
    assert names == [["t0", "t1"], ["t2"], ["t3"], ["t4", "t5"], ["t6"]], names
    for b in buckets:
        offsets = [off for _, _, off in b]
        assert all(off % 256 == 0 for off in offsets), offsets  # the kernels read aligned rows
        ends = [off + x.nbytes for _, x, off in b]
        assert all(e <= o for e, o in zip(ends, offsets[1:])), (ends, offsets)  # no overlap
    parts = _push._split(t, 3)
    assert sorted(n for p in parts for n, _ in p) == sorted(n for n, _ in t)
    loads = sorted(sum(x.nbytes for _, x in p) for p in parts)
    assert loads[-1] == 10 * MiB and loads[0] > 3 * MiB, loads  # the big one alone, the rest shared
    assert all([n for n, _ in p] == sorted((n for n, _ in p), key=lambda s: int(s[1:])) for p in parts)
