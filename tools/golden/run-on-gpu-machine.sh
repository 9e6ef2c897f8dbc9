#!/usr/bin/env bash
# Runs the reference generator where PyTorch is (the GPU machine; it runs on the CPU there):
# first checks it against the shared golden set when that was carried in .device/shared,
# then writes the project's fixtures to $OUT/golden.tar (unpack into testdata/).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
python3 -c 'import torch, safetensors; print("torch", torch.__version__, "safetensors", safetensors.__version__)'
if [ -d .device/shared/golden ]; then
  python3 tools/golden/make_golden.py quantize .device/shared/golden/bf16 "$work/check"
  for f in fp8 fp8_ue8m0 int4_g128 int4_g32; do
    echo "shared golden $f vs this generator:"
    python3 .device/shared/tools/hfcmp.py .device/shared/golden/$f "$work/check/$f"
  done
fi
python3 tools/golden/make_golden.py all "$work/golden"
tar -C "$work" -cf "${OUT:-.}/golden.tar" golden
