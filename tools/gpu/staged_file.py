"""A file of n bytes on the staging filesystem, mapped shared and writable, as the sidecar maps a
staged shard's region: fresh (created anew, no pages yet) or as it already is."""
import mmap
import os


def mapped(path, n, fresh=True):
    if fresh and os.path.exists(path):
        os.unlink(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, n)
    m = mmap.mmap(fd, n, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    os.close(fd)
    return m
