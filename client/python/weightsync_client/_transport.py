"""Channels, call metadata and errors: how the client reaches a sidecar."""
from __future__ import annotations

import os
import socket

import grpc

from ._wire import pb

METHOD = "/weightsync.v1.WeightSync/UpdateWeights"
CUDA_METHOD = "/weightsync.v1.WeightSync/UpdateWeightsCuda"
STATUS_METHOD = "/weightsync.v1.WeightSync/GetStatus"


class PushError(Exception):
    """The sidecar refused or failed the version; ``code`` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def channel(target: str, tls_ca: str | None, tls_cert: str | None, tls_key: str | None,
             stream: int = 0):
    """A plaintext channel, or TLS when any of the PEM files is given (the CA to trust; a client
    certificate and key for a sidecar that requires mutual TLS). Channels of different ``stream``
    numbers never share a connection: grpcio would otherwise put channels with the same target
    and options on one subchannel, and one connection tops out near one core's speed."""
    options = [("grpc.max_send_message_length", 8 << 20),
               ("grpc.max_receive_message_length", 8 << 20),
               ("grpc.use_local_subchannel_pool", 1),
               ("weightsync.stream", stream)]
    if tls_ca is None and tls_cert is None and tls_key is None:
        return grpc.insecure_channel(target, options=options)
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")

    def read(path):
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(root_certificates=read(tls_ca),
                                         private_key=read(tls_key),
                                         certificate_chain=read(tls_cert))
    return grpc.secure_channel(target, creds, options=options)


def auth(token):
    """Call metadata: the token, and the name the sidecar shares its streams by (host:pid)."""
    caller = [("weightsync-caller", CALLER)]
    return caller + [("authorization", "Bearer " + token)] if token else caller


CALLER = "%s:%d" % (socket.gethostname().encode("ascii", "replace").decode("ascii"), os.getpid())


def status(target: str, timeout: float = 30.0, token: str | None = None,
           tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None):
    """The sidecar's ``GetStatusResponse``."""
    with channel(target, tls_ca, tls_cert, tls_key) as ch:
        call = ch.unary_unary(STATUS_METHOD,
                              request_serializer=pb.GetStatusRequest.SerializeToString,
                              response_deserializer=pb.GetStatusResponse.FromString)
        return call(pb.GetStatusRequest(), timeout=timeout, metadata=auth(token))
