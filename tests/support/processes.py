"""Start real processes for tests: our task hub server, our worker runner, Microsoft's in-memory
backend, and Microsoft's SDK in its own virtual environment (its package name clashes with ours)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
from google.protobuf import empty_pb2

from durabletask.internal import orchestrator_service_pb2_grpc as stubs

REPO = Path(__file__).resolve().parents[2]
MS_VENV = Path(os.environ.get("DURABLETASK_MS_VENV", REPO / ".venv-ms"))
MS_DURABLETASK_VERSION = "1.12.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_hub(address: str, process: subprocess.Popen | None = None, timeout: float = 20.0,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
    """Block until a TaskHubSidecarService answers Hello at `address` (over TLS with `credentials`);
    a hub that asks for a bearer token has answered too."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"hub process exited with code {process.returncode} before it answered at {address}")
        try:
            with (grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)) \
                    as channel:
                stubs.TaskHubSidecarServiceStub(channel).Hello(empty_pb2.Empty(), timeout=1)
            return
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no task hub answered at {address} within {timeout}s")
            time.sleep(0.05)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kill_process(process: subprocess.Popen | None) -> None:
    """kill -9: no handler runs, nothing is flushed or handed back; the OS closes its sockets."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


class ServerProcess:
    """Our `durabletask-server` as a subprocess on a loopback port; restartable on the same store."""

    def __init__(self, store_url: str, port: int | None = None, extra_args: tuple[str, ...] = (),
                 metrics_port: int = 0, credentials: grpc.ChannelCredentials | None = None,
                 env: dict[str, str] | None = None, log_file: Path | None = None):
        self.store_url = store_url
        self.port = port or free_port()
        self.extra_args = extra_args
        self.metrics_port = metrics_port  # 0: no /metrics endpoint
        self.credentials = credentials  # to reach a server started with --tls-cert
        self.env = {**os.environ, **(env or {})}
        self.log_file = log_file  # where the server's log goes, appended across restarts (default: stderr)
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "ServerProcess":
        cmd = [sys.executable, "-m", "durabletask.server", "--host", "127.0.0.1", "--port", str(self.port),
               "--store", self.store_url, "--metrics-port", str(self.metrics_port), *self.extra_args]
        if self.log_file is None:
            self.process = subprocess.Popen(cmd, cwd=REPO, env=self.env)
        else:
            with self.log_file.open("a") as log:
                self.process = subprocess.Popen(cmd, cwd=REPO, env=self.env, stderr=log)
        wait_for_hub(self.address, self.process, credentials=self.credentials)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def kill(self) -> None:
        kill_process(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()


def ms_python() -> Path:
    """The interpreter of a virtual environment holding Microsoft's durabletask, created on first use."""
    python = MS_VENV / "bin" / "python"
    marker = MS_VENV / f".durabletask-{MS_DURABLETASK_VERSION}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"durabletask=={MS_DURABLETASK_VERSION}"], check=True)
        marker.touch()
    return python


def ms_run(script: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run a Python script with Microsoft's SDK (in its own venv, never importing ours)."""
    return subprocess.run([str(ms_python()), "-c", script, *args], capture_output=True, text=True,
                          timeout=timeout, cwd="/")


MS_BACKEND_SCRIPT = """
import signal, sys, threading
from durabletask.testing import create_test_backend
backend = create_test_backend(port=int(sys.argv[1]))
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
backend.stop()
"""


class MsBackendProcess:
    """Microsoft's in-memory test backend (`durabletask.testing.create_test_backend`) as a subprocess."""

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "MsBackendProcess":
        self.process = subprocess.Popen([str(ms_python()), "-c", MS_BACKEND_SCRIPT, str(self.port)], cwd="/")
        wait_for_hub(self.address, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


RUNNER = Path(sys.executable).parent / "durabletask-worker"


class RunnerProcess:
    """The `durabletask-worker` console script as a subprocess, its probes on a free port."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.http_port = free_port()
        self.args = ["--http-port", str(self.http_port), "--log-level", "WARNING", *args]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self) -> "RunnerProcess":
        self.process = subprocess.Popen([str(RUNNER), *self.args], cwd=REPO, env=self.env)
        return self

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) of GET `path` on the probe port; (0, "") while nothing listens there."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def wait_until(self, path: str, status: int, timeout: float = 15.0) -> str:
        """Poll `path` until it answers `status`; returns the body."""
        deadline = time.monotonic() + timeout
        while True:
            code, body = self.get(path)
            if code == status:
                return body
            if self.process.poll() is not None:
                raise RuntimeError(f"the runner exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} answered {code}, not {status}, within {timeout}s")
            time.sleep(0.05)

    def kill(self) -> None:
        kill_process(self.process)

    def freeze(self) -> None:
        """SIGSTOP: the process stops answering but its connections stay open, as on a hung or cut-off node."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the runner; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            stop_process(self.process)
