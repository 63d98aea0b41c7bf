"""Unprivileged system users that Helix, running as root, hands work to: the embedded
PostgreSQL's owner and the user phase commands run as.

A system user is created when missing (no home, no login shell, a group of its own), and work is
handed to it through subprocess arguments that also drop every supplementary group, so nothing
of root's group memberships comes along.
"""

from __future__ import annotations

import pwd
import subprocess
from pathlib import Path
from typing import Any

NOLOGIN = "/usr/sbin/nologin"
PHASE_USER = "helix-phase"  # who phase commands run as by default when Helix runs as root


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
