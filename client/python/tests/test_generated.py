"""The committed protobuf module must describe the repository's proto: compared as descriptors
(what protoc parses from the .proto against what the shipped module holds), not as text."""
import os
import shutil
import subprocess

import pytest
from google.protobuf import descriptor_pb2

from weightsync_client import pb

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "..", "proto", "src", "main", "proto")
PROTO = "weightsync/v1/weightsync.proto"


def _without_json_names(fd):
    for m in fd.message_type:
        _strip(m)
    return fd


def _strip(message):
    for f in message.field:
        f.ClearField("json_name")
    for nested in message.nested_type:
        _strip(nested)


def test_the_shipped_module_matches_the_proto(tmp_path):
    protoc = shutil.which("protoc")
    if protoc is None:
        if "python" in os.environ.get("WEIGHTSYNC_REQUIRE_TOOLS", ""):
            pytest.fail("protoc is missing (apt-get install protobuf-compiler)")
        pytest.skip("no protoc on PATH (apt-get install protobuf-compiler): cannot parse the proto")
    out = tmp_path / "set.pb"
    subprocess.run([protoc, "-I", PROTO_ROOT, "--descriptor_set_out=" + str(out), PROTO],
                   check=True)
    parsed = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    shipped = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(shipped)
    assert _without_json_names(shipped) == _without_json_names(parsed), (
        "weightsync_client/_generated is stale: run client/python/generate_stubs.sh and commit it")
