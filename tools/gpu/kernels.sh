#!/usr/bin/env bash
# On the GPU machine: `bench gpu` (the exhaustive proofs of the kernels' arithmetic, bytes against the
# CPU oracle, kernel bandwidth beside the device-to-device copy, host-to-host stream), then the
# kernel bandwidth alone for each PTX variant under .device/variants/NAME/ (a jar holding
# kernels/quantize.compute_90.ptx, put ahead of the product's: e.g. the previous kernels, to
# compare in the same run), then tools/gpu/goldens.sh. Needs .device/jre.tar.xz and .device/lib.
set -uo pipefail
cd "$(dirname "$0")/../.."
tar xJf .device/jre.tar.xz -C /tmp
export PATH=/tmp/jre/bin:$PATH
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
java -cp ".device/lib/*" dev.weightsync.cli.WeightsyncCommand bench gpu --iterations 20 \
  2>&1 | tee "$out/bench-gpu.txt"
for v in .device/variants/*/; do
  [ -d "$v" ] || continue
  name=$(basename "$v")
  # a variant with a file named "full" gets the proofs and the exactness checks too
  if [ -f "$v/full" ]; then mode=(); echo "== variant $name"; else
    mode=(--skip-exactness); echo "== variant $name (bandwidth only)"; fi
  java -cp "$v*:.device/lib/*" dev.weightsync.cli.WeightsyncCommand bench gpu --iterations 20 \
    "${mode[@]}" --stream-bytes 512MiB 2>&1 \
    | grep -E "^device|^proof|copy:|^kernel|DIFFERS|identical|differ" \
    | tee "$out/bench-gpu-variant-$name.txt"
done
echo "== goldens"
bash tools/gpu/goldens.sh 2>&1 | tee "$out/goldens.txt"
echo "== registering staged pages with the driver (tools/gpu/host_register.py)"
python3 tools/gpu/host_register.py --mib 512 --rounds 3 2>&1 | tee "$out/host-register.txt"
