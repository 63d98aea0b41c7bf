"""Unprivileged system users that Helix, running as root, hands work to: the embedded
PostgreSQL's owner and the user phase commands run as.

A system user is created when missing (no home, no login shell, a group of its own), and work is
handed to it through subprocess arguments that also drop every supplementary group, so nothing
of root's group memberships comes along.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import IO, Any

NOLOGIN = "/usr/sbin/nologin"
PHASE_USER = "helix-phase"  # who phase commands run as by default when Helix runs as root
POSTGRES_USER = "helix-postgres"  # who the embedded PostgreSQL runs as when Helix runs as root


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The user `name`, created as a system user if there is none (needs root)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", NOLOGIN, name],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        # Another process may have created it at the same moment (useradd then fails).
        return pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(
            f"could not create the system user {name!r}: useradd exited with "
            f"{result.returncode}: {result.stderr.strip()}"
        ) from None


def as_user(user: pwd.struct_passwd) -> dict[str, Any]:
    """subprocess arguments that run a command as `user`, in its own group and no other (as
    root's group, the group bits of the files it touches would apply instead of the "other"
    bits)."""
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def grant_traversal(path: Path) -> None:
    """Let other users reach `path` by name (o+x on it and every parent, nothing more: no
    listing, no reading)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def private_dir(path: Path) -> None:
    """Create `path` if need be and let other users only pass through it (mode 0711): the
    embedded PostgreSQL's user and the phase user reach their own directories inside by name,
    and nobody else lists or reads anything. Every entry inside must be private on its own."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o711:
        path.chmod(0o711)


def private_file(path: Path) -> IO[bytes]:
    """`path` opened for appending, created mode 0600 (an existing one made so), never through
    a link: lock files in the data dir, which another user must not even open."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")
