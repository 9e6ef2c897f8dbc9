#!/usr/bin/env bash
# Regenerates the committed PTX under ../resources/kernels/ from the CUDA sources when nvcc is on
# PATH (else keeps the committed PTX): <unit>.compute_<arch>.ptx for each unit (quantize: the
# kernels; proofs: bench gpu's exhaustive checks) and each arch in ptx-archs. The first line of
# every PTX records the SHA-256 of nvcc-flags, ptx-archs and the sources, in that order, which
# KernelsTest recomputes: a change to any of them makes the test fail until the PTX is rebuilt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out_dir="$here/../resources/kernels"
inputs=("$here/nvcc-flags" "$here/ptx-archs" "$here/quant_math.cuh" "$here/quantize.cu" "$here/proofs.cu")
hash=$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)
stale=0
for unit in quantize proofs; do
  for arch in $(cat "$here/ptx-archs"); do
    out="$out_dir/$unit.compute_$arch.ptx"
    if ! [ -f "$out" ] || ! head -1 "$out" | grep -q "$hash"; then stale=1; fi
  done
done
[ "$stale" = 0 ] && exit 0  # up to date
if ! command -v nvcc >/dev/null 2>&1; then
  echo "build-ptx: nvcc not found; the committed PTX does not match the CUDA sources (the PTX test will fail)" >&2
  exit 0
fi
mkdir -p "$out_dir"
tmp=$(mktemp)
for unit in quantize proofs; do
  for arch in $(cat "$here/ptx-archs"); do
    # shellcheck disable=SC2046 # the flags are words
    nvcc -ptx -arch="compute_$arch" $(cat "$here/nvcc-flags") -o "$tmp" "$here/$unit.cu"
    { echo "// weightsync-source-sha256: $hash"; cat "$tmp"; } > "$out_dir/$unit.compute_$arch.ptx"
  done
done
rm -f "$tmp"
echo "build-ptx: regenerated the PTX in $out_dir"
