# Issue 17's relay target and where the time goes, on the GPU machine (device tool), from the repo
# root, carrying .device/jre.tar.xz, .device/lib (linux-x86_64 natives only), .device/shared/tools
# and .device/prof (async-profiler's libasyncProfiler.so from tools.profiler:async-profiler:4.2,
# the py-spy wheel).
#   1. the Qwen3-4B-shaped set (8.04 GB BF16) as a folder, pushed by the CLI (--streams 8) into
#      (a) one colocated --device $DEVICE sidecar with a stand-in engine, and (b) a trainer-side
#      --device $DEVICE sidecar relaying to 3 engine-side sidecars (stand-in engines), with
#      --relay-streams 4 and 1; rounds alternate; bytes compared;
#   2. CPU profiles: the colocated sidecar and one CLI push (async-profiler, by thread), the Python
#      client's 8-stream push (py-spy).
set -u
# DEVICE=cpu MODEL=DIR PYTHON=0 runs the same steps without a GPU (to check the script itself).
[ -f .device/jre.tar.xz ] && tar xJf .device/jre.tar.xz -C /tmp && export PATH=/tmp/jre/bin:$PATH
DEVICE=${DEVICE:-cuda}; MODEL=${MODEL:-/dev/shm/m4b}
AP=$PWD/.device/prof/libasyncProfiler.so
# PROFILE_RELAY=1: CPU profiles of the relaying trainer-side sidecar and of one engine-side one
rprof() { [ "${PROFILE_RELAY:-0}" = 1 ] && echo "-agentpath:$AP=start,event=itimer,interval=1ms,threads,file=$OUT/$1.collapsed"; }
W() { java -cp "$PWD/.device/lib/*" dev.weightsync.cli.WeightsyncCommand "$@"; }
WC() { java -XX:TieredStopAtLevel=1 -cp "$PWD/.device/lib/*" dev.weightsync.cli.WeightsyncCommand "$@"; }
H=.device/shared/tools/hfcmp.py
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nproc; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; df -h /dev/shm | tail -1
[ -d "$MODEL" ] || python3 tools/gpu/save_4b.py "$MODEL"
for i in 0 1 2 3; do W engine --port $((30000 + i)) > /tmp/engine-$i.log 2>&1 & done
sleep 3
for i in 1 2 3; do
  java $( [ $i = 1 ] && rprof engine-side) -cp "$PWD/.device/lib/*" dev.weightsync.cli.WeightsyncCommand serve --role engine --port $((50060 + i)) --metrics-port -1 --staging-dir /dev/shm/es-$i \
    --sglang-url http://127.0.0.1:$((30000 + i)) --keep-versions 1 > /tmp/es-$i.log 2>&1 &
done
WEIGHTSYNC_PROFILE=${PROFILE_SIDECAR:-1}
prof=(); [ "$WEIGHTSYNC_PROFILE" = 1 ] && prof=(-agentpath:$AP=start,event=itimer,interval=1ms,threads,file=$OUT/colocated.collapsed)
java "${prof[@]}" -cp "$PWD/.device/lib/*" dev.weightsync.cli.WeightsyncCommand serve --device $DEVICE \
  --port 50051 --metrics-port -1 --staging-dir /dev/shm/co --sglang-url http://127.0.0.1:30000 \
  --keep-versions 1 > /tmp/co.log 2>&1 &
relays=(--relay-to 127.0.0.1:50061 --relay-to 127.0.0.1:50062 --relay-to 127.0.0.1:50063)
java $(rprof trainer-side) -cp "$PWD/.device/lib/*" dev.weightsync.cli.WeightsyncCommand serve --role trainer --device $DEVICE --port 50071 --metrics-port -1 --staging-dir /dev/shm/tr4 \
  --keep-versions 1 --relay-streams 4 "${relays[@]}" > /tmp/tr4.log 2>&1 &
W serve --role trainer --device $DEVICE --port 50072 --metrics-port -1 --staging-dir /dev/shm/tr1 \
  --keep-versions 1 --relay-streams 1 "${relays[@]}" > /tmp/tr1.log 2>&1 &
for p in 50051 50061 50062 50063 50071 50072; do
  for i in $(seq 90); do WC health --target 127.0.0.1:$p >/dev/null 2>&1 && break; sleep 1; done
done
push() {  # TARGET_PORT VERSION [java options]
  local port=$1 v=$2; shift 2
  local t0=$(date +%s.%N)
  java -XX:TieredStopAtLevel=1 "$@" -cp "$PWD/.device/lib/*" dev.weightsync.cli.WeightsyncCommand \
    push --target 127.0.0.1:$port --model-dir $MODEL --version $v --streams 8 > /tmp/push-$v.log 2>&1
  local rc=$?
  local t1=$(date +%s.%N)
  printf '%-14s rc=%d wall %s s | %s\n' $v $rc $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") \
    "$(grep -h '^timings' /tmp/push-$v.log | head -1)"
  [ $rc = 0 ] || tail -3 /tmp/push-$v.log
}
echo "== warm-up (not counted: first touches of memory, JIT)"
push 50051 warm-co; push 50071 warm-r4
echo "== rounds: colocated | relay x3, 1 stream per target | relay x3, 4 streams per target"
for r in 1 2; do
  push 50051 co-$r; push 50072 r1-$r; push 50071 r4-$r
done
df -h /dev/shm | tail -1
echo "== bytes: each engine-side folder against the colocated one"
for i in 1 2 3; do python3 $H /dev/shm/co/co-2 /dev/shm/es-$i/r4-2 | tail -1; done
grep -h "version=r4-2\|version=co-2" /tmp/co.log /tmp/tr4.log /tmp/es-1.log | cut -c1-260
echo "== one CLI push, profiled"
push 50051 co-prof -agentpath:$AP=start,event=itimer,interval=1ms,threads,file=$OUT/push.collapsed
if [ "${PYTHON:-1}" = 1 ]; then
echo "== Python client, 8 streams (bytes), timed then under py-spy"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .device/prof/py_spy*.whl 2>&1 | tail -1
python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 --cases b --streams 8 2>&1 | tail -2
/tmp/site/bin/py-spy record -r 250 --threads -f raw -o $OUT/python.collapsed -- \
  python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 --cases b --streams 8 2>&1 | tail -3
/tmp/site/bin/py-spy record -r 250 --threads --gil -f raw -o $OUT/python-gil.collapsed -- \
  python3 tools/gpu/bench_cuda_ipc.py 127.0.0.1:50051 --cases b --streams 8 2>&1 | tail -3
fi
pkill -f "WeightsyncCommand serve"; sleep 5
grep -E "SEVERE|Exception" /tmp/*.log | head -5
ls -la $OUT
