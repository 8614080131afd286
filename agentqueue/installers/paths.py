"""Where installers may write: the project root, or the user's config dirs — nowhere else.

`Jail` is the one gate every write goes through. A target is a path relative to a base; it
is refused when it is absolute, has a `..` part, or when any existing part of it is a symlink
that resolves outside the jail's roots (a `.cursor -> /etc` link must not turn an install into
a write to /etc). User-scope bases come from `Path.home()` and the environment (XDG, APPDATA,
CODEX_HOME), so tests point HOME at a temporary directory and never touch the real one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agentqueue.errors import InvalidArgument


class PathRefused(InvalidArgument):
    """A target path would leave the project root (or the user's config dir)."""


def home() -> Path:
    """The user's home directory (`$HOME` first, so tests can redirect it)."""
    return Path(os.environ.get("HOME") or Path.home())


def xdg_config_home() -> Path:
    """`$XDG_CONFIG_HOME`, else `~/.config` (Zed, opencode and Claude Desktop on Linux)."""
    value = os.environ.get("XDG_CONFIG_HOME")
    return Path(value) if value and Path(value).is_absolute() else home() / ".config"


def app_data() -> Path:
    """The per-user application-data dir of desktop apps on this OS."""
    if sys.platform == "darwin":
        return home() / "Library" / "Application Support"
    if sys.platform == "win32":
        value = os.environ.get("APPDATA")
        return Path(value) if value else home() / "AppData" / "Roaming"
    return xdg_config_home()


def codex_home() -> Path:
    """`$CODEX_HOME`, else `~/.codex` (Codex's own rule)."""
    value = os.environ.get("CODEX_HOME")
    return Path(value) if value and Path(value).is_absolute() else home() / ".codex"


def user_roots() -> list[Path]:
    """Every directory a `--scope user` install may write under."""
    return [home(), xdg_config_home(), app_data(), codex_home()]


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@dataclass(frozen=True)
class Jail:
    """The roots writes may land under (resolved, so symlinked roots such as /tmp compare)."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, *roots: Path) -> Jail:
        """A jail over these directories."""
        return cls(tuple(root.resolve() for root in roots))

    def target(self, base: Path, relative: str) -> Path:
        """Return `base / relative` once it is known to stay inside the jail.

        Raises:
            PathRefused: `relative` is absolute or has `..`, `base` is outside the jail, or an
                existing part of the path is a symlink that leads out of it.
        """
        parts = PurePosixPath(relative.replace("\\", "/")).parts
        if not parts or relative.startswith(("/", "\\")) or Path(relative).is_absolute():
            raise PathRefused(f"{relative!r} is not a relative path")
        if any(part in ("..", "") for part in parts) or ":" in parts[0]:
            raise PathRefused(f"{relative!r} leaves its directory ('..' or a drive)")
        path = base.joinpath(*parts)
        self.check(path)
        return path

    def check(self, path: Path) -> None:
        """Refuse `path` when it, or any existing part of it, resolves outside the jail.

        Raises:
            PathRefused: see `target`.
        """
        absolute = Path(os.path.abspath(path))
        resolved = absolute.resolve()
        if not _inside(resolved, self.roots):
            why = "leads out of" if resolved != absolute else "is outside"
            raise PathRefused(f"{path} {why} {self.describe()} (a symlink?): refused")

    def describe(self) -> str:
        """The roots, for messages."""
        return " or ".join(str(root) for root in self.roots)
