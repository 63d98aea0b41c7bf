"""Phase commands run outside the worker's trust boundary, as CI runners run the jobs they take.

A worker running as root (the in-process worker of `helix serve`, or `helix worker` started as
root) runs every phase as an unprivileged system user (`helix-phase` unless configured; created
when missing): in a process of its own, with no supplementary groups, a private umask, and no
way to gain privileges back through a setuid program. The kernel then denies the phase the
server's and the worker's `/proc/<pid>/environ`, memory and open files. As any other user the
worker cannot switch users, so phases run as that same user; it says so once in its log.

Whoever a phase runs as, its environment is built from nothing: the job's and the phase's
variables (JOB_VARIABLES: the job, project, phase, workspace, model, prompt and context file),
the phase's own `env`, and only PATH, HOME, USER and the locale beside them. No worker key, API
key or database URL reaches it: what a phase may know of its project comes in the context file
the worker writes into the workspace, never as a credential to ask the server with.

Workspaces: `<workdir>` belongs to the worker and others may only pass through it (mode 0711:
a phase reaches its own workspace by name and cannot list the others); `<workdir>/<project>` is
the project's, mode 0700, owned by the phase user.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from helix.system_users import (
    PHASE_USER,
    POSTGRES_USER,
    as_user,
    ensure_system_user,
    grant_traversal,
)

log = logging.getLogger(__name__)

# What a phase inherits from the worker's environment, by name: where programs are and the
# locale. Nothing else: the worker's (and inside `helix serve`, the server's) variables hold
# credentials, and a list of what may pass cannot miss a new secret the way a list of what may
# not pass does.
INHERITED_VARIABLES = frozenset({"PATH", "LANG", "LANGUAGE", "TZ"})
INHERITED_PREFIXES = ("LC_",)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# What the worker tells each phase about its job, beside the phase's own `env` (which these
# override). HELIX_MODEL and HELIX_PROMPT are set only when the job has a model and the phase a
# prompt.
JOB_VARIABLES = frozenset(
    {
        "HELIX_JOB_ID",
        "HELIX_PROJECT_ID",
        "HELIX_PHASE",
        "HELIX_WORKSPACE",
        "HELIX_CONTEXT_FILE",
        "HELIX_MODEL",
        "HELIX_PROMPT",
    }
)
PRIVATE_UMASK = 0o077
_PR_SET_NO_NEW_PRIVS = 38
_warned_not_isolated = False


class IsolationError(Exception):
    """Phases cannot be run as configured (the phase user or the workdir is unusable)."""


@attrs.frozen(kw_only=True)
class PhaseUser:
    """The OS user a worker's phases run as."""

    name: str
    uid: int
    gid: int
    # Its home directory when it has one of its own; phases without one get the workspace.
    home: Path | None
    # True when the worker runs as root and hands its phases to this (other) user.
    switch: bool

    def process_options(self) -> dict[str, Any]:
        """subprocess arguments that start a phase as this user."""
        if not self.switch:
            return {}
        return {**as_user(pwd.getpwuid(self.uid)), "umask": PRIVATE_UMASK}


def phase_user(name: str = PHASE_USER) -> PhaseUser:
    """As root: the user `name` (created when missing), and this process can no longer pass
    privileges on through exec. As anyone else: this process's own user, with a warning."""
    if os.geteuid() != 0:
        own = pwd.getpwuid(os.geteuid())
        _warn_not_isolated(own.pw_name)
        return _from_passwd(own, switch=False)
    try:
        found = ensure_system_user(name)
    except RuntimeError as exc:
        raise IsolationError(str(exc)) from exc
    if found.pw_uid == _uid_of(POSTGRES_USER):
        # Its phases could read the database's files, and the worker, which kills every process
        # of the phase user after each phase, would kill the database.
        raise IsolationError(
            f"phases cannot run as {name}: it is the embedded PostgreSQL's user; give "
            "HELIX_PHASE_USER (helix worker --phase-user) a user of their own"
        )
    if found.pw_uid == 0:
        log.warning("phases run as %s, with root's privileges: they are not isolated", name)
        return _from_passwd(found, switch=False)
    _forbid_privilege_gain()
    log.info("phases run as the user %s (uid %d), isolated from the worker", name, found.pw_uid)
    return _from_passwd(found, switch=True)


def _uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def phase_environment(
    worker_env: Mapping[str, str],
    *,
    user: PhaseUser,
    workspace: Path,
    extra: Mapping[str, str],
) -> dict[str, str]:
    """A phase's whole environment: PATH and the locale from the worker's, HOME, USER and
    LOGNAME, then `extra` (the phase's env and the job's variables) on top."""
    env = {
        name: value
        for name, value in worker_env.items()
        if name in INHERITED_VARIABLES or name.startswith(INHERITED_PREFIXES)
    }
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOME"] = str(user.home or workspace)
    env["USER"] = env["LOGNAME"] = user.name
    env.update(extra)
    return env


def job_variables(
    *,
    job_id: str,
    project_id: str,
    phase: str,
    workspace: Path,
    context_file: Path,
    model: str | None,
    prompt: str | None,
) -> dict[str, str]:
    """The JOB_VARIABLES a phase gets (the model and prompt only when there are ones)."""
    found = {
        "HELIX_JOB_ID": job_id,
        "HELIX_PROJECT_ID": project_id,
        "HELIX_PHASE": phase,
        "HELIX_WORKSPACE": str(workspace),
        "HELIX_CONTEXT_FILE": str(context_file),
    }
    if model:
        found["HELIX_MODEL"] = model
    if prompt:
        found["HELIX_PROMPT"] = prompt
    return found


def write_for_phase(path: Path, content: bytes, user: PhaseUser) -> None:
    """Write `content` to `path` in a workspace, as a new file (mode 0600) of the phase user's.
    Whatever was at `path` is removed first, so a link the last phase left there cannot send
    the worker's write anywhere else."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise IsolationError(f"{path} is a directory")
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(fd, "wb") as f:
        if user.switch:
            os.fchown(f.fileno(), user.uid, user.gid)
        f.write(content)


def prepare_workdir(workdir: Path, user: PhaseUser) -> None:
    """Create the workdir; when phases run as another user, let them pass through it (never
    list it), and refuse one that someone else could change."""
    if not workdir.exists():
        workdir.mkdir(parents=True, mode=0o711)
    if not user.switch:
        return
    found = os.stat(workdir)
    if found.st_uid != os.geteuid() or found.st_mode & 0o022:
        # Another user able to create or rename entries here could put a link where a
        # workspace goes, and the worker would hand that link's target to the phase user.
        raise IsolationError(
            f"the workdir {workdir} must belong to this worker's user and be writable by no "
            f"one else (it is mode {stat.filemode(found.st_mode)}, uid {found.st_uid})"
        )
    if found.st_mode & 0o044:
        os.chmod(workdir, stat.S_IMODE(found.st_mode) & ~0o044)
    grant_traversal(workdir.resolve())


def prepare_workspace(workdir: Path, name: str, user: PhaseUser) -> Path:
    """`<workdir>/<name>`, a directory of the phase user's own (mode 0700); one a worker of
    an earlier version left to root is handed over with everything in it."""
    prepare_workdir(workdir, user)
    path = workdir / name
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        path.mkdir(mode=0o700)
        found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode):
        raise IsolationError(f"the workspace {path} is not a directory")
    if user.switch and found.st_uid != user.uid:
        _hand_over(path, user)
    os.chmod(path, 0o700)
    return path.resolve()


def _hand_over(root: Path, user: PhaseUser) -> None:
    # lchown, and never into a symlinked directory: a link must not give away what it points to.
    os.chown(root, user.uid, user.gid, follow_symlinks=False)
    for parent, dirs, files in os.walk(root, followlinks=False):
        for entry in (*dirs, *files):
            os.chown(os.path.join(parent, entry), user.uid, user.gid, follow_symlinks=False)


def _from_passwd(entry: pwd.struct_passwd, *, switch: bool) -> PhaseUser:
    home = Path(entry.pw_dir)
    try:
        owned = home.is_dir() and home.stat().st_uid == entry.pw_uid
    except OSError:
        owned = False
    return PhaseUser(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        home=home if owned and entry.pw_dir not in ("", "/") else None,
        switch=switch,
    )


def _warn_not_isolated(name: str) -> None:
    global _warned_not_isolated
    if _warned_not_isolated:
        return
    _warned_not_isolated = True
    log.warning(
        "phases run as %s, the worker's own user: only a worker started as root can run them "
        "as an unprivileged user, so they can read whatever this user can",
        name,
    )


def _forbid_privilege_gain() -> None:
    # PR_SET_NO_NEW_PRIVS is inherited by every child and cannot be undone: a phase started as
    # the phase user can then never regain privileges through a setuid program. Set on the
    # worker itself, because the only per-child hook (preexec_fn) is unsafe with threads. Root
    # loses nothing by it: it needs no setuid program to be root.
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        log.warning("could not set no_new_privs: %s", os.strerror(ctypes.get_errno()))
