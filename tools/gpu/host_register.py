#!/usr/bin/env python3
"""What registering a staged file's pages with the CUDA driver costs (issue 21, build item 1),
on /dev/shm, against the path the sidecar takes now, in one run:
  (1) now: device -> pinned slot buffer (cudaMemcpy), then memcpy into the file's mapping;
  (2) register the file's mapping (cudaHostRegister) and copy device -> file pages directly,
      on fresh pages (the file just created: registration faults, zeroes and pins them) and on
      pages already written once (as a reused staging file would be);
  (3) the registration alone, and its unregistration.
usage: host_register.py [--mib 512] [--rounds 3] [--dir /dev/shm]
"""
import argparse, ctypes, os, time

import torch

from staged_file import mapped

p = argparse.ArgumentParser()
p.add_argument("--mib", type=int, default=512)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--dir", default="/dev/shm")
a = p.parse_args()
n = a.mib << 20
cudart = torch.cuda.cudart()
src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
pinned = torch.empty(n, dtype=torch.uint8, pin_memory=True)
torch.cuda.synchronize()


def view(m):
    """A ctypes view of the mapping (delete it before closing the mapping) and its address."""
    v = (ctypes.c_char * n).from_buffer(m)
    return v, ctypes.addressof(v)


def gbps(s):
    return n / s / 1e9


path = os.path.join(a.dir, "ws-register-probe")
for r in range(a.rounds):
    # (1) today's path: D2H into the pinned slot, then a host copy into the file's pages
    m = mapped(path, n, fresh=True)
    t0 = time.perf_counter()
    pinned.copy_(src)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    v, ptr = view(m)
    ctypes.memmove(ptr, pinned.data_ptr(), n)
    t2 = time.perf_counter()
    del v
    print(f"round {r} (1) pinned slot + memcpy, fresh pages: D2H {t1 - t0:.3f} s ({gbps(t1 - t0):.1f} GB/s),"
          f" memcpy {t2 - t1:.3f} s ({gbps(t2 - t1):.1f} GB/s), total {t2 - t0:.3f} s ({gbps(t2 - t0):.1f} GB/s)")
    m.close()
    for fresh in (True, False):
        m = mapped(path, n, fresh=fresh)
        v, ptr = view(m)
        if not fresh:
            ctypes.memset(ptr, 1, n)  # pages already in the file, as a reused one
        t0 = time.perf_counter()
        err = cudart.cudaHostRegister(ptr, n, 0)
        t1 = time.perf_counter()
        if int(err) != 0:
            print(f"round {r} (2) cudaHostRegister failed: {err}")
            del v
            m.close()
            continue
        dst = torch.frombuffer(m, dtype=torch.uint8, count=n)
        dst.copy_(src)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        cudart.cudaHostUnregister(ptr)
        t3 = time.perf_counter()
        kind = "fresh pages" if fresh else "written pages"
        print(f"round {r} (2) register + D2H into the file, {kind}: register {t1 - t0:.3f} s,"
              f" D2H {t2 - t1:.3f} s ({gbps(t2 - t1):.1f} GB/s), unregister {t3 - t2:.3f} s,"
              f" total {t3 - t0:.3f} s ({gbps(t3 - t0):.1f} GB/s)")
        del dst, v
        m.close()
os.unlink(path)
