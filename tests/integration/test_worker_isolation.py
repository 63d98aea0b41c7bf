"""Who phases run as and the workspaces they get: the phase user as root, one's own user
otherwise, workspaces of the phase user's own in a workdir it cannot list; a phase user held by
one worker alone."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from helix.system_users import POSTGRES_USER, ensure_system_user
from helix.worker import isolation
from helix.worker.isolation import IsolationError, PhaseUser, phase_user, prepare_workspace
from helix.worker.user_lock import LOCK_DIRS, PhaseUserLock


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_workspace_belongs_to_the_phase_user_in_a_workdir_it_may_only_pass_through(
    tmp_path: Path, as_root: None
) -> None:
    user = phase_user()
    workdir = tmp_path / "deep" / "workspaces"

    workspace = prepare_workspace(workdir, "project-1", user)

    assert workspace == (workdir / "project-1").resolve()
    assert (os.stat(workspace).st_uid, mode(workspace)) == (user.uid, 0o700)
    assert (os.stat(workdir).st_uid, mode(workdir)) == (0, 0o711)
    assert all(mode(parent) & 0o001 for parent in workdir.parents)


def test_a_workspace_left_to_root_is_handed_over_without_following_its_links(
    tmp_path: Path, as_root: None
) -> None:
    user = phase_user()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("root's")
    workspace = tmp_path / "workspaces" / "project-1"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "main.c").write_text("int main;")
    (workspace / "link-to-dir").symlink_to(outside, target_is_directory=True)
    (workspace / "src" / "link-to-file").symlink_to(outside / "secret")

    prepare_workspace(tmp_path / "workspaces", "project-1", user)

    for path in ("", "src", "src/main.c", "link-to-dir", "src/link-to-file"):
        assert os.lstat(workspace / path).st_uid == user.uid, path
    assert os.stat(outside).st_uid == 0
    assert os.stat(outside / "secret").st_uid == 0


def test_a_workdir_others_may_write_or_a_workspace_that_is_a_link_is_refused(
    tmp_path: Path, as_root: None
) -> None:
    user = phase_user()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(IsolationError, match="writable by no one else"):
        prepare_workspace(shared, "project-1", user)
    assert not (shared / "project-1").exists()

    workdir = tmp_path / "workspaces"
    workdir.mkdir()
    (workdir / "project-2").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(IsolationError, match="not a directory"):
        prepare_workspace(workdir, "project-2", user)
    assert os.stat(tmp_path).st_uid == 0


def test_as_any_other_user_phases_run_as_that_user_and_the_log_says_so_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("only a user other than root cannot switch users")
    monkeypatch.setattr(isolation, "_warned_not_isolated", False)
    with caplog.at_level(logging.WARNING, logger="helix.worker.isolation"):
        first, second = phase_user(), phase_user("someone-else")

    assert first == second
    assert (first.uid, first.switch) == (os.geteuid(), False)
    assert first.process_options() == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "only a worker started as root" in warnings[0]
    workspace = prepare_workspace(tmp_path / "workspaces", "project-1", first)
    assert mode(workspace) == 0o700


def test_as_root_a_phase_user_lock_is_held_in_a_directory_only_root_may_write(
    spare_phase_user: PhaseUser,
) -> None:
    lock = PhaseUserLock.take(spare_phase_user)
    try:
        found = [d for d in LOCK_DIRS if (d / f"phase-user-{spare_phase_user.uid}.lock").exists()]
        assert found, LOCK_DIRS
        directory = found[0]
        assert (os.lstat(directory).st_uid, mode(directory)) == (0, 0o700)
        held = directory / f"phase-user-{spare_phase_user.uid}.lock"
        assert (os.lstat(held).st_uid, mode(held)) == (0, 0o600)
        assert held.read_text() == f"{os.getpid()}\n"
        with pytest.raises(IsolationError, match="already runs the phases of another worker"):
            PhaseUserLock.take(spare_phase_user)
    finally:
        lock.release()
    PhaseUserLock.take(spare_phase_user).release()


def test_the_lock_directory_is_never_a_link_or_one_others_may_write(tmp_path: Path) -> None:
    user = PhaseUser(name="phase", uid=4242, gid=4242, home=None, switch=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    unsafe = [tmp_path / "no-parent" / "helix", shared, tmp_path / "linked"]

    with pytest.raises(IsolationError) as refused:
        PhaseUserLock.take(user, unsafe)
    for path in unsafe:
        assert str(path) in str(refused.value)
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert list(shared.iterdir()) == []

    lock = PhaseUserLock.take(user, [*unsafe, tmp_path / "private"])
    try:
        assert mode(tmp_path / "private") == 0o700
        assert (tmp_path / "private" / "phase-user-4242.lock").exists()
        with pytest.raises(IsolationError, match="HELIX_PHASE_USER"):
            PhaseUserLock.take(user, [tmp_path / "private"])
    finally:
        lock.release()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands phases to another user")
def test_as_root_phases_never_run_as_the_embedded_postgresql_s_user() -> None:
    ensure_system_user(POSTGRES_USER)
    with pytest.raises(IsolationError, match="embedded PostgreSQL's user"):
        phase_user(POSTGRES_USER)
