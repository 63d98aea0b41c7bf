"""`helix users …` and `helix keys …` as an operator runs them: the same events as the API,
with the actor `cli:<login>`."""

from __future__ import annotations

import argparse
import getpass
import io
import uuid

import pytest

from helix.auth.keys import KEY_PREFIX
from helix.bootstrap import LogNode
from helix.cli import users as cli


@pytest.fixture(autouse=True)
def database_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIX_DATABASE_URL", database_url)


async def test_an_operator_creates_a_user_gives_them_a_key_and_revokes_it(
    node: LogNode, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    created = argparse.Namespace(username="erin", role="auditor", password_stdin=True)
    assert await cli.run_create_user(created) == 0
    assert await cli.run_create_key(argparse.Namespace(user="erin", name="ops")) == 0
    key = capsys.readouterr().out.splitlines()[-1]
    row = await node.store.pool.fetchrow(
        "SELECT k.key_id, u.user_id FROM api_keys k JOIN users u USING (user_id)"
        " WHERE u.username = 'erin' AND k.name = 'ops'"
    )
    assert row is not None and key.startswith(KEY_PREFIX)

    assert await cli.run_revoke_key(argparse.Namespace(key_id=str(row["key_id"]))) == 0

    events = await node.store.read_stream(f"user-{row['user_id']}")
    assert [e.type for e in events] == ["user.created", "api_key.created", "api_key.revoked"]
    actor = f"cli:{getpass.getuser()}"
    assert {(e.metadata["actor"], e.metadata["source"]) for e in events} == {(actor, "helix cli")}
    assert all(e.metadata["request_id"] == e.metadata["correlation_id"] for e in events)
    assert (
        await node.store.pool.fetchval(
            "SELECT count(*) FROM user_passwords WHERE user_id = $1", row["user_id"]
        )
        == 1
    )


async def test_a_taken_username_or_an_unknown_key_is_an_error_message_not_a_traceback(
    node: LogNode, capsys: pytest.CaptureFixture[str]
) -> None:
    first = argparse.Namespace(username="erin", role="user", password_stdin=False)
    assert await cli.run_create_user(first) == 0

    assert await cli.run_create_user(first) == 1
    assert await cli.run_revoke_key(argparse.Namespace(key_id=str(uuid.uuid4()))) == 1

    err = capsys.readouterr().err
    assert "that username is taken" in err and "no such API key" in err


async def test_an_operator_sets_a_password_from_standard_input_and_a_short_one_is_refused(
    node: LogNode, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        await cli.run_create_user(
            argparse.Namespace(username="erin", role="user", password_stdin=False)
        )
        == 0
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("too short\n"))
    assert await cli.run_set_password(argparse.Namespace(username="erin")) == 1
    assert "a password needs at least 12 characters" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert await cli.run_set_password(argparse.Namespace(username="erin")) == 0

    user_id = await node.store.pool.fetchval("SELECT user_id FROM users WHERE username = 'erin'")
    events = await node.store.read_stream(f"user-{user_id}")
    assert [e.type for e in events] == ["user.created", "user.password_changed"]
    assert events[-1].metadata["actor"] == f"cli:{getpass.getuser()}"
    stored = await node.store.pool.fetchval(
        "SELECT password_hash FROM user_passwords WHERE user_id = $1", user_id
    )
    assert stored.startswith("scrypt$")
