#!/usr/bin/env python3
"""Measures the sidecar's memory promise on real processes: peak heap, direct buffers and RSS.

1. For each chunk size, a `serve` under the given -Xmx (default 1g) takes a `push` of the model
   (a folder; --bytes makes a synthetic one with tools/bench/make_model.py); the script polls the
   sidecar's /metrics and /proc every 100 ms and reports the peaks.
2. A soak: --soak-versions versions of a small model pushed one after another into one sidecar
   (keep-versions 1), every --discard-every-th push killed half-way so its part is discarded; after
   each version the staging filesystem's used bytes and weightsync_staging_mapped_bytes are
   recorded, and the spread is reported (flat means nothing leaks).

    python3 tools/bench/memory_run.py --bytes 6GB --chunk-sizes 4KiB,4MiB [--xmx 1g]
        [--staging /dev/shm/ws-memory] [--soak-versions 100] [--weightsync bin/weightsync]
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    out = {"heap": 0.0, "direct": 0.0, "mapped": 0.0}
    for line in text.splitlines():
        if line.startswith("jvm_memory_used_bytes") and 'area="heap"' in line:
            out["heap"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("jvm_buffer_memory_used_bytes") and 'id="direct"' in line:
            out["direct"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("weightsync_staging_mapped_bytes"):
            out["mapped"] = float(line.rsplit(" ", 1)[1])
    return out


def rss(pid):
    """(VmRSS, VmHWM) in bytes of the JVM: the child of bin/weightsync's shell, or pid itself."""
    for p in [pid] + children(pid):
        try:
            status = open("/proc/%d/status" % p).read()
        except OSError:
            continue
        if "java" in open("/proc/%d/comm" % p).read():
            kb = {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}
            return kb.get("VmRSS", 0) * 1024, kb.get("VmHWM", 0) * 1024
    return 0, 0


def children(pid):
    try:
        return [int(c) for c in open("/proc/%d/task/%d/children" % (pid, pid)).read().split()]
    except OSError:
        return []


class Sidecar:
    def __init__(self, cmd, staging, xmx, extra=()):
        self.port, self.mport = free_port(), free_port()
        env = dict(os.environ, WEIGHTSYNC_JAVA_OPTS="-Xmx%s" % xmx)
        self.log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd + ["serve", "--port", str(self.port), "--metrics-port",
                                            str(self.mport), "--staging-dir", staging,
                                            "--keep-versions", "1", *extra],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(600):
            try:
                metrics(self.mport)
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("serve did not start; see " + self.log.name)

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


class Peaks(threading.Thread):
    def __init__(self, sidecar):
        super().__init__(daemon=True)
        self.sidecar, self.stop, self.peak = sidecar, threading.Event(), {}

    def run(self):
        while not self.stop.is_set():
            try:
                m = metrics(self.sidecar.mport)
            except OSError:
                m = {}
            m["rss"], m["hwm"] = rss(self.sidecar.proc.pid)
            for k, v in m.items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            time.sleep(0.1)


def used(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def mib(b):
    return "%.0f MiB" % (b / 2**20)


def push(cmd, port, model, version, chunk, kill_after=None):
    p = subprocess.Popen(cmd + ["push", "--target", "127.0.0.1:%d" % port, "--model-dir", model,
                                "--version", version, "--chunk-size", chunk],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if kill_after is not None:
        time.sleep(kill_after)
        p.kill()
        p.wait()
        return None
    out = p.communicate()[0].decode()
    if p.returncode != 0:
        raise SystemExit("push failed: " + out)
    return out


def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--model")
    a.add_argument("--bytes", default="6GB")
    a.add_argument("--chunk-sizes", default="4KiB,4MiB")
    a.add_argument("--xmx", default="1g")
    a.add_argument("--format", default="fp8-block")
    a.add_argument("--staging", default="/dev/shm/ws-memory")
    a.add_argument("--soak-versions", type=int, default=100)
    a.add_argument("--soak-bytes", default="64MiB")
    a.add_argument("--discard-every", type=int, default=5)
    a.add_argument("--weightsync", default=os.path.join(ROOT, "bin", "weightsync"))
    o = a.parse_args()
    cmd = o.weightsync.split()
    work = tempfile.mkdtemp(prefix="ws-memory-", dir="/var/tmp")
    try:
        model = o.model
        if model is None:
            model = os.path.join(work, "model")
            subprocess.check_call([sys.executable, os.path.join(HERE, "make_model.py"), model,
                                   "--bytes", o.bytes])
        size = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model))
        print("model %s: %.2f GB; serve -Xmx%s --format %s, staging %s"
              % (model, size / 1e9, o.xmx, o.format, o.staging))
        for chunk in o.chunk_sizes.split(","):
            shutil.rmtree(o.staging, ignore_errors=True)
            s = Sidecar(cmd, o.staging, o.xmx, ["--format", o.format])
            peaks = Peaks(s)
            peaks.start()
            t0 = time.time()
            push(cmd, s.port, model, "m", chunk)
            wall = time.time() - t0
            peaks.stop.set()
            peaks.join()
            p = peaks.peak
            print("chunks %-5s %6.1f s  peak heap %s  direct buffers %s  RSS %s (VmHWM %s)"
                  "  mapped %s" % (chunk, wall, mib(p.get("heap", 0)), mib(p.get("direct", 0)),
                                   mib(p.get("rss", 0)), mib(p.get("hwm", 0)),
                                   mib(p.get("mapped", 0))))
            s.close()
        if o.soak_versions:
            small = os.path.join(work, "small")
            subprocess.check_call([sys.executable, os.path.join(HERE, "make_model.py"), small,
                                   "--bytes", o.soak_bytes])
            shutil.rmtree(o.staging, ignore_errors=True)
            s = Sidecar(cmd, o.staging, o.xmx, ["--format", o.format])
            rows, discarded = [], 0
            for i in range(o.soak_versions):
                if o.discard_every and i % o.discard_every == o.discard_every - 1:
                    push(cmd, s.port, small, "cut%d" % i, "4MiB", kill_after=1.2)
                    discarded += 1
                push(cmd, s.port, small, "v%d" % i, "4MiB")
                time.sleep(0.2)  # the killed push's part is discarded on its own executor
                rows.append((used(o.staging), metrics(s.mport)["mapped"], rss(s.proc.pid)[0]))
            s.close()
            cut = open(s.log.name).read().count("stream cancelled or broken; part discarded")
            u = [r[0] for r in rows[5:]]
            m = [r[1] for r in rows]
            r = [r[2] for r in rows[5:]]
            print("soak: %d versions, %d pushes killed half-way (%d of them caught mid-part and"
                  " discarded by the sidecar); staging used %s..%s, mapped %s..%s, RSS %s..%s"
                  " (after version 5)"
                  % (len(rows), discarded, cut, mib(min(u)), mib(max(u)), mib(min(m)),
                     mib(max(m)), mib(min(r)), mib(max(r))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(o.staging, ignore_errors=True)


if __name__ == "__main__":
    main()
