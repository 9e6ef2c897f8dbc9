#!/usr/bin/env bash
# On the GPU machine: `convert --device cuda` reproduces the golden folders of the repository's
# fixtures (and of a carried extra set, .device/sg, when present), checked with `compare`, and
# leaves nothing in java.io.tmpdir. Needs .device/jre.tar.xz and .device/lib (README, GPU path).
set -uo pipefail
cd "$(dirname "$0")/../.."
tar xJf .device/jre.tar.xz -C /tmp
export PATH=/tmp/jre/bin:$PATH
tmpdir=$(mktemp -d)
W() { java -Djava.io.tmpdir="$tmpdir" -cp ".device/lib/*" dev.weightsync.cli.WeightsyncCommand "$@"; }
W --version
status=0
for root in testdata/golden .device/sg; do
  [ -d "$root/bf16" ] || continue
  for case in "fp8 fp8-block" "fp8_ue8m0 fp8-block-ue8m0" "int4_g128 int4-group 128" "int4_g32 int4-group 32"; do
    set -- $case
    [ -d "$root/$1" ] || continue
    out=$(mktemp -d)/out
    group=${3:+--group-size $3}
    W convert --input-dir "$root/bf16" --output-dir "$out" --format "$2" $group --device cuda 2>&1 | tail -1
    echo -n "$root/$1 on cuda: "; W compare "$root/$1" "$out" | tail -1 || status=1
  done
done
echo "left in java.io.tmpdir: [$(ls -A "$tmpdir")]"
[ -z "$(ls -A "$tmpdir")" ] || status=1
exit $status
