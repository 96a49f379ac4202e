"""Reaching a task hub that requires TLS with a private CA, a client certificate (mutual TLS) or a
bearer token that rotates. Both are passed to TaskHubGrpcClient and TaskHubGrpcWorker:

    client = TaskHubGrpcClient(host_address="grpcs://hub.example:4001",
                               tls_options=TlsOptions(root_certificates_file="/etc/hub/ca.crt"),
                               interceptors=[BearerTokenInterceptor("/var/run/secrets/hub/token")])

A fixed token needs nothing new: Microsoft's `metadata=[("authorization", "Bearer <token>")]` works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc

from durabletask.internal.token_file import TokenFile


@dataclass(frozen=True, kw_only=True)
class TlsOptions:
    """PEM files for a TLS channel; giving any TlsOptions turns TLS on. The files are read when the
    channel opens (at the client's construction, at the worker's start())."""

    # The CA that signed the hub's certificate; None trusts the usual public roots.
    root_certificates_file: str | None = None
    # This client's certificate (chain) and its private key, for a hub that requires client certificates.
    certificate_chain_file: str | None = None
    private_key_file: str | None = None

    def __post_init__(self):
        if (self.certificate_chain_file is None) != (self.private_key_file is None):
            raise ValueError("TlsOptions needs certificate_chain_file and private_key_file together "
                             "(a client certificate and its key), or neither.")

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=_read(self.root_certificates_file),
                                            private_key=_read(self.private_key_file),
                                            certificate_chain=_read(self.certificate_chain_file))


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _ClientCallDetails(_CallDetails, grpc.ClientCallDetails):
    pass


class BearerTokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                             grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call, the token being the first line of
    `token_file` as it reads at the time of the call: rewriting the file rotates the token with no
    restart. A missing file raises OSError here; once read, a file that vanishes keeps the last token."""

    def __init__(self, token_file: str):
        self._file = TokenFile(token_file)
        if not self._file.tokens():
            raise ValueError(f"The token file {token_file} is empty.")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [(key, value) for key, value in (details.metadata or ()) if key != "authorization"]
        tokens = self._file.tokens()
        if tokens:  # an emptied file sends no token, and the hub says one is missing
            metadata.append(("authorization", f"Bearer {tokens[0]}"))
        return _ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                  details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)
