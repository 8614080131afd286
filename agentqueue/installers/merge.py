"""Safe file edits: plan the new text of a file, then write it (with a backup) or show it.

Every installer works in two steps. Planning reads a file and computes its new text — a JSON
member set or removed (`jsonc`), a TOML table (tomlkit, formatting kept), a Markdown block
between markers, or a whole file we own — without touching the disk; an `Edit` is the file's
text before and after. Applying writes the changed ones: a `.bak` copy of an existing file
first (never over an existing backup), then the new text to a temporary file moved into place,
so a crash leaves the old file or the new one, never half of either.

What we write carries a stamp — `agentqueue <version> sha256:<hash of our content>` — in a
Markdown comment. It tells a newer agentqueue that the text is ours and unchanged (so it may
be updated or removed), and tells us when someone edited it (then only `--force` replaces it).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from agentqueue import __version__
from agentqueue.errors import AgentQueueError
from agentqueue.installers import jsonc

SERVER_NAME = "agentqueue"
"""The key of our entry in every client's config (short: Claude Code shows `mcp__agentqueue__…`)."""


class UnsafeEdit(AgentQueueError):
    """A file cannot be changed safely (it does not parse, or holds edits of someone else's).

    `snippet` is what the user can add by hand instead, when there is one.
    """

    code = "unsafe_edit"

    def __init__(self, message: str, snippet: str | None = None) -> None:
        super().__init__(message)
        self.snippet = snippet


@dataclass(frozen=True)
class Edit:
    """One file's text before and after (None: the file is absent / is to be deleted)."""

    path: Path
    before: str | None
    after: str | None
    ours_only: bool = False
    """Deleting it loses nothing of the user's (the whole file was our own), so no backup."""
    prune_to: Path | None = None
    """After deleting it, remove the directories left empty up to this one (a skill's folder
    is ours; a client's `.cursor/` may be the user's, even empty, so it is never pruned)."""

    @property
    def changed(self) -> bool:
        """Whether applying it changes the disk."""
        return self.before != self.after


def read(path: Path) -> str | None:
    """The file's text, or None when there is no file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, IsADirectoryError) as error:
        raise UnsafeEdit(
            f"{path} is not a text file ({type(error).__name__}): left alone"
        ) from None


# -- stamps -------------------------------------------------------------------------------------
_STAMP = re.compile(r"agentqueue(?::begin)? (?P<version>[\w.+-]+) sha256:(?P<digest>[0-9a-f]{12})")


def digest(text: str) -> str:
    """The short content hash a stamp carries."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


HTML = ("<!--", " -->")
"""Comment style of Markdown files."""
HASH = ("#", "")
"""Comment style of Makefiles and .env files."""


def stamp(content: str, tool: str, comment: tuple[str, str] = HTML, tag: str = "") -> str:
    """The stamp comment for our `content`, naming the command that manages it."""
    return (
        f"{comment[0]} agentqueue{tag} {__version__} sha256:{digest(content)} · written by "
        f"`agentqueue {tool}`; edits here are replaced on update (keep yours outside, or use "
        f"--force){comment[1]}"
    )


def read_stamp(line: str) -> tuple[str, str] | None:
    """(version, digest) of a stamp line, or None when it is not one."""
    match = _STAMP.search(line)
    return (match["version"], match["digest"]) if match else None


# -- managed blocks -----------------------------------------------------------------------------
def _end_marker(comment: tuple[str, str]) -> str:
    return f"{comment[0]} agentqueue:end{comment[1]}"


def _block(body: str, tool: str, comment: tuple[str, str]) -> str:
    body = body.rstrip() + "\n"
    return f"{stamp(body, tool, comment, ':begin')}\n{body}{_end_marker(comment)}\n"


def _find_block(text: str, path: Path, comment: tuple[str, str]) -> tuple[int, int, str] | None:
    """(start, end, body) of our managed block in `text`; end includes its newline."""
    begin_marker, end_marker = f"{comment[0]} agentqueue:begin", _end_marker(comment)
    begin = text.find(begin_marker)
    if begin < 0:
        return None
    end = text.find(end_marker, begin)
    if end < 0:
        raise UnsafeEdit(f"{path} has {begin_marker!r} without {end_marker!r}: fix it by hand")
    stop = end + len(end_marker)
    if text[stop : stop + 1] == "\n":
        stop += 1
    header_end = text.find("\n", begin) + 1
    return begin, stop, text[header_end:end]


def block_edit(
    path: Path,
    body: str,
    tool: str,
    *,
    remove: bool,
    force: bool,
    comment: tuple[str, str] = HTML,
) -> Edit:
    """The edit that puts `body` between our markers in a shared file (or takes it out).

    A new block goes at the end after one blank line; removing it takes that line too, so
    install + uninstall gives the file back byte for byte. A file left empty is deleted.

    Raises:
        UnsafeEdit: the markers are broken, or the block was edited (unless `force`).
    """
    before = read(path)
    text = before or ""
    found = _find_block(text, path, comment)
    if found is not None:
        start, stop, current = found
        stamped = read_stamp(text[start : text.find("\n", start)])
        if not force and (stamped is None or stamped[1] != digest(current)):
            raise UnsafeEdit(
                f"{path}: the agentqueue block was edited by hand; --force replaces it"
            )
        if remove:
            head = text[:start]
            if head.endswith("\n\n"):
                head = head[:-1]
            after = head + text[stop:]
            return Edit(path, before, after if after.strip() else None, ours_only=True)
        return Edit(path, before, text[:start] + _block(body, tool, comment) + text[stop:])
    if remove:
        return Edit(path, before, before)
    if text and not text.endswith("\n"):
        text += "\n"
    separator = "\n" if text else ""
    return Edit(path, before, text + separator + _block(body, tool, comment))


# -- files we own -------------------------------------------------------------------------------
def _split_frontmatter(text: str) -> tuple[str, str]:
    """(frontmatter with its fences and newline, rest); frontmatter is '' when there is none."""
    if text.startswith("---\n"):
        close = text.find("\n---\n", 4)
        if close >= 0:
            return text[: close + 5], text[close + 5 :]
    return "", text


def owned_text(content: str, tool: str) -> str:
    """`content` with our stamp after its frontmatter (tools read frontmatter only at the top)."""
    front, rest = _split_frontmatter(content)
    return f"{front}{stamp(content, tool)}\n{rest}"


def unstamped(text: str) -> tuple[str, tuple[str, str] | None]:
    """The text without our stamp line, and the stamp (None when the file has none)."""
    front, rest = _split_frontmatter(text)
    first, _, remainder = rest.partition("\n")
    found = read_stamp(first) if first.startswith("<!-- agentqueue ") else None
    return (front + remainder, found) if found else (text, None)


def owned_edit(
    path: Path, content: str, tool: str, *, remove: bool, force: bool, prune_to: Path | None = None
) -> Edit:
    """The edit that makes `path` our `content` (or deletes our file).

    Raises:
        UnsafeEdit: the file exists but is not ours, or was edited since (unless `force`).
    """
    before = read(path)
    if before is not None:
        original, found = unstamped(before)
        if found is None:
            if remove:
                return Edit(path, before, before)  # not ours: nothing of ours to take away
            if not force:
                raise UnsafeEdit(
                    f"{path} exists and was not written by agentqueue; --force replaces it"
                )
        elif found[1] != digest(original) and not force:
            raise UnsafeEdit(f"{path} was edited since agentqueue wrote it; --force replaces it")
        ours = found is not None and found[1] == digest(original)
        if remove:
            return Edit(path, before, None, ours_only=ours, prune_to=prune_to)
    elif remove:
        return Edit(path, None, None)
    return Edit(path, before, owned_text(content, tool))


# -- JSON and TOML configs ----------------------------------------------------------------------
def _unparsable(path: Path, error: Exception, snippet: str) -> UnsafeEdit:
    return UnsafeEdit(
        f"{path} does not parse ({error}); it was left untouched — fix it, or add the "
        f"entry shown above by hand",
        snippet,
    )


def json_edit(path: Path, container: tuple[str, ...], value: Any, *, remove: bool) -> Edit:
    """The edit that sets (or removes) our server under `container` in a JSON/JSONC file.

    Comments, trailing commas, key order and indentation stay; a file that held only our
    entry is deleted on removal.

    Raises:
        UnsafeEdit: the file does not parse (its snippet is the entry to add by hand).
    """
    before = read(path)
    text = before or ""
    snippet = jsonc.set_member("", container, SERVER_NAME, value)
    try:
        if remove:
            if before is None:
                return Edit(path, None, None)
            after = jsonc.remove_member(text, container, SERVER_NAME)
            if jsonc.is_empty_object(after):
                return Edit(path, before, None, ours_only=True)
            return Edit(path, before, after)
        if text.strip() and jsonc.get_member(text, container, SERVER_NAME) == value:
            return Edit(path, before, before)
        return Edit(path, before, jsonc.set_member(text, container, SERVER_NAME, value))
    except jsonc.JsoncError as error:
        raise _unparsable(path, error, snippet) from None


def json_entry(path: Path, container: tuple[str, ...]) -> Any:
    """Our entry in a JSON/JSONC file, or None (also when the file does not parse)."""
    text = read(path)
    if not text:
        return None
    try:
        return jsonc.get_member(text, container, SERVER_NAME)
    except jsonc.JsoncError:
        return None


def _toml_table(value: dict[str, Any]) -> Any:
    table = tomlkit.table()
    for key, item in value.items():
        table[key] = tomlkit.inline_table() if item == {} else item
    return table


def toml_edit(path: Path, value: dict[str, Any], *, remove: bool) -> Edit:
    """The edit that sets (or removes) `[mcp_servers.agentqueue]` in a TOML file, with tomlkit
    so comments, order and formatting of everything else stay.

    Raises:
        UnsafeEdit: the file does not parse.
    """
    before = read(path)
    text = before or ""
    snippet = tomlkit.dumps({"mcp_servers": {SERVER_NAME: value}})
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as error:
        raise _unparsable(path, error, snippet) from None
    servers: Any = doc.get("mcp_servers")
    current = servers.get(SERVER_NAME) if servers is not None else None
    if remove:
        if current is None or servers is None:
            return Edit(path, before, before)
        was_last = list(doc.keys())[-1] == "mcp_servers" and list(servers.keys())[-1] == SERVER_NAME
        del servers[SERVER_NAME]
        if not servers:
            del doc["mcp_servers"]
        after = tomlkit.dumps(doc)
        # tomlkit puts a blank line before a table it appends; take it back with the table.
        if was_last and after.endswith("\n\n"):
            after = after[:-1]
        return Edit(path, before, after if after.strip() else None, ours_only=not after.strip())
    if current is not None and current.unwrap() == value:
        return Edit(path, before, before)
    if servers is None:
        servers = tomlkit.table(is_super_table=True)
        doc["mcp_servers"] = servers
    servers[SERVER_NAME] = _toml_table(value)
    return Edit(path, before, tomlkit.dumps(doc))


def toml_entry(path: Path) -> Any:
    """Our `[mcp_servers.agentqueue]` table as plain data, or None."""
    text = read(path)
    if not text:
        return None
    try:
        servers = tomlkit.parse(text).get("mcp_servers")
    except tomlkit.exceptions.ParseError:
        return None
    entry = servers.get(SERVER_NAME) if servers is not None else None
    return entry.unwrap() if entry is not None else None


# -- writing ------------------------------------------------------------------------------------
def _backup(path: Path) -> Path:
    """Copy `path` to the first free `<name>.bak`, `<name>.bak.2` … (never over a file)."""
    candidate = path.with_name(path.name + ".bak")
    number = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = path.with_name(f"{path.name}.bak.{number}")
        number += 1
    with open(candidate, "xb") as copy:
        copy.write(path.read_bytes())
    return candidate


def _prune(directory: Path, stop: Path) -> None:
    """Remove directories left empty, from `directory` up to (not including) `stop`."""
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def write(edit: Edit) -> Path | None:
    """Apply a changed edit; return the backup made, if any.

    The caller has checked the path against the jail. Directories are made as needed.
    """
    path = edit.path
    backup = None
    if edit.before is not None and path.exists() and not (edit.after is None and edit.ours_only):
        backup = _backup(path)
    if edit.after is None:
        path.unlink(missing_ok=True)
        if edit.prune_to is not None:
            _prune(path.parent, edit.prune_to)
        return backup
    path = path.resolve()  # write through a link inside the jail, keep the link itself
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(edit.after)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return backup
