"""A project's workspace before and after a phase: which files the phase created or changed.

A snapshot maps each regular file's relative path to its size and mtime; a file whose path is
new (`created`), or whose size or mtime differs (`modified`), after the phase is reported with
its SHA-256. Symlinks are never followed (a link could point anywhere on the machine) and `.git`
directories are skipped. A file a phase names itself (`::helix file`) is resolved, links and
all, and reported only when it is a regular file inside the workspace.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

import attrs

log = logging.getLogger(__name__)

Snapshot = dict[str, tuple[int, int]]  # relative path → (size, mtime_ns)

SKIPPED_DIRS = frozenset({".git"})
# What the worker writes for each phase to read (`helix.worker.isolation.write_for_phase`):
# never reported as the phase's.
CONTEXT_FILE = ".helix-context.json"
CHUNK_BYTES = 1024 * 1024


@attrs.frozen(kw_only=True)
class FileRecord:
    path: str  # relative to the workspace, '/'-separated
    size: int
    sha256: str
    change: str  # "created" or "modified"


def snapshot(root: Path) -> Snapshot:
    found: Snapshot = {}
    for path, entry in _files(root):
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


def changed_files(root: Path, before: Snapshot) -> list[FileRecord]:
    """Files under `root` created or modified since `before`, sorted by path."""
    changed: list[FileRecord] = []
    for path, stamp in sorted(snapshot(root).items()):
        if before.get(path) == stamp:
            continue
        try:
            size, digest = sha256_of(root / path)
        except OSError as exc:
            # Removed or unreadable since the walk: nothing trustworthy to report.
            log.warning("not reporting %s: %s", path, exc)
            continue
        change = "modified" if path in before else "created"
        changed.append(FileRecord(path=_printable(path), size=size, sha256=digest, change=change))
    return changed


def named_file(root: Path, name: str, before: Snapshot) -> FileRecord | None:
    """The file a phase named (relative to `root`, or absolute), or None when it is not a
    regular file inside `root` once every link on its way is resolved. Called once the phase's
    processes are gone, so nothing swaps a link in between the check and the read."""
    found = confined(root, name)
    if found is None:
        return None
    target, path = found
    try:
        size, digest = sha256_of(target)
    except OSError as exc:
        log.warning("not reporting %s: %s", path, exc)
        return None
    change = "modified" if path in before else "created"
    return FileRecord(path=_printable(path), size=size, sha256=digest, change=change)


def confined(root: Path, name: str) -> tuple[Path, str] | None:
    """Where `name` (relative to `root`, or absolute) leads once every link on its way is
    resolved, and its '/'-separated path relative to `root`; None when that is not inside
    `root`, is `root` itself, the context file or inside `.git`: the one rule for which of
    a workspace's files a phase may report and the worker may read."""
    root = root.resolve()
    try:
        target = (root / name).resolve(strict=True)
        relative = target.relative_to(root)
    except (OSError, ValueError, RuntimeError):
        return None
    path = relative.as_posix()
    if path in (".", CONTEXT_FILE) or SKIPPED_DIRS & set(relative.parts):
        return None
    return target, path


def open_for_upload(root: Path, path: str) -> int:
    """A file descriptor on the workspace's file at `path` (as a report names it), for its
    upload; OSError saying why not when the path leads anywhere but to itself (a link on the
    way, or out of the workspace), or to anything but a regular file with no other name (a
    hard link may be another file's, say one only the worker may read)."""
    found = confined(root, path)
    if found is None or found[1] != path:
        raise OSError(f"{path} is not a file inside the workspace")
    fd = _open_regular(found[0])
    if os.fstat(fd).st_nlink > 1:
        os.close(fd)
        raise OSError(f"{path} is a hard link: its content may be another file's")
    return fd


def _open_regular(path: Path) -> int:
    # Never through a link, nor from anything but a regular file: a phase's process may have
    # swapped the file since the walk, for a link to what only the worker (perhaps root) may
    # read, or for a FIFO that would block the worker for ever.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is no longer a regular file")
    return fd


def sha256_of(path: Path) -> tuple[int, str]:
    """The size and SHA-256 of what was read, so the two always describe the same bytes."""
    digest = hashlib.sha256()
    size = 0
    with open(_open_regular(path), "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _printable(path: str) -> str:
    # A name that is not UTF-8 keeps its undecodable bytes as lone surrogates, which JSON
    # consumers reject; the report shows them as U+FFFD instead.
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _files(root: Path) -> list[tuple[str, os.DirEntry[str]]]:
    found: list[tuple[str, os.DirEntry[str]]] = []
    pending = [("", str(root))]
    while pending:
        prefix, directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.name not in SKIPPED_DIRS:
                                pending.append((prefix + entry.name + "/", entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            if not prefix and entry.name == CONTEXT_FILE:
                                continue
                            found.append((prefix + entry.name, entry))
                    except OSError:
                        continue
        except OSError as exc:
            log.warning("cannot list %s: %s", directory, exc)
    return found
