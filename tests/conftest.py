import pytest

from tests.support.postgres import PostgresCluster
from tests.support.processes import MsBackendProcess, ServerProcess, ms_python


def pytest_addoption(parser):
    soak = parser.getgroup("soak", "the randomized fault-injection soak (tests/faults/test_soak.py)")
    soak.addoption("--soak", action="store_true", help="run the long soak instead of its short CI version")
    soak.addoption("--soak-kills", type=int, help="kill -9s to inject (default: 6, or 40 with --soak)")
    soak.addoption("--soak-orchestrations", type=int, help="orchestrations to run (default: 300, or 5000 with --soak)")
    soak.addoption("--soak-seed", type=int, help="seed of the random plan (default: a fixed one); the run prints it")


@pytest.fixture(scope="session")
def ms_sdk_python():
    """Path to the interpreter of the venv with Microsoft's durabletask installed."""
    return ms_python()


@pytest.fixture
def server_factory(tmp_path):
    """Start our task hub server on a fresh SQLite file; returns a restartable ServerProcess."""
    started = []

    def make(*extra_args: str, store_url: str | None = None) -> ServerProcess:
        server = ServerProcess(store_url or f"sqlite:///{tmp_path}/hub-{len(started)}.db", extra_args=extra_args)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One task hub server for the whole session (tests use unique instance ids)."""
    server = ServerProcess(f"sqlite:///{tmp_path_factory.mktemp('hub')}/hub.db").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster for the session; fails (never skips) if PostgreSQL is missing."""
    try:
        cluster = PostgresCluster().start()
    except RuntimeError as error:
        pytest.fail(str(error))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def ms_backend():
    """Microsoft's in-memory backend, the reference server for our SDK."""
    backend = MsBackendProcess().start()
    yield backend
    backend.stop()


@pytest.fixture(scope="session", params=["our_server", "ms_backend"])
def hub_address(request):
    """Address of a conforming task hub: ours and Microsoft's reference backend."""
    return request.getfixturevalue("shared_server" if request.param == "our_server" else "ms_backend").address
