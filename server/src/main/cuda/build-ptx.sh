#!/usr/bin/env bash
# Regenerates kernels/quantize.ptx from quantize.cu when nvcc is on PATH (else keeps the committed
# PTX). The first line of the PTX records the SHA-256 of the nvcc flags (nvcc-flags, one line)
# followed by the source, which KernelsTest recomputes: a change to either makes the test fail
# until the PTX is rebuilt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/quantize.cu"
flags_file="$here/nvcc-flags"
out="$here/../resources/kernels/quantize.ptx"
hash=$(cat "$flags_file" "$src" | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && head -1 "$out" | grep -q "$hash"; then
  exit 0  # up to date
fi
if ! command -v nvcc >/dev/null 2>&1; then
  echo "build-ptx: nvcc not found; the committed PTX does not match quantize.cu and nvcc-flags (the PTX test will fail)" >&2
  exit 0
fi
tmp=$(mktemp)
# shellcheck disable=SC2046 # the flags are words
nvcc -ptx $(cat "$flags_file") -o "$tmp" "$src"
{ echo "// weightsync-source-sha256: $hash"; cat "$tmp"; } > "$out"
rm -f "$tmp"
echo "build-ptx: regenerated $out"
