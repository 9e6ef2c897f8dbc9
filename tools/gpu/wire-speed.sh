# Issue 17 on the GPU machine (device tool), from the repo root, carrying .device/jre.tar.xz,
# .device/lib (the jars, linux-x86_64 natives only), .device/grpcbench (grpcbench.jar, run.sh,
# sink_client.py; its lib/ is ours: the same grpc, Netty and protobuf) and .device/shared/tools.
#   1. grpcbench, --crc, 1/4/8 streams: raw TCP and the zero-copy rows (the ceiling);
#   2. bin/weightsync push of a 2 GiB folder into a separate `serve --format bf16` (1/4/8 streams);
#   3. the Qwen3-4B-shaped set on the GPU: Python push (8/4/1 streams) into a --device cuda
#      sidecar, push_cuda, and plain PyTorch.
set -u
tar xJf .device/jre.tar.xz -C /tmp; export PATH=/tmp/jre/bin:$PATH
ln -sfn ../lib .device/grpcbench/lib
# bin/weightsync's choice of JIT (C1 for the client commands) without the Maven build it expects
printf '#!/bin/bash\ncase "$1" in push|status|health) j=-XX:TieredStopAtLevel=1;; *) j=;; esac\nexec java $j -cp "%s/.device/lib/*" dev.weightsync.cli.WeightsyncCommand "$@"\n' "$PWD" > /tmp/ws
chmod +x /tmp/ws
W=/tmp/ws
nproc; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c 'import crc32c' 2>&1 | tail -1
case "${1:-all}" in
grpcbench|all)
  for n in 4 8; do
    echo "== grpcbench --crc --streams=$n"
    bash .device/grpcbench/run.sh --only=raw.tcp,6.zc-both,9.combo --crc --streams=$n --total=2GiB --no-python --jit-warmup-max=30 2>/dev/null
  done ;;&
push|all)
  echo "== CLI push into serve --format bf16 (separate processes)"
  python3 tools/bench/make_model.py /dev/shm/m2g --bytes 2GiB
  python3 tools/bench/push_vs_iperf.py --model-dir /dev/shm/m2g --rounds 3 --streams 1,4,8 \
    --chunk-sizes 4MiB,1MiB --weightsync /tmp/ws 2>&1 | tail -14
  rm -rf /dev/shm/m2g ;;&
python|all)
  echo "== Qwen3-4B-shaped set: Python push into a --device cuda sidecar, push_cuda, PyTorch"
  pkill -f WeightsyncCommand; sleep 1; rm -rf /dev/shm/ws
  $W engine --port 30000 > /tmp/engine.log 2>&1 &
  python3 - <<'PY'
import time, urllib.request
for _ in range(120):
    try:
        urllib.request.urlopen("http://127.0.0.1:30000/health", timeout=1); break
    except Exception:
        time.sleep(0.5)
PY
  $W serve --device cuda --port 50051 --metrics-port -1 --staging-dir /dev/shm/ws \
    --sglang-url http://127.0.0.1:30000 --keep-versions 8 > /tmp/serve.log 2>&1 &
  for i in $(seq 60); do $W health --target 127.0.0.1:50051 >/dev/null 2>&1 && break; sleep 1; done
  python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 2>&1 | tail -12
  for s in 8s 4s; do python3 .device/shared/tools/hfcmp.py /dev/shm/ws/ipc-4b /dev/shm/ws/bytes-4b-$s | tail -1; done
  python3 .device/shared/tools/hfcmp.py /dev/shm/ws/ipc-4b /dev/shm/ws/bytes-4b | tail -1
  grep -E "WARN|SEVERE|Exception" /tmp/serve.log | head -5 ;;
esac
