#!/usr/bin/env bash
# Issue 21, item 5, on the GPU machine in one run: the Qwen3-4B-shaped set by push_cuda (ROUNDS
# versions, default 20: trainer GPU memory after each, open IPC handles after all), by bytes
# through the Python client (8 streams) and by plain PyTorch (bench_cuda_ipc.py), whether the
# push_cuda and the byte folders hold the same bytes (compare), and the engine-side read of the
# staged folder into the GPU (engine_read.py); then push_cuda again on a sidecar with
# --staging-reuse (ROUNDS versions written into the pruned versions' files) twice: with the kept
# files' pages left unlocked (-Dweightsync.staging.pageLock=false: results through the pinned
# slots) and page-locked (the GPU copies results straight into them); and a sidecar with
# --device cuda:all (and reuse), which must open the bucket's GPU by its UUID; all must stage the
# same bytes. Needs .device/jre.tar.xz and .device/lib.
set -uo pipefail
cd "$(dirname "$0")/../.."
tar xJf .device/jre.tar.xz -C /tmp; export PATH=/tmp/jre/bin:$PATH
W() { java -cp ".device/lib/*" dev.weightsync.cli.WeightsyncCommand "$@"; }
out=${OUT:-/tmp}
# JFR=1: the sidecar records a flight recording ($out/serve-DEVICE.jfr; the JRE needs jdk.jfr),
# to see by thread where a push_cuda version's time goes (jfr print --events ExecutionSample).
jfr() { [ "${JFR:-0}" = 1 ] && echo "-XX:StartFlightRecording=filename=$out/serve-${1/:/-}.jfr,settings=profile,dumponexit=true"; }
start() {  # the device, then other serve flags; JOPTS: more JVM options
  local device=$1; shift
  # shellcheck disable=SC2046,SC2086 # the options are words or none
  java $(jfr "$device") ${JOPTS:-} -cp ".device/lib/*" dev.weightsync.cli.WeightsyncCommand serve --device "$device" --gpu-slots "${SLOTS:-8}" --port 50051 --metrics-port 9464 \
    --staging-dir /dev/shm/ws --sglang-url http://127.0.0.1:30000 --keep-versions 4 "$@" > /tmp/serve.log 2>&1 &
  for i in $(seq 60); do W health --target 127.0.0.1:50051 >/dev/null 2>&1 && break; sleep 1; done
}
W engine --port 30000 > /tmp/engine.log 2>&1 &
start cuda
df -h /dev/shm | tail -1
python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 --cases b --streams 8 2>&1 | tee "$out/push-cuda.txt"
cp -r /dev/shm/ws/bytes-4b-8s /dev/shm/bytes-reference  # the sidecar prunes it (--keep-versions 4)
# LEGS=direct: only the byte path's reference and the leg with page-locked kept files
if [ "${LEGS:-all}" = all ]; then
  python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 --cases ac --rounds "${ROUNDS:-20}" \
    --metrics http://127.0.0.1:9464/metrics 2>&1 | tee -a "$out/push-cuda.txt"
  echo "== push_cuda folder against the byte path's"
  W compare -q /dev/shm/bytes-reference /dev/shm/ws/ipc-4b 2>&1 | tail -2 | tee -a "$out/push-cuda.txt"
  echo "== engine-side read"
  python3 tools/gpu/engine_read.py /dev/shm/ws/ipc-4b 2>&1 | tee -a "$out/push-cuda.txt"
fi
grep -E "WARN|SEVERE|Exception" /tmp/serve.log | head -5
pkill -f "WeightsyncCommand serve"; sleep 3; rm -rf /dev/shm/ws
reuse_leg() {  # a title, then JVM options for the sidecar
  echo "== --staging-reuse, $1: back to back, then PAUSE s (default 2) between versions (a training step)" | tee -a "$out/push-cuda.txt"
  JOPTS="$2 -Djava.util.logging.config.file=tools/gpu/staging-fine.properties" start cuda --staging-reuse
  python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 --cases a --rounds "${ROUNDS:-20}" \
    --metrics http://127.0.0.1:9464/metrics 2>&1 | tee -a "$out/push-cuda.txt"
  python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 --cases a --rounds "${ROUNDS:-20}" --no-warmup \
    --pause "${PAUSE:-2}" --metrics http://127.0.0.1:9464/metrics 2>&1 | tee -a "$out/push-cuda.txt"
  W compare -q /dev/shm/bytes-reference /dev/shm/ws/ipc-4b 2>&1 | tail -2 | tee -a "$out/push-cuda.txt"
  python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode())" | grep -E "^weightsync_staging_(reusable_|direct_)?bytes" | tee -a "$out/push-cuda.txt"
  df -h /dev/shm | tail -1 | tee -a "$out/push-cuda.txt"
  grep -E "WARN|SEVERE|Exception" /tmp/serve.log | head -5
  echo "-- the staging layer's times (last 12 lines of each kind)" | tee -a "$out/push-cuda.txt"
  grep -hE "bytes loaded in" /tmp/serve.log | tail -12 | tee -a "$out/push-cuda.txt"
  grep -hE "unmapped in" /tmp/serve.log | tail -12 | tee -a "$out/push-cuda.txt"
  cp /tmp/serve.log "$out/serve-reuse-${3}.log"
  pkill -f "WeightsyncCommand serve"; sleep 3; rm -rf /dev/shm/ws
}
[ "${LEGS:-all}" = all ] && reuse_leg "pages not locked (pinned slots)" "-Dweightsync.staging.pageLock=false" slots
reuse_leg "pages locked (results straight into the kept files)" "" direct
[ "${LEGS:-all}" = all ] || { pkill -f "WeightsyncCommand engine"; exit 0; }
echo "== --device cuda:all --staging-reuse" | tee -a "$out/push-cuda.txt"
start cuda:all --staging-reuse
python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 --cases a --rounds 6 \
  --metrics http://127.0.0.1:9464/metrics 2>&1 | grep -E "^\(a\)|sidecar after" | tee -a "$out/push-cuda.txt"
W compare -q /dev/shm/bytes-reference /dev/shm/ws/ipc-4b 2>&1 | tail -2 | tee -a "$out/push-cuda.txt"
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode())" | grep -E "^weightsync_staging_direct_bytes" | tee -a "$out/push-cuda.txt"
grep -hE "opened cuda|serving|WARN|SEVERE" /tmp/serve.log | cut -c1-220 | head -5 | tee -a "$out/push-cuda.txt"
pkill -f "WeightsyncCommand serve"; pkill -f "WeightsyncCommand engine"
