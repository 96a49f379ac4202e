"""The control-plane image (Dockerfile at the repository root), checked without a Docker engine the
way tests/test_worker_image.py checks the worker's: multi-stage, slim and non-root; its stages'
commands build the project with its operator and postgres extras; and the programs the Helm chart
starts from it by `command:` run there as the image's user."""

import tomllib

import pytest

from tests.chart.chart import container, render
from tests.support.dockerfile import built_image, final_stage_problems, parse
from tests.support.processes import REPO, free_port, stop_process, wait_for_hub

DOCKERFILE = REPO / "Dockerfile"
PROGRAMS = {"durabletask-server": "durabletask.server.cli:main",
            "durabletask-operator": "durabletask_operator.cli:main"}


@pytest.fixture(scope="module")
def image():
    with built_image(DOCKERFILE, REPO) as built:
        yield built


def chart_commands() -> dict[str, list[str]]:
    objects = render()
    return {name: container(objects, f"durabletask-{name}")["command"] for name in ("server", "operator")}


def test_multi_stage_slim_and_non_root():
    stages = parse(DOCKERFILE.read_text())
    assert final_stage_problems(stages) == []
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {name: scripts[name] for name in PROGRAMS} == PROGRAMS
    assert sorted(command[0] for command in chart_commands().values()) == sorted(PROGRAMS)


def test_the_charts_commands_run_from_the_image_as_its_user(image):
    uid = image.run(["python", "-c", "import os; print(os.getuid())"]).stdout
    assert int(uid) == image.user()[0] != 0
    for command in chart_commands().values():
        result = image.run([*command, "--help"])
        assert result.returncode == 0, result.stderr
        assert f"usage: {command[0]}" in result.stdout


def test_the_extras_are_installed_in_the_image(image):
    """The server reaches PostgreSQL with psycopg; the operator is kopf and the Kubernetes client."""
    result = image.run(["python", "-c", "import psycopg, psycopg_pool, kopf, kubernetes, durabletask, sys; "
                        "print(durabletask.__file__)"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(image.root)), "the packages must come from the image's venv, not ours"


def test_the_default_command_serves_with_its_state_in_the_workdir(image):
    """`docker run IMAGE`: the server on all interfaces, its SQLite file in the writable workdir."""
    command = image.stages[-1].all("CMD")[-1].exec_form()
    assert command == ["durabletask-server", "--host=0.0.0.0"]
    port = free_port()
    server = image.popen([*command, "--host=127.0.0.1", f"--port={port}", "--metrics-port=0"])  # loopback here
    try:
        wait_for_hub(f"127.0.0.1:{port}", server)
        assert (image.final.local(".") / "durabletask-hub.db").exists()
    finally:
        stop_process(server)
    assert server.returncode == 0
