"""The Dockerfile read as data, and its install steps performed without a Docker engine.

No engine runs on the project's machines, so the image is checked by doing what its stages do:
the build stage's COPY lines make a build context (with .dockerignore applied), its `pip`
commands build the wheels, and the runtime stage's `pip` commands install them into a fresh
venv. The runtime's ENV, WORKDIR, CMD and HEALTHCHECK then run from that venv, with the
container's paths mapped into a temporary directory. What the steps are is read from the
Dockerfile each time, so the test cannot drift from the image.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Stage:
    """One FROM … section: its base image, its name and its instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        """The argument text of each instruction `keyword` (upper case), in order."""
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str:
        """The argument text of the last `keyword` instruction (the one that counts)."""
        found = self.args(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    @property
    def workdir(self) -> str:
        """The last WORKDIR (absolute, as the Dockerfile's are)."""
        return self.last("WORKDIR")

    @property
    def env(self) -> dict[str, str]:
        """Every ENV KEY=VALUE of the stage (a later one wins)."""
        values: dict[str, str] = {}
        for args in self.args("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = value
        return values

    @property
    def cmd(self) -> list[str]:
        """The exec-form CMD."""
        return json.loads(self.last("CMD"))

    @property
    def healthcheck(self) -> list[str]:
        """The exec-form command of HEALTHCHECK (its options left out)."""
        _, _, command = self.last("HEALTHCHECK").partition(" CMD ")
        return json.loads(command)

    @property
    def volumes(self) -> list[str]:
        """The VOLUME paths (JSON form)."""
        return [path for args in self.args("VOLUME") for path in json.loads(args)]

    def pip_commands(self) -> list[list[str]]:
        """Each `pip …` command of the stage's RUN lines (other commands such as useradd are
        the image's own business), as argument lists."""
        commands = []
        for args in self.args("RUN"):
            words = [w for w in shlex.split(args) if not w.startswith("--mount=")]
            while words:
                end = words.index("&&") if "&&" in words else len(words)
                if words[0] == "pip":
                    commands.append(words[1:end])
                words = words[end + 1 :]
        return commands

    def copies(self) -> list[tuple[list[str], str]]:
        """The COPY lines that take files from the build context: (sources, destination)."""
        found = []
        for args in self.args("COPY"):
            words = shlex.split(args)
            if any(w.startswith("--from") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
            found.append((words[:-1], words[-1]))
        return found


def read(path: Path = DOCKERFILE) -> list[Stage]:
    """Parse a Dockerfile into its stages (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def build_and_runtime() -> tuple[Stage, Stage]:
    """The build stage (first) and the runtime stage (last)."""
    stages = read()
    assert len(stages) >= 2, "the Dockerfile should be multi-stage (build, runtime)"
    return stages[0], stages[-1]


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    """The .dockerignore patterns (comments and blank lines dropped)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line.rstrip("/") for line in lines if line and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether a context path (relative to the repository) is left out of the build context.

    Enough of Docker's rules for this project's file: `**/NAME` matches at any depth, other
    patterns from the context's root, and a left-out folder takes its contents with it.
    """
    parts = PurePosixPath(relative).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatchcase(part, tail) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def make_context(stage: Stage, root: Path) -> Path:
    """Copy what the stage's COPY lines take into `root` + WORKDIR; return that directory."""
    patterns = ignore_patterns()
    workdir = root / stage.workdir.lstrip("/")
    workdir.mkdir(parents=True)

    def skip(folder: str, names: list[str]) -> set[str]:
        base = Path(folder).relative_to(REPO)
        return {name for name in names if ignored((base / name).as_posix(), patterns)}

    for sources, destination in stage.copies():
        target = workdir / destination
        for source in sources:
            assert not ignored(source, patterns), f"{source} is copied but .dockerignore drops it"
            path = REPO / source
            if path.is_dir():
                shutil.copytree(path, target, ignore=skip, dirs_exist_ok=True)
            else:
                into = target / path.name if destination.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into)
    return workdir


def run_pip(
    python: Path | str, args: list[str], cwd: Path, translate: Callable[[str], str]
) -> None:
    """Run `python -m pip ARGS` with container paths translated and globs expanded."""
    expanded: list[str] = []
    for arg in map(translate, args):
        expanded.extend(sorted(glob.glob(arg)) if "*" in arg else [arg])
    done = subprocess.run(
        [str(python), "-m", "pip", *expanded],
        cwd=cwd,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"pip {shlex.join(expanded)} failed:\n{done.stderr[-4000:]}"


def clean_environ(**extra: str) -> dict[str, str]:
    """The environment minus what would make a process see this checkout or a test store."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "AGENTQUEUE_URL"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


@dataclass
class Installed:
    """The image's install steps done: the wheels and a fresh venv with them installed."""

    wheels: Path
    venv: Path

    def bin(self, name: str) -> Path:
        """A program of the venv."""
        return self.venv / "bin" / name

    @property
    def wheel(self) -> Path:
        """agentqueue's own wheel."""
        [found] = self.wheels.glob("agentqueue-*.whl")
        return found


def install(root: Path) -> Installed:
    """Perform the image's build and install steps under `root` (takes a minute)."""
    build, runtime = build_and_runtime()
    context = make_context(build, root / "context")
    wheels = root / "wheels"

    def translate(arg: str) -> str:
        return arg.replace("/wheels", str(wheels))

    for args in build.pip_commands():
        run_pip(sys.executable, args, context, translate)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    for args in runtime.pip_commands():
        run_pip(venv / "bin" / "python", args, root, translate)
    return Installed(wheels, venv)


def container_paths(runtime: Stage, root: Path) -> dict[str, Path]:
    """The runtime's volumes and WORKDIR, each mapped to a fresh folder under `root`."""
    mapped = {}
    for path in [*runtime.volumes, runtime.workdir]:
        host = root / path.strip("/").replace("/", "_")
        host.mkdir(parents=True, exist_ok=True)
        mapped[path] = host
    return mapped


def runtime_environ(runtime: Stage, mapped: dict[str, Path], installed: Installed) -> dict:
    """The runtime stage's ENV with container paths mapped, the venv first on PATH."""
    env = clean_environ()
    for key, value in runtime.env.items():
        for path in sorted(mapped, key=len, reverse=True):
            value = value.replace(path, str(mapped[path]))
        env[key] = value
    env["PATH"] = f"{installed.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env
