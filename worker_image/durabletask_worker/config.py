"""The runner's settings: each one a command-line flag and an environment variable (the operator
sets the variables). A flag wins over its variable. A bad value raises ConfigError with one
sentence that names the setting as the user wrote it (flag or variable) and the value."""

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from durabletask.internal.token_file import parse_tokens
from durabletask.worker import VersionFailureStrategy, VersionMatchStrategy

ADDRESS_SCHEMES = ("http://", "https://", "grpc://", "grpcs://")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A setting is missing or has a value the runner cannot use."""


@dataclass(frozen=True)
class RunnerConfig:
    address: str
    app: str
    version: str | None
    default_version: str | None
    match_strategy: VersionMatchStrategy
    failure_strategy: VersionFailureStrategy
    concurrency: int
    http_port: int
    drain_seconds: float
    log_level: str
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    token_file: str | None = None


@dataclass(frozen=True)
class Setting:
    flag: str
    env: str
    help: str
    default: str | None = None

    @property
    def field(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


SETTINGS = (
    Setting("--address", "DURABLETASK_ADDRESS", "task hub host:port", "localhost:4001"),
    Setting("--app", "DURABLETASK_APP", "module whose `orchestrators` and `activities` lists to run (required)"),
    Setting("--version", "DURABLETASK_VERSION", "this worker's version"),
    Setting("--default-version", "DURABLETASK_DEFAULT_VERSION",
            "version given to sub-orchestrations started without one (default: --version)"),
    Setting("--match-strategy", "DURABLETASK_MATCH_STRATEGY",
            "which orchestration versions to run: None, Strict or CurrentOrOlder", "None"),
    Setting("--failure-strategy", "DURABLETASK_FAILURE_STRATEGY",
            "what to do with other versions: Reject (hand back) or Fail", "Reject"),
    Setting("--concurrency", "DURABLETASK_CONCURRENCY", "most work items of each kind run at once", "10"),
    Setting("--http-port", "DURABLETASK_HTTP_PORT", "port of /healthz, /readyz and /metrics; 0 turns it off", "8080"),
    Setting("--drain-seconds", "DURABLETASK_DRAIN_SECONDS",
            "on SIGTERM, how long running work items may take to finish before they are handed back", "30"),
    Setting("--log-level", "DURABLETASK_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR", "INFO"),
    Setting("--tls-ca", "DURABLETASK_TLS_CA", "PEM CA that signed the task hub's certificate; turns TLS on"),
    Setting("--tls-cert", "DURABLETASK_TLS_CERT", "PEM client certificate, for a hub that requires one (mutual TLS)"),
    Setting("--tls-key", "DURABLETASK_TLS_KEY", "the client certificate's PEM private key"),
    Setting("--token-file", "DURABLETASK_TOKEN_FILE",
            "file whose first line is the bearer token sent with every call; re-read when it changes"),
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="durabletask-worker",
        description="Run the orchestrators and activities of an app module as one member of a versioned "
                    "worker pool. Every flag can also be set by the environment variable shown; a flag wins.")
    for setting in SETTINGS:
        default = f"; default {setting.default}" if setting.default else ""
        parser.add_argument(setting.flag, dest=setting.field, metavar=setting.field.upper(),
                            help=f"{setting.help} [env {setting.env}{default}]")
    return parser


def parse_config(argv: list[str] | None, environ: Mapping[str, str]) -> RunnerConfig:
    flags = argument_parser().parse_args(argv)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw, source = getattr(flags, setting.field), setting.flag
        if raw is None and environ.get(setting.env):
            raw, source = environ[setting.env], setting.env
        if raw is None:
            raw, source = setting.default, setting.flag
        values[setting.field] = PARSERS.get(setting.field, _text)(raw, source)
    if values["app"] is None:
        raise ConfigError("No app module given: set --app or DURABLETASK_APP to the module that lists your "
                          "orchestrators, e.g. --app orders.workflows.")
    if values["match_strategy"] != VersionMatchStrategy.NONE and not values["version"]:
        strategy = values["match_strategy"].name.title().replace("_", "")
        raise ConfigError(f"The match strategy {strategy} compares versions, so the worker "
                          "needs one: set --version or DURABLETASK_VERSION.")
    values["default_version"] = values["default_version"] or values["version"]
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        raise ConfigError("A client certificate needs its key: set both --tls-cert and --tls-key "
                          "(DURABLETASK_TLS_CERT and DURABLETASK_TLS_KEY), or neither.")
    tls_files = values["tls_ca"] or values["tls_cert"]
    if tls_files and values["address"].lower().startswith(("http://", "grpc://")):
        raise ConfigError(f"The address '{values['address']}' asks for plain text, but TLS files are set: "
                          "use grpcs:// or no scheme.")
    return RunnerConfig(**values)


def _text(raw: str | None, source: str) -> str | None:
    """Free text, such as a module name or a version; blank means unset."""
    if raw is None:
        return None
    return raw.strip() or None


def _readable_file(raw: str | None, source: str) -> str | None:
    path = _text(raw, source)
    if path is not None:
        _read(path, source)
    return path


def _token_file(raw: str | None, source: str) -> str | None:
    path = _text(raw, source)
    if path is not None and not parse_tokens(_read(path, source).decode("utf-8", "replace")):
        raise ConfigError(f"{source} '{path}' holds no token (the token goes on the first line).")
    return path


def _read(path: str, source: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ConfigError(f"{source} '{path}' cannot be read ({error.strerror}).") from None


def _address(raw: str, source: str) -> str:
    rest = raw.strip()
    for scheme in ADDRESS_SCHEMES:
        if rest.lower().startswith(scheme):
            rest = rest[len(scheme):]
    try:
        parts = urlsplit(f"//{rest}")
        valid = bool(parts.hostname) and parts.port is not None and not parts.path
    except ValueError:  # a port that is not a number, or out of range
        valid = False
    if not valid:
        raise ConfigError(f"{source} '{raw}' is not a task hub address of the form host:port, e.g. localhost:4001.")
    return raw.strip()


def _choice(enum: type, names: str) -> Callable[[str, str], Any]:
    """Parse a member of `enum` by name, in any case, with or without underscores
    (CurrentOrOlder, CURRENT_OR_OLDER and current_or_older are the same)."""
    def parse(raw: str, source: str) -> Any:
        wanted = raw.strip().replace("_", "").lower()
        for member in enum:
            if member.name.replace("_", "").lower() == wanted:
                return member
        raise ConfigError(f"{source} '{raw}' is not one of {names}.")
    return parse


def _number(kind: type, lowest: float, highest: float, what: str) -> Callable[[str, str], Any]:
    def parse(raw: str, source: str) -> Any:
        try:
            value = kind(raw.strip())
        except ValueError:
            value = None
        if value is None or not lowest <= value <= highest:
            raise ConfigError(f"{source} '{raw}' is not {what}.")
        return value
    return parse


def _log_level(raw: str, source: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{source} '{raw}' is not one of DEBUG, INFO, WARNING or ERROR.")
    return level


PARSERS: dict[str, Callable[[str, str], Any]] = {
    "address": _address,
    "match_strategy": _choice(VersionMatchStrategy, "None, Strict or CurrentOrOlder"),
    "failure_strategy": _choice(VersionFailureStrategy, "Reject or Fail"),
    "concurrency": _number(int, 1, 10_000, "a whole number from 1 to 10000"),
    "http_port": _number(int, 0, 65535, "a port number from 0 (off) to 65535"),
    "drain_seconds": _number(float, 0, 24 * 3600, "a number of seconds from 0 to 86400"),
    "log_level": _log_level,
    "tls_ca": _readable_file,
    "tls_cert": _readable_file,
    "tls_key": _readable_file,
    "token_file": _token_file,
}
