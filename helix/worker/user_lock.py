"""A phase user serves one worker: a worker that runs its phases as a user of their own holds an
exclusive lock on that user for as long as it runs.

After every phase the worker kills every process of its phase user (`helix.worker.sweep`). Were
two workers on one machine to share the user, either would kill the other's running phase, and
a phase of one could watch the other's. So the lock is a file per phase user in a directory
only root may write (`/run/helix`, or `helix-root` in the system's temporary directory where
`/run` cannot serve), locked with flock: the kernel lets go of it when its holder exits, however
it exits, so a crashed worker never keeps the user from the next one. The file is named after
the user's uid, which is whom the kernel (and so the sweep) knows, whatever name it goes by.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from helix.worker.isolation import IsolationError, PhaseUser

LOCK_DIRS = (Path("/run/helix"), Path(tempfile.gettempdir()) / "helix-root")


class PhaseUserLock:
    """The phase user, held for this worker alone until `release()` (or this process's end)."""

    def __init__(self, user: PhaseUser, fd: int) -> None:
        self.user = user
        self._fd: int | None = fd

    @classmethod
    def take(cls, user: PhaseUser, dirs: Sequence[Path] = LOCK_DIRS) -> PhaseUserLock:
        """Hold `user`, or IsolationError when another worker on this machine holds it."""
        dir_fd = _private_directory(dirs)
        try:
            fd = os.open(
                f"phase-user-{user.uid}.lock",
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dir_fd,
            )
        finally:
            os.close(dir_fd)
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode) or found.st_uid != os.geteuid():
                raise IsolationError(f"the lock file of the phase user {user.name} is not root's")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                raise IsolationError(
                    f"the phase user {user.name} (uid {user.uid}) already runs the phases of "
                    f"another worker on this machine (process {holder or 'unknown'}); a worker "
                    "ends every process of its phase user after each phase, so each needs one "
                    "of its own: give this one another (HELIX_PHASE_USER, or `helix worker "
                    "--phase-user`)"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(user, fd)

    def fileno(self) -> int | None:
        """The lock's descriptor while it is held: a process that inherits it holds the user
        too, until it exits (the worker's guard, `helix.worker.guard`)."""
        return self._fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # lets go of the flock


def _private_directory(candidates: Sequence[Path]) -> int:
    """An open directory only root may write: the first of `candidates` that is one, or is
    created as one (mode 0700). Never one reached through a symbolic link as its last part."""
    reasons = []
    for path in candidates:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:  # no /run, or one this process may not write
            reasons.append(f"{path}: {exc.strerror}")
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:  # ELOOP for a link, ENOTDIR for anything but a directory
            reasons.append(f"{path}: {exc.strerror}")
            continue
        found = os.fstat(fd)
        if found.st_uid == os.geteuid() and not found.st_mode & 0o022:
            return fd
        os.close(fd)
        reasons.append(
            f"{path}: uid {found.st_uid}, mode {stat.filemode(found.st_mode)}, "
            "not a directory only this user may write"
        )
    raise IsolationError(
        "no directory for the phase user's lock that only root may write: " + "; ".join(reasons)
    )
