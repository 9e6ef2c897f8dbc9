#!/usr/bin/env python3
"""push_cuda on the GPU machine (issue 10's GPU tests), against a sidecar on this GPU.

usage: cuda_ipc_check.py TARGET METRICS_URL GOLDEN_DIR HFCMP
  golden     the golden BF16 model by handle equals golden/fp8 (hfcmp)
  soak       20 versions by handle: trainer memory, the GPU's used memory and open IPC handles
             must end where they started
  crash      a trainer process that exits mid-version: the sidecar stays healthy, the version is
             aborted, the next version loads
Prints 'check ok: NAME' per check; exits 1 at the first failure.
"""
import glob, os, re, subprocess, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "python"))
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
import weightsync_client as ws  # noqa: E402

target, metrics_url, golden_dir, hfcmp = sys.argv[1:5]
bf16 = os.path.join(golden_dir, "bf16")


def fail(msg):
    print("check FAILED:", msg)
    sys.exit(1)


def open_handles():
    text = urllib.request.urlopen(metrics_url).read().decode()
    m = re.search(r"^weightsync_cuda_ipc_open_handles\S* (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def gpu_used_mib():
    """The whole GPU's used memory: the trainer's, the sidecar's and any IPC mappings."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


tensors = {}
for f in sorted(glob.glob(os.path.join(bf16, "*.safetensors"))):
    tensors.update(load_file(f, device="cuda"))
golden = sorted(tensors.items())
r = ws.push_cuda(golden, version="ipc-golden", target=target)
print("golden:", r.staged_path, [ws.pb.EngineOutcome.Name(e.outcome) for e in r.engines])
cmp = subprocess.run([sys.executable, hfcmp, os.path.join(golden_dir, "fp8"), r.staged_path],
                     capture_output=True, text=True)
print(cmp.stdout.strip().splitlines()[-1])
if cmp.returncode != 0:
    fail("the golden model by handle differs from golden/fp8")
print("check ok: golden by handle is golden/fp8, byte for byte")

# soak: 1 GB of 4096x4096 tensors, 20 versions
layer = [(f"model.layers.{i}.mlp.up_proj.weight",
          (torch.randn(4096, 4096, device="cuda") * 0.02).to(torch.bfloat16)) for i in range(32)]
rows = []
for v in range(20):
    ws.push_cuda(layer, version=f"soak-{v}", target=target, bucket_bytes=256 << 20)
    torch.cuda.synchronize()
    rows.append((torch.cuda.memory_allocated(), torch.cuda.memory_reserved(), gpu_used_mib(),
                 open_handles()))
for v in (0, 1, 9, 19):
    a, res, mib, h = rows[v]
    print(f"soak version {v + 1}: trainer allocated {a / 2**20:.0f} MiB reserved {res / 2**20:.0f} MiB;"
          f" GPU used {mib} MiB; open IPC handles {h}")
if rows[19][:3] != rows[1][:3] or rows[19][3] != 0:
    fail(f"memory or handles grew: {rows[1]} -> {rows[19]}")
print("check ok: soak flat over 20 versions")

# crash: a trainer that dies while its buckets are in flight
child = subprocess.Popen([sys.executable, "-c", f"""
import os, sys, torch
sys.path.insert(0, {os.path.join(HERE, '..', '..', 'client', 'python')!r})
import weightsync_client as ws
t = [(f"model.layers.{{i}}.mlp.up_proj.weight", torch.randn(8192, 8192, device="cuda").to(torch.bfloat16)) for i in range(24)]
acknowledged = ws._push_cuda._BucketSender.acknowledged
def die_after_two(self, index):  # exit with buckets still in flight, as a crashing trainer does
    acknowledged(self, index)
    if index == 1:
        os._exit(3)
ws._push_cuda._BucketSender.acknowledged = die_after_two
ws.push_cuda(t, version="crash-1", target={target!r}, bucket_bytes=128 << 20)
sys.exit("the push ended before the trainer could crash mid-version")
"""])
if child.wait() != 3:
    fail(f"the crashing trainer exited with {child.returncode}, not mid-version")
time.sleep(3)
st = ws.status(target)
if any(p.weight_version == "crash-1" for p in st.in_progress):
    fail("crash-1 is still in progress after its trainer exited")
if st.last_version == "crash-1":
    fail("crash-1 was loaded although its trainer exited mid-version")
if open_handles() != 0:
    fail(f"{open_handles()} IPC handles left open after the crash")
r = ws.push_cuda(layer, version="after-crash", target=target)
if r.weight_version != "after-crash":
    fail("the version after the crash did not load")
print(f"check ok: trainer crash (exit {child.returncode}) left the sidecar healthy; last version"
      f" {ws.status(target).last_version}")
