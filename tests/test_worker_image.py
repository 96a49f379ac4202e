"""worker_image/Dockerfile, checked without a Docker engine: it parses, it is multi-stage with no
compilers in the image, runs as a non-root user with the runner as ENTRYPOINT, and its stages'
commands work here (a wheel is built, installed into a fresh virtual environment, and runs as the
image's user)."""

import sys
import tomllib

import pytest

from tests.support.dockerfile import DockerfileError, built_image, final_stage_problems, parse
from tests.support.processes import REPO

DOCKERFILE = REPO / "worker_image" / "Dockerfile"


@pytest.fixture(scope="module")
def stages():
    return parse(DOCKERFILE.read_text())


def test_the_parser_rejects_what_docker_would():
    with pytest.raises(DockerfileError, match="unknown instruction RUNN"):
        parse("FROM python:3.12-slim\nRUNN pip install x\n")
    with pytest.raises(DockerfileError, match="COPY before the first FROM"):
        parse("COPY . /src\nFROM python:3.12-slim\n")
    with pytest.raises(DockerfileError, match="ends inside a continued line"):
        parse("FROM python:3.12-slim\nRUN echo \\\n")


def test_the_final_stage_checks_catch_a_fat_root_image():
    problems = final_stage_problems(parse("FROM python:3.12\nRUN apt-get install -y gcc\nCOPY . /app\n"))
    assert any("single stage" in p for p in problems) and any("python:3.x-slim" in p for p in problems)
    assert any("line 2 installs" in p for p in problems) and any("runs as root" in p for p in problems)


def test_multi_stage_slim_non_root_with_the_runner_as_entrypoint(stages):
    assert final_stage_problems(stages) == []
    assert stages[-1].all("ENTRYPOINT")[-1].exec_form() == ["durabletask-worker"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["durabletask-worker"] == "durabletask_worker.runner:main"


def test_the_stages_commands_build_install_and_run_the_worker():
    with built_image(DOCKERFILE, REPO) as image:
        entrypoint = image.stages[-1].all("ENTRYPOINT")[-1].exec_form()
        result = image.run([*entrypoint, "--help"])
        assert result.returncode == 0, result.stderr
        assert "DURABLETASK_APP" in result.stdout
        installed = image.run(["python", "-c", "import durabletask, os, sys; print(durabletask.__file__, sys.prefix, "
                               "os.getuid())"]).stdout.split()
    assert str(image.root) in installed[0], "the runner must come from the image's venv, not ours"
    assert sys.prefix not in installed[1]
    assert int(installed[2]) == image.user()[0] != 0
