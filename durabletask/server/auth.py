"""Bearer-token authentication of the task hub's gRPC calls: a server interceptor that lets a call
through only when its `authorization` metadata is `Bearer <one of the accepted tokens>`."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

import grpc

log = logging.getLogger("durabletask.server.auth")

MISSING_TOKEN = "This task hub requires a bearer token: send the metadata 'authorization: Bearer <token>'."
REFUSED_TOKEN = "The bearer token is not one this task hub accepts."


class BearerTokenAuth(grpc.aio.ServerInterceptor):
    """`accepted_tokens` is asked at every call, so that a rotated token takes effect at once."""

    def __init__(self, accepted_tokens: Callable[[], tuple[str, ...]]):
        self._accepted_tokens = accepted_tokens

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED
            return None
        refusal = self._refusal(handler_call_details.invocation_metadata or ())
        if refusal is None:
            return handler
        return _refusing_handler(handler, handler_call_details.method, refusal)

    def _refusal(self, metadata) -> str | None:
        """None when the call carries an accepted token, else the message to refuse it with."""
        presented = next((value for key, value in metadata if key == "authorization"), None)
        if not isinstance(presented, str) or presented[:7].lower() != "bearer ":
            return MISSING_TOKEN
        token = presented[7:].strip().encode()
        # Compare with every accepted token, in constant time, so timing tells nothing about them.
        matches = [hmac.compare_digest(token, accepted.encode()) for accepted in self._accepted_tokens()]
        return None if any(matches) else REFUSED_TOKEN


def _refusing_handler(handler: grpc.RpcMethodHandler, method: str, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that logs the refusal and aborts with UNAUTHENTICATED.
    It never deserializes the request: nothing from an unauthenticated caller is parsed."""

    async def refuse(request_or_iterator, context: grpc.aio.ServicerContext):
        log.warning("Refused %s from %s: %s", method, context.peer(), message)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
