"""Opening a gRPC channel to a task hub from the address forms users pass (with or without a scheme)."""

import grpc

from durabletask.security import TlsOptions

DEFAULT_HOST_ADDRESS = "localhost:4001"
_SECURE_SCHEMES = ("https://", "grpcs://")
_INSECURE_SCHEMES = ("http://", "grpc://")
CHANNEL_OPTIONS = [
    # After a failed connection gRPC waits before it tries again, 1 s at first, growing up to 2 min
    # by default, and calls made meanwhile fail at once without trying: a worker would stay cut off
    # from a hub that restarted long after it came back. Capped like the worker's own back-off.
    ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 5000),
    # By default channels to one address share their connections (and that back-off) process-wide,
    # so a new channel would reuse a connection the worker gave up on as dead.
    ("grpc.use_local_subchannel_pool", 1),
]


def open_channel(host_address: str | None, secure_channel: bool = False, interceptors: list | None = None,
                 tls_options: TlsOptions | None = None) -> grpc.Channel:
    """A channel to `host_address`; an https:// or grpcs:// scheme forces TLS, http:// or grpc:// forbids
    it, and `tls_options` (a private CA, a client certificate) imply it."""
    address = host_address or DEFAULT_HOST_ADDRESS
    lowered = address.lower()
    secure_channel = secure_channel or tls_options is not None
    for scheme in _SECURE_SCHEMES + _INSECURE_SCHEMES:
        if lowered.startswith(scheme):
            if tls_options is not None and scheme in _INSECURE_SCHEMES:
                raise ValueError(f"The address {host_address} asks for plain text, but TLS options are given: "
                                 "use grpcs:// (or no scheme) with TLS.")
            secure_channel = scheme in _SECURE_SCHEMES
            address = address[len(scheme):]
            break
    if secure_channel:
        credentials = tls_options.channel_credentials() if tls_options else grpc.ssl_channel_credentials()
        channel = grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
    else:
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    if interceptors:
        channel = grpc.intercept_channel(channel, *interceptors)
    return channel
