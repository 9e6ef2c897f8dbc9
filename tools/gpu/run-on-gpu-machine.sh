# The GPU-machine verification batch (device tool): run from the repo root with .device/ carrying
# a JRE (jlink with jdk.httpserver), the jars in .device/lib and ../shared copied to .device/shared.
tar xJf .device/jre.tar.xz -C /tmp; export PATH=/tmp/jre/bin:$PATH
W() { java -cp ".device/lib/*" dev.weightsync.cli.WeightsyncCommand "$@"; }; G=.device/shared/golden; H=.device/shared/tools/hfcmp.py
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv
echo == goldens via convert --device cuda
for f in "fp8 fp8-block" "fp8_ue8m0 fp8-block-ue8m0" "int4_g32 int4-group --group-size=32"; do set -- $f; d=$1; shift
  W convert --device cuda --input-dir $G/bf16 --output-dir /tmp/gpu-$d --format "$@" 2>&1 | tail -1
  python3 $H $G/$d /tmp/gpu-$d | tail -2; done
echo == consumer check
python3 tools/gpu/consumer_check.py $G/bf16 /tmp/gpu-fp8 | tail -3
python3 tools/gpu/consumer_check.py $G/bf16 /tmp/gpu-int4_g32 | tail -3
W engine --port 30000 > /tmp/engine.log 2>&1 &
W serve --device cuda --port 50051 --metrics-port 9464 --staging-dir /dev/shm/ws --sglang-url http://127.0.0.1:30000 > /tmp/serve.log 2>&1 &
sleep 8
echo == sidecar push
W push --target 127.0.0.1:50051 --model-dir $G/bf16 --version 1
python3 $H $G/fp8 /dev/shm/ws/1 | tail -2
python3 tools/gpu/torch_push.py 127.0.0.1:50051 $G/bf16 2 && python3 $H $G/fp8 /dev/shm/ws/2 | tail -2
W status --target 127.0.0.1:50051 | head -5
W bench gpu --iterations 20 2>&1 | tee $OUT/bench-gpu.txt
echo == relay: trainer-side on cuda, engine-side with a stand-in engine
W engine --port 30001 > /tmp/engine2.log 2>&1 &
W serve --role engine --port 50061 --metrics-port -1 --staging-dir /dev/shm/ws-engine --sglang-url http://127.0.0.1:30001 > /tmp/es.log 2>&1 &
sleep 6
W serve --role trainer --device cuda --port 50071 --metrics-port -1 --staging-dir /dev/shm/ws-trainer --relay-to 127.0.0.1:50061 > /tmp/ts.log 2>&1 &
sleep 8
W push --target 127.0.0.1:50071 --model-dir $G/bf16 --version r1
python3 $H $G/fp8 /dev/shm/ws-engine/r1 | tail -2
grep -h "serving" /tmp/ts.log /tmp/es.log | cut -c1-200
