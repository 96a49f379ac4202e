"""worker_image/Dockerfile, checked without a Docker engine: it parses, it is multi-stage with no
compilers in the image, runs as a non-root user with the runner as ENTRYPOINT, and its stages'
commands work here (a wheel is built, installed into a fresh virtual environment, and runs)."""

import re
import subprocess
import sys
import tomllib
import venv

import pytest

from tests.support.dockerfile import DockerfileError, StageBuilder, parse
from tests.support.processes import REPO

DOCKERFILE = REPO / "worker_image" / "Dockerfile"
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|make|build-essential|python3?-dev|libc6?-dev)\b")


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


def test_multi_stage_with_a_slim_final_image_and_no_compilers(stages):
    assert len(stages) >= 2
    final = stages[-1]
    assert re.fullmatch(r"python:3\.\d+-slim", final.base)
    for run in final.all("RUN"):
        assert not COMPILERS.search(run.arguments), f"line {run.line} installs a build tool"
        assert "apt-get install" not in run.arguments and "apk add" not in run.arguments
    copied_from_build = [c for c in final.all("COPY") if c.flags.get("from")]
    assert copied_from_build and all("dist" in c.arguments for c in copied_from_build), "only the wheel comes over"


def test_runs_the_runner_as_a_non_root_user(stages):
    final = stages[-1]
    user = final.all("USER")[-1].arguments.split(":")[0]
    assert user not in ("root", "0")
    assert final.all("ENTRYPOINT")[-1].exec_form() == ["durabletask-worker"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["durabletask-worker"] == "durabletask_worker.runner:main"


def test_the_stages_commands_build_install_and_run_the_worker(stages, tmp_path):
    base = tmp_path / "base-image"  # stands for python:3.x-slim: a bare interpreter with pip
    venv.create(base, with_pip=True)
    roots = {}
    for number, stage in enumerate(stages):
        roots[stage.name or str(number)] = root = tmp_path / f"stage-{number}"
        env = StageBuilder(stage, root, base / "bin", REPO, roots).build()
    entrypoint = stages[-1].all("ENTRYPOINT")[-1].exec_form()
    result = subprocess.run([*entrypoint, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "DURABLETASK_APP" in result.stdout
    installed = subprocess.run(["python", "-c", "import durabletask, sys; print(durabletask.__file__, sys.prefix)"],
                               env=env, capture_output=True, text=True, check=True).stdout
    assert str(roots[str(len(stages) - 1)]) in installed, "the runner must come from the image's venv, not ours"
    assert sys.prefix not in installed
