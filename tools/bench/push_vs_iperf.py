#!/usr/bin/env python3
"""Real processes, one run: `bin/weightsync push` into a separate `serve --format bf16` process
(staging on /dev/shm, no engine), beside iperf3 on the same loopback and, when given, grpcbench.

Each case pushes the same BF16 folder --rounds times (the first push to a fresh server is "cold":
its JIT has not seen the path; later ones are "warm"); every push is a new client process, as a
trainer's script would start it. Reported per case: wall seconds of the push command, GB/s
(1e9 bytes/s over the wall time, JVM start included), the ratio to iperf3's single stream, and
CPU-seconds per GB of the client process and of the sidecar (user + system, from
getrusage and /proc/PID/stat).

    python3 tools/bench/push_vs_iperf.py [--bytes 2GiB] [--rounds 4] [--streams 1,4]
        [--chunk-sizes 4MiB,1MiB,256KiB] [--grpcbench DIST] [--java-opts "..."]

Needs: a built checkout (./mvnw -DskipTests package), iperf3, numpy (for the model), /dev/shm.
Prints a table; numbers only, it asserts nothing.
"""
import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEIGHTSYNC = [os.path.join(ROOT, "bin", "weightsync")]
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def iperf3(seconds=5):
    port = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 8 / 1e9
    finally:
        server.wait(timeout=30)


def wait_ready(port, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("serve did not open its port")


def push(env, port, model, version, streams, chunk):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(WEIGHTSYNC + ["push", "--target", f"127.0.0.1:{port}", "--model-dir", model,
                    "--version", version, "--streams", str(streams), "--chunk-size", chunk],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def model_bytes(model):
    with open(os.path.join(model, "model.safetensors"), "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()
               if k != "__metadata__")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bytes", default="2GiB")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--streams", default="1,4")
    p.add_argument("--chunk-sizes", default="4MiB,1MiB,256KiB")
    p.add_argument("--model-dir", help="an existing BF16 folder (default: one is made)")
    p.add_argument("--grpcbench", help="grpcbench's dist/ folder: its raw.tcp, 6.zc-both and 9.combo rows run too")
    p.add_argument("--java-opts", default=None, help="WEIGHTSYNC_JAVA_OPTS for both processes")
    p.add_argument("--weightsync", help="the command that runs weightsync (default bin/weightsync)")
    a = p.parse_args()
    global WEIGHTSYNC
    if a.weightsync:
        WEIGHTSYNC = a.weightsync.split()
    work = tempfile.mkdtemp(prefix="ws-pushbench-")
    staging = tempfile.mkdtemp(prefix="ws-pushbench-", dir="/dev/shm")
    env = dict(os.environ)
    if a.java_opts is not None:
        env["WEIGHTSYNC_JAVA_OPTS"] = a.java_opts
    try:
        model = a.model_dir
        if model is None:
            model = os.path.join(work, "model")
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench", "make_model.py"), model,
                            "--bytes", a.bytes], check=True, stdout=subprocess.DEVNULL)
        total = model_bytes(model)
        subprocess.run(["cat", os.path.join(model, "model.safetensors")], check=True,
                       stdout=subprocess.DEVNULL)  # in the page cache, as a trainer's fresh save is
        print(f"{os.cpu_count()} cores; model {total / 1e9:.2f} GB BF16; staging {staging}")
        tcp = iperf3() if shutil.which("iperf3") else float("nan")
        print(f"iperf3, 1 stream, loopback: {tcp:.2f} GB/s" if tcp == tcp
              else "no iperf3 here: the /iperf3 column is empty (grpcbench's raw.tcp row is the baseline)")
        rows = []
        for chunk in a.chunk_sizes.split(","):
            for streams in [int(s) for s in a.streams.split(",")]:
                port = free_port()
                log = open(os.path.join(work, f"serve-{chunk}-{streams}.log"), "w")
                serve = subprocess.Popen(WEIGHTSYNC + ["serve", "--format", "bf16", "--port", str(port),
                                          "--metrics-port", "-1", "--keep-versions", "1",
                                          "--staging-dir", os.path.join(staging, f"s{port}")],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
                try:
                    wait_ready(port, serve)
                    for r in range(a.rounds):
                        s0 = proc_cpu(serve.pid)
                        wall, cpu = push(env, port, model, f"v{r}", streams, chunk)
                        srv = proc_cpu(serve.pid) - s0
                        rows.append((chunk, streams, "cold" if r == 0 else "warm", wall, cpu, srv))
                        print(f"  chunk {chunk:>7} streams {streams}: round {r + 1}: {wall:.2f} s,"
                              f" {total / wall / 1e9:.2f} GB/s", flush=True)
                finally:
                    serve.terminate()
                    serve.wait(timeout=60)
                    log.close()
        gb = total / 1e9
        print()
        print(f"{'chunk':>7} {'streams':>7} {'round':>5} {'wall s':>7} {'GB/s':>6} {'/iperf3':>8}"
              f" {'client CPU-s/GB':>16} {'sidecar CPU-s/GB':>17}")
        for chunk, streams, kind, wall, cpu, srv in rows:
            best = kind == "warm" and wall == min(w for c, s, k, w, _, _ in rows
                                                  if c == chunk and s == streams and k == "warm")
            if kind == "cold" or best:
                print(f"{chunk:>7} {streams:>7} {kind if kind == 'cold' else 'best':>5} {wall:7.2f}"
                      f" {gb / wall:6.2f} {gb / wall / tcp:7.0%} {cpu / gb:16.2f} {srv / gb:17.2f}")
        if a.grpcbench:
            print("\ngrpcbench, same run (--crc, 1 and 4 streams):", flush=True)
            subprocess.run([os.path.join(a.grpcbench, "run.sh"), "--only=raw.tcp,6.zc-both,9.combo",
                            "--crc", "--total=" + a.bytes, "--no-python"], check=False,
                           stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    main()
