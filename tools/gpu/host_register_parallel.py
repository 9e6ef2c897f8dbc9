#!/usr/bin/env python3
"""Whether registering staged pages with the CUDA driver still pays when several copies run at
once, as the sidecar's GPU slots do (issue 21, build item 1): --procs processes, each with its
own file of --mib/--procs MiB on /dev/shm and its own CUDA context, all starting each phase
together (a barrier); the wall time of a phase is the slowest process's.
  (1) the sidecar's path now: device -> pinned buffer, then memcpy into the file's fresh pages;
  (2) cudaHostRegister of the file's fresh pages, device -> those pages, cudaHostUnregister.
usage: host_register_parallel.py [--mib 4400] [--procs 8] [--rounds 2] [--dir /dev/shm]
"""
import argparse, ctypes, os, time

import torch
import torch.multiprocessing as mp

from staged_file import mapped


def worker(rank, n, rounds, directory, barrier, results):
    cudart = torch.cuda.cudart()
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    pinned = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    torch.cuda.synchronize()
    path = os.path.join(directory, f"ws-register-probe-{rank}")
    for r in range(rounds):
        for phase in ("pinned+memcpy", "register+d2h"):
            m = mapped(path, n)
            v = (ctypes.c_char * n).from_buffer(m)
            ptr = ctypes.addressof(v)
            barrier.wait()
            t0 = time.perf_counter()
            if phase == "pinned+memcpy":
                pinned.copy_(src)
                torch.cuda.synchronize()
                ctypes.memmove(ptr, pinned.data_ptr(), n)
                ok = True
            else:
                ok = int(cudart.cudaHostRegister(ptr, n, 0)) == 0
                if ok:
                    dst = torch.frombuffer(m, dtype=torch.uint8, count=n)
                    dst.copy_(src)
                    torch.cuda.synchronize()
                    cudart.cudaHostUnregister(ptr)
                    del dst
            results.put((r, phase, rank, time.perf_counter() - t0, ok))
            barrier.wait()
            del v
            m.close()
    os.unlink(path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=int, default=4400)
    p.add_argument("--procs", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dir", default="/dev/shm")
    a = p.parse_args()
    n = (a.mib << 20) // a.procs // 4096 * 4096
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(a.procs)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(i, n, a.rounds, a.dir, barrier, results))
             for i in range(a.procs)]
    for pr in procs:
        pr.start()
    rows = [results.get() for _ in range(a.procs * a.rounds * 2)]
    for pr in procs:
        pr.join()
    total = n * a.procs
    for r in range(a.rounds):
        for phase in ("pinned+memcpy", "register+d2h"):
            got = [x for x in rows if x[0] == r and x[1] == phase]
            wall = max(x[3] for x in got)
            ok = all(x[4] for x in got)
            print(f"round {r} {phase:14s} {a.procs} processes x {n >> 20} MiB: {wall:.3f} s"
                  f" ({total / wall / 1e9:.1f} GB/s){'' if ok else ' (a registration FAILED)'}")


if __name__ == "__main__":
    main()
