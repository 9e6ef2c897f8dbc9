#!/usr/bin/env bash
# Generates the protobuf message classes for the Python client from the project's proto, with the
# protoc on PATH (Debian's protobuf-compiler matches Debian's python3-protobuf). Service calls go
# through grpc.Channel.stream_unary, so no grpc_tools plugin is needed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$here/../../proto/src/main/proto"
out="$here/weightsync_client/_generated"
mkdir -p "$out"
protoc -I "$proto_root" --python_out="$out" "$proto_root/weightsync/v1/weightsync.proto"
touch "$out/__init__.py" "$out/weightsync/__init__.py" "$out/weightsync/v1/__init__.py"
echo "generated $out/weightsync/v1/weightsync_pb2.py"
