# Issues 9 and 10 on the GPU machine (device tool), from the repo root, with .device/ carrying a
# JRE, the jars (.device/lib) and ../shared (.device/shared), as run-on-gpu-machine.sh does.
# Part 1 (host path regression + CUDA IPC checks and benchmark) or part 2 (ingest benchmarks).
set -u
tar xJf .device/jre.tar.xz -C /tmp; export PATH=/tmp/jre/bin:$PATH
W() { java -cp ".device/lib/*" dev.weightsync.cli.WeightsyncCommand "$@"; }
G=.device/shared/golden; H=.device/shared/tools/hfcmp.py
start_sidecar() {  # extra serve flags in $@
  W engine --port 30000 > /tmp/engine.log 2>&1 &
  W serve --device cuda --port 50051 --metrics-port 9464 --staging-dir /dev/shm/ws \
    --sglang-url http://127.0.0.1:30000 --keep-versions 4 "$@" > /tmp/serve.log 2>&1 &
  for i in $(seq 60); do W health --target 127.0.0.1:50051 >/dev/null 2>&1 && break; sleep 1; done
}
case "${1:-1}" in
slots)  # (a) with 4, 8 and 16 GPU slots, one sidecar after the other
  for n in ${SLOTS_LIST:-4 8 16}; do
    start_sidecar --gpu-slots $n
    echo "== gpu-slots $n"; python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 --cases a \
      --rounds ${ROUNDS:-3} --metrics http://127.0.0.1:9464/metrics 2>&1 | grep -E "^\(a\)|memory|sidecar after"
    pkill -f "WeightsyncCommand serve"; pkill -f "WeightsyncCommand engine"; sleep 3; rm -rf /dev/shm/ws
  done ;;
1)  # SLOTS: --gpu-slots of the sidecar (default 4)
  nvidia-smi --query-gpu=name,uuid,memory.total,driver_version --format=csv; nproc; df -h /dev/shm | tail -1
  echo "== host path still exact: convert --device cuda"
  W convert --device cuda --input-dir $G/bf16 --output-dir /tmp/gpu-fp8 --format fp8-block 2>&1 | tail -1
  python3 $H $G/fp8 /tmp/gpu-fp8 | tail -1
  W convert --device cuda --input-dir $G/bf16 --output-dir /tmp/gpu-int4 --format int4-group --group-size 32 2>&1 | tail -1
  python3 $H $G/int4_g32 /tmp/gpu-int4 | tail -1
  start_sidecar --gpu-slots ${SLOTS:-4}
  echo "== CUDA IPC checks"
  python3 tools/gpu/cuda_ipc_check.py 127.0.0.1:50051 http://127.0.0.1:9464/metrics $G $H 2>&1 | tail -12
  echo "== Qwen3-4B-shaped: (a) IPC, (b) bytes, (c) pure PyTorch"
  python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 2>&1 | tail -12
  echo "ipc-4b vs bytes-4b:"; python3 $H /dev/shm/ws/bytes-4b /dev/shm/ws/ipc-4b | tail -2
  grep -E "WARN|SEVERE|Exception" /tmp/serve.log | head -5
  cp /tmp/serve.log $OUT/serve-part1.log ;;
2)
  echo "== bench ingest, GPU quantizer"
  W bench ingest --bytes 2GiB --streams 4 --device cuda --rounds 3 2>&1 | grep -v INFO | tail -8
  start_sidecar
  echo "== Python client into the cuda sidecar"
  python3 tools/bench_python_client.py 127.0.0.1:50051 --bytes 2147483648 --streams 4 --rounds 3 | tail -9 ;;
esac
