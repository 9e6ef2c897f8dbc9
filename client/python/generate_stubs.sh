#!/usr/bin/env bash
# Regenerates the protobuf message classes that ship in the package (weightsync_client/_generated)
# after a change to the proto, with the protoc on PATH (Debian's protobuf-compiler 3.21: its output
# runs on protobuf 4.21 and newer, which is why the package requires protobuf>=4.21). Commit the
# result; tests/test_generated.py fails while it is stale. Service calls go through
# grpc.Channel.stream_unary, so no grpc_tools plugin is needed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$here/../../proto/src/main/proto"
out="$here/weightsync_client/_generated"
mkdir -p "$out"
protoc -I "$proto_root" --python_out="$out" "$proto_root/weightsync/v1/weightsync.proto"
touch "$out/__init__.py" "$out/weightsync/__init__.py" "$out/weightsync/v1/__init__.py"
echo "generated $out/weightsync/v1/weightsync_pb2.py"
