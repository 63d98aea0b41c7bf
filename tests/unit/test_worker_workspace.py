"""Which files a phase created or changed: hashes, sizes, and what is never looked at."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from helix.worker.workspace import (
    CONTEXT_FILE,
    FileRecord,
    changed_files,
    named_file,
    sha256_of,
    snapshot,
)


def write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def record(path: str, content: bytes, change: str = "created") -> FileRecord:
    digest = hashlib.sha256(content).hexdigest()
    return FileRecord(path=path, size=len(content), sha256=digest, change=change)


def test_created_and_modified_files_are_reported_with_their_hash_and_size(
    tmp_path: Path,
) -> None:
    write(tmp_path / "kept.txt", b"unchanged")
    write(tmp_path / "src" / "main.py", b"print('v1')\n")
    before = snapshot(tmp_path)

    write(tmp_path / "src" / "main.py", b"print('version 2')\n")
    write(tmp_path / "build" / "out" / "report.json", b'{"ok": true}')

    assert changed_files(tmp_path, before) == [
        record("build/out/report.json", b'{"ok": true}', "created"),
        record("src/main.py", b"print('version 2')\n", "modified"),
    ]


def test_a_rewrite_of_the_same_size_is_seen_by_its_mtime(tmp_path: Path) -> None:
    target = tmp_path / "same.txt"
    write(target, b"aaaa")
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(tmp_path)

    write(target, b"bbbb")

    assert changed_files(tmp_path, before) == [record("same.txt", b"bbbb", "modified")]


def test_an_untouched_workspace_reports_nothing(tmp_path: Path) -> None:
    write(tmp_path / "a" / "b.txt", b"x")
    before = snapshot(tmp_path)

    assert changed_files(tmp_path, before) == []


def test_git_directories_are_skipped_at_any_depth(tmp_path: Path) -> None:
    before = snapshot(tmp_path)

    write(tmp_path / ".git" / "index", b"git's own")
    write(tmp_path / "vendor" / "lib" / ".git" / "HEAD", b"ref: main")
    write(tmp_path / "vendor" / "lib" / "code.c", b"int x;")
    write(tmp_path / ".gitignore", b"*.o")

    paths = [r.path for r in changed_files(tmp_path, before)]
    assert paths == [".gitignore", "vendor/lib/code.c"]


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    write(outside / "secret.txt", b"not the workspace's")
    workspace.mkdir()
    before = snapshot(workspace)

    (workspace / "link-to-file").symlink_to(outside / "secret.txt")
    (workspace / "link-to-dir").symlink_to(outside, target_is_directory=True)
    write(workspace / "real.txt", b"mine")

    assert changed_files(workspace, before) == [record("real.txt", b"mine")]


def test_the_hash_is_streamed_over_files_larger_than_one_chunk(tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)
    write(tmp_path / "big.bin", content)

    assert sha256_of(tmp_path / "big.bin") == (
        len(content),
        hashlib.sha256(content).hexdigest(),
    )


async def test_a_file_swapped_for_a_link_or_a_fifo_after_the_walk_is_not_read(
    tmp_path: Path,
) -> None:
    write(tmp_path / "outside" / "secret.txt", b"only the worker may read this")
    swapped = tmp_path / "ws" / "swapped"
    swapped.parent.mkdir()
    swapped.symlink_to(tmp_path / "outside" / "secret.txt")
    with pytest.raises(OSError):
        sha256_of(swapped)

    fifo = tmp_path / "ws" / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="no longer a regular file"):
        # Off the event loop: reading a FIFO with no writer would block for ever.
        await asyncio.wait_for(asyncio.to_thread(sha256_of, fifo), 5)


def test_the_context_file_the_worker_writes_is_never_the_phases(tmp_path: Path) -> None:
    before = snapshot(tmp_path)

    write(tmp_path / CONTEXT_FILE, b"{}")
    write(tmp_path / "sub" / CONTEXT_FILE, b"the phase's own")

    assert [r.path for r in changed_files(tmp_path, before)] == [f"sub/{CONTEXT_FILE}"]
    assert named_file(tmp_path, CONTEXT_FILE, before) is None


def test_a_named_file_is_resolved_inside_the_workspace_and_says_if_it_is_new(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    write(workspace / "old.txt", b"was there")
    before = snapshot(workspace)
    write(workspace / "out" / "new.txt", b"made now")
    (workspace / "alias").symlink_to(workspace / "out" / "new.txt")

    assert named_file(workspace, "old.txt", before) == record("old.txt", b"was there", "modified")
    assert named_file(workspace, "out/../out/new.txt", before) == record("out/new.txt", b"made now")
    assert named_file(workspace, str(workspace / "alias"), before) == record(
        "out/new.txt", b"made now"
    )


def test_a_named_file_outside_the_workspace_or_not_a_file_is_not_reported(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    write(tmp_path / "secret.txt", b"the worker's")
    write(workspace / ".git" / "config", b"git's")
    (workspace / "escape").symlink_to(tmp_path / "secret.txt")
    (workspace / "dir").mkdir()
    before = snapshot(workspace)

    for name in (
        "../secret.txt",
        str(tmp_path / "secret.txt"),
        "escape",
        "dir",
        ".",
        "gone",
        ".git/config",
    ):
        assert named_file(workspace, name, before) is None, name
