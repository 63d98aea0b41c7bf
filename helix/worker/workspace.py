"""A project's workspace before and after a phase: which files the phase created or changed.

A snapshot maps each regular file's relative path to its size and mtime; a file whose path is
new, or whose size or mtime differs, after the phase is reported with its SHA-256. Symlinks are
never followed (a link could point anywhere on the machine) and `.git` directories are skipped.
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
CHUNK_BYTES = 1024 * 1024


@attrs.frozen(kw_only=True)
class FileRecord:
    path: str  # relative to the workspace, '/'-separated
    size: int
    sha256: str


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
        changed.append(FileRecord(path=_printable(path), size=size, sha256=digest))
    return changed


def sha256_of(path: Path) -> tuple[int, str]:
    """The size and SHA-256 of what was read, so the two always describe the same bytes."""
    digest = hashlib.sha256()
    size = 0
    # Never through a link, nor from anything but a regular file: a phase's process may have
    # swapped the file since the walk, for a link to what only the worker (perhaps root) may
    # read, or for a FIFO that would block the worker for ever.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is no longer a regular file")
    with open(fd, "rb") as f:
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
                            found.append((prefix + entry.name, entry))
                    except OSError:
                        continue
        except OSError as exc:
            log.warning("cannot list %s: %s", directory, exc)
    return found
