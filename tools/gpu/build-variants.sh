#!/usr/bin/env bash
# Builds PTX variants of the kernels for tools/gpu/kernels.sh, each a jar under
# .device/variants/NAME/ holding kernels/quantize.compute_90.ptx compiled with other tuning
# macros of quantize.cu (INT4_WORDS, FP8_BLOCKS_PER_SM, INT4_BLOCKS_PER_SM), so that one run on
# the GPU machine measures them beside the shipped kernels.
# usage: build-variants.sh NAME='-DMACRO=V ...' ...   (needs nvcc and jar)
set -euo pipefail
cd "$(dirname "$0")/../.."
src=server/src/main/cuda
rm -rf .device/variants
for spec in "$@"; do
  name=${spec%%=*}; flags=${spec#*=}
  d=.device/variants/$name; mkdir -p "$d/kernels"
  # shellcheck disable=SC2046,SC2086 # the flags are words
  nvcc -ptx -arch=compute_90 $(cat $src/nvcc-flags) $flags -o "$d/kernels/quantize.compute_90.ptx" $src/quantize.cu
  (cd "$d" && jar cf kernels.jar kernels && rm -r kernels)
  echo "$flags" > "$d/flags"
  echo "variant $name: $flags"
done
