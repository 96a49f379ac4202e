"""A small Dockerfile reader, and a stand-in builder that runs a stage's instructions on this
machine with a temporary folder as the image's root: enough to check a Dockerfile without a
Docker engine. It refuses commands that would touch a path outside that folder."""

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

KEYWORDS = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
            "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


class DockerfileError(ValueError):
    pass


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]
    arguments: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The arguments as a JSON array (`["a", "b"]`), or None in shell form."""
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def logical_lines(text: str):
    """(line number, text) of each instruction: comments dropped, continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines even inside a continuation
        start = start or number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending, start = "", 0
    if pending:
        raise DockerfileError(f"line {start}: the file ends inside a continued line")


def parse(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword not in KEYWORDS:
            raise DockerfileError(f"line {number}: unknown instruction {keyword}")
        flags = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.lstrip()
        if keyword == "FROM":
            words = rest.split()
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
                raise DockerfileError(f"line {number}: FROM takes an image and optionally AS name")
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        elif not stages:
            if keyword != "ARG":
                raise DockerfileError(f"line {number}: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append(Instruction(keyword, flags, rest, number))
    if not stages:
        raise DockerfileError("no FROM instruction")
    return stages


def _expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def env_assignments(arguments: str) -> dict[str, str]:
    """`ENV A=1 B="two words"` (or the old form `ENV A 1`) as a dict."""
    words = shlex.split(arguments)
    if "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


class StageBuilder:
    """Runs one stage's COPY, WORKDIR, ENV and RUN with `root` standing for the image's "/".

    `base_bin` plays the base image's executables (a folder holding `python`); `context` is the
    build context; `stages` maps earlier stages' names to their roots, for `COPY --from`."""

    def __init__(self, stage: Stage, root: Path, base_bin: Path, context: Path, stages: dict[str, Path]):
        self.stage, self.root, self.context, self.stages = stage, root, context, stages
        self.env = {"PATH": f"{base_bin}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/root")}
        self.workdir = "/"

    def local(self, image_path: str) -> Path:
        return self.root / os.path.join(self.workdir, image_path).lstrip("/")

    def rooted(self, text: str) -> str:
        """`text` with each absolute image path moved under the root; other paths are refused."""
        def move(match: re.Match) -> str:
            path = match.group(0)
            if not any(path.rstrip("/") == p.rstrip("/") or path.startswith(p.rstrip("/") + "/")
                       for p in self.known_paths):
                raise DockerfileError(f"{path} is outside what this stage created; cannot run it here")
            return str(self.root) + path
        return re.sub(r"(?<![\w$}.])/[\w.*/-]+", move, text)

    @property
    def known_paths(self) -> list[str]:
        made = [self.workdir] if self.workdir != "/" else []
        for instruction in self.stage.instructions:
            if instruction.keyword == "COPY":
                made.append(os.path.join(self.workdir, shlex.split(instruction.arguments)[-1]))
            elif instruction.keyword == "ENV":
                made += [v for v in env_assignments(instruction.arguments).values() if v.startswith("/")]
        return made

    def build(self) -> dict[str, str]:
        """Run the stage; returns its final environment."""
        for instruction in self.stage.instructions:
            getattr(self, f"_{instruction.keyword.lower()}", lambda _: None)(instruction)
        return self.env

    def _env(self, instruction: Instruction) -> None:
        for key, value in env_assignments(instruction.arguments).items():
            self.env[key] = _expand(self.rooted(value) if value.startswith("/") else value, self.env)

    def _workdir(self, instruction: Instruction) -> None:
        self.workdir = os.path.join(self.workdir, instruction.arguments)
        self.local(".").mkdir(parents=True, exist_ok=True)

    def _copy(self, instruction: Instruction) -> None:
        *sources, target = shlex.split(instruction.arguments)
        origin = self.stages[instruction.flags["from"]] if "from" in instruction.flags else self.context
        destination = self.local(target)
        for source in sources:
            path = origin / source.lstrip("/")
            if path.is_dir():
                shutil.copytree(path, destination, dirs_exist_ok=True)
            else:
                into = destination / path.name if target.endswith("/") else destination
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into)

    def _run(self, instruction: Instruction) -> None:
        command = self.rooted(instruction.arguments)
        result = subprocess.run(["/bin/sh", "-c", command], cwd=self.local("."), env=self.env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise DockerfileError(f"line {instruction.line}: RUN failed ({result.returncode}):\n"
                                  f"{command}\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
