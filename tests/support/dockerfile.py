"""A small Dockerfile reader, and a stand-in builder that runs a stage's instructions on this
machine with a temporary folder as the image's root: enough to check a Dockerfile without a
Docker engine. It refuses commands that would touch a path outside that folder. The build sees
the context as the .dockerignore file lets it through, and the built image's programs run as
the image's USER."""

import contextlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
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


# ---- the build context, as a .dockerignore file lets it through -----------------------------

def dockerignore_for(dockerfile: Path, context: Path) -> Path:
    """BuildKit's rule: `<Dockerfile>.dockerignore` beside the Dockerfile, else the context's `.dockerignore`."""
    own = dockerfile.with_name(dockerfile.name + ".dockerignore")
    return own if own.exists() else context / ".dockerignore"


def _pattern_regex(pattern: str) -> re.Pattern:
    parts = re.split(r"(\*\*/|/\*\*$|\*\*|\*|\?)", pattern)
    wildcards = {"**/": "(.*/)?", "/**": "(/.*)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts))


def _ignore_rules(dockerignore: Path) -> list[tuple[bool, str, re.Pattern]]:
    """(is an exception, cleaned pattern, regex) per line, in order."""
    rules = []
    for line in dockerignore.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((exception, pattern, _pattern_regex(pattern)))
    return rules


def _excluded(path: str, rules) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    candidates = [path] + [str(parent) for parent in Path(path).parents if str(parent) != "."]
    excluded = False
    for exception, _, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not exception
    return excluded


def filtered_context(context: Path, dockerignore: Path, into: Path) -> Path:
    """A copy of what `docker build` would send of `context`: the files `dockerignore` lets through."""
    rules = _ignore_rules(dockerignore)
    for folder, subfolders, files in os.walk(context):
        relative = os.path.relpath(folder, context)
        prefix = "" if relative == "." else relative + "/"
        # Skip an excluded folder unless an exception names something inside it.
        subfolders[:] = [d for d in subfolders if not _excluded(prefix + d, rules)
                         or any(exception and pattern.startswith(prefix + d + "/") for exception, pattern, _ in rules)]
        for name in files:
            if not _excluded(prefix + name, rules):
                (into / prefix).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder) / name, into / prefix / name)
    return into


# ---- building every stage, and running the result as the image would -------------------------

COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|make|build-essential|python3?-dev|libc6?-dev)\b")


def final_stage_problems(stages: list[Stage]) -> list[str]:
    """What keeps the last stage from being a slim, non-root runtime that only takes the wheels from the build."""
    final, problems = stages[-1], []
    if len(stages) < 2:
        problems.append("a single stage: the build tools would stay in the image")
    if not re.fullmatch(r"python:3\.\d+-slim", final.base):
        problems.append(f"the final stage is FROM {final.base}, not python:3.x-slim")
    for run in final.all("RUN"):
        if COMPILERS.search(run.arguments) or "apt-get install" in run.arguments or "apk add" in run.arguments:
            problems.append(f"line {run.line} installs a build tool or system package")
    copied = [c for c in final.all("COPY") if c.flags.get("from")]
    if not copied or not all("dist" in c.arguments for c in copied):
        problems.append("the final stage must take only the built wheels (dist/) from the build stage")
    users = final.all("USER")
    if not users or users[-1].arguments.split(":")[0] in ("root", "0"):
        problems.append("the final stage runs as root: it needs a numeric non-root USER")
    return problems


def _usable_by_anyone(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


def stand_in_python() -> str:
    """An interpreter to play the base image's: this one, or, when the image's user (not us, root)
    could not reach this one (e.g. under /root), a system interpreter anyone can run."""
    ours = Path(sys._base_executable).resolve()
    if os.geteuid() != 0 or _usable_by_anyone(ours):
        return str(ours)
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if Path(candidate).exists() and _usable_by_anyone(Path(candidate).resolve()):
            return candidate
    raise DockerfileError(f"{ours} is out of reach of a non-root user and no system python3 is: "
                          "cannot run the image as its USER")


@dataclass
class BuiltImage:
    """Every stage built under one folder; `run` starts a program of the final stage as `docker run` would."""
    stages: list[Stage]
    final: StageBuilder
    env: dict[str, str]

    @property
    def root(self) -> Path:
        return self.final.root

    def user(self) -> tuple[int, int]:
        uid, _, gid = self.stages[-1].all("USER")[-1].arguments.partition(":")
        return int(uid), int(gid or uid)

    def as_user(self) -> dict:
        """subprocess arguments that drop to the image's USER (and no other group), as Docker does;
        nothing to drop when we are not root."""
        if os.geteuid() != 0:
            return {}
        uid, gid = self.user()
        return {"user": uid, "group": gid, "extra_groups": []}

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(argv, env=self.env, cwd=self.final.local("."), **self.as_user(), **kwargs)

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, cwd=self.final.local("."), capture_output=True, text=True,
                              timeout=timeout, **self.as_user())


@contextlib.contextmanager
def built_image(dockerfile: Path, context: Path) -> Iterator[BuiltImage]:
    """Build every stage of `dockerfile` from what its .dockerignore lets through of `context`.

    The folder is readable by anyone (not pytest's private tmp), so the image's USER can run it."""
    stages = parse(dockerfile.read_text())
    with tempfile.TemporaryDirectory(prefix="image-") as folder:
        work = Path(folder)
        work.chmod(0o755)
        sent = filtered_context(context, dockerignore_for(dockerfile, context), work / "context")
        base = work / "base-image"  # stands for python:3.x-slim: a bare interpreter with pip
        subprocess.run([stand_in_python(), "-m", "venv", str(base)], check=True)
        roots: dict[str, Path] = {}
        for number, stage in enumerate(stages):
            roots[stage.name or str(number)] = root = work / f"stage-{number}"
            builder = StageBuilder(stage, root, base / "bin", sent, roots)
            env = builder.build()
        yield BuiltImage(stages, builder, env)
