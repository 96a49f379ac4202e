"""The server's TLS settings (--tls-cert, --tls-key, --tls-client-ca): checked at start-up, so that a
missing, unreadable or mismatched file is one sentence naming the flag and the file, not a failure
deep inside gRPC."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import grpc


class TlsConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServerTls:
    cert_file: str
    key_file: str
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca_file: str | None = None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        client_ca = _read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_credentials([(_read(self.key_file), _read(self.cert_file))],
                                           root_certificates=client_ca, require_client_auth=client_ca is not None)


def check_server_tls(cert_file: str | None, key_file: str | None, client_ca_file: str | None) -> ServerTls | None:
    """The TLS settings from the flags, after checking every file; None when TLS is off."""
    if not cert_file and not key_file:
        if client_ca_file:
            raise TlsConfigError(f"--tls-client-ca {client_ca_file} needs --tls-cert and --tls-key: "
                                 "client certificates are checked only over TLS.")
        return None
    if not cert_file or not key_file:
        given, missing = ("--tls-cert", "--tls-key") if cert_file else ("--tls-key", "--tls-cert")
        raise TlsConfigError(f"{given} needs {missing} as well: TLS takes a certificate and its private key.")
    _check_readable("--tls-cert", cert_file)
    _check_readable("--tls-key", key_file)
    try:
        ssl.create_default_context(cadata=_read(cert_file).decode("ascii", "replace"))
    except (ssl.SSLError, ValueError):
        raise TlsConfigError(f"--tls-cert {cert_file} is not a PEM certificate.") from None
    try:
        # An empty password, so that an encrypted key fails here instead of OpenSSL prompting for one.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file, password="")
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            raise TlsConfigError(f"--tls-key {key_file} is not the private key of the certificate in "
                                 f"--tls-cert {cert_file}.") from None
        raise TlsConfigError(f"--tls-key {key_file} is not a PEM private key (without a passphrase).") from None
    if client_ca_file:
        _check_readable("--tls-client-ca", client_ca_file)
        try:
            ssl.create_default_context(cafile=client_ca_file)
        except ssl.SSLError:
            raise TlsConfigError(f"--tls-client-ca {client_ca_file} is not a PEM CA certificate.") from None
    return ServerTls(cert_file, key_file, client_ca_file)


def _check_readable(flag: str, path: str) -> None:
    try:
        _read(path)
    except OSError as error:
        raise TlsConfigError(f"{flag} {path} cannot be read ({error.strerror}).") from None


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()
