#!/usr/bin/env bash
# Regenerates kernels/quantize.ptx from quantize.cu when nvcc is on PATH (else keeps the committed
# PTX). The first line of the PTX records the SHA-256 of the source, which a test compares.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/quantize.cu"
out="$here/../resources/kernels/quantize.ptx"
hash=$(sha256sum "$src" | cut -d' ' -f1)
if [ -f "$out" ] && head -1 "$out" | grep -q "$hash"; then
  exit 0  # up to date
fi
if ! command -v nvcc >/dev/null 2>&1; then
  echo "build-ptx: nvcc not found; the committed PTX does not match quantize.cu (the PTX test will fail)" >&2
  exit 0
fi
tmp=$(mktemp)
# compute_80: JIT-compiled by the driver on A100, H100, H200 and newer. No fast-math, no FMA.
nvcc -ptx -arch=compute_80 -fmad=false -prec-div=true -prec-sqrt=true -ftz=false -O3 -o "$tmp" "$src"
{ echo "// weightsync-source-sha256: $hash"; cat "$tmp"; } > "$out"
rm -f "$tmp"
echo "build-ptx: regenerated $out"
