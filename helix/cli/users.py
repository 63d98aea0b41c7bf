"""`helix users …` and `helix keys …`: manage accounts from the command line (the same events
as the API, with the actor `cli:<login>`)."""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from helix.auth.accounts import Accounts
from helix.cli import remote
from helix.cli.context import pool
from helix.config import Settings
from helix.domain.user import Role
from helix.errors import HelixError
from helix.eventstore import EventStore
from helix.serialization import default_registry
from helix.services import Caller

ROLES = [r.value for r in Role]


def register(commands: Any) -> None:
    users = commands.add_parser("users", help="create and list users")
    sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    create = sub.add_parser(
        "create",
        help="create a user",
        description="Create a user. Without --password-stdin the user has no password and "
        "signs in with API keys only (see `helix keys create`).",
    )
    create.add_argument("username", metavar="USERNAME", help="the new user's name")
    create.add_argument("--role", choices=ROLES, default="user", help="role (default: user)")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    create.set_defaults(handler=run_create_user)
    setpw = sub.add_parser(
        "set-password",
        help="set a user's password, read from standard input",
        description="Set a user's password to the first line of standard input (never an "
        "argument: arguments are visible to other local users). Every JWT the user holds is "
        "revoked.",
    )
    setpw.add_argument("username", metavar="NAME", help="the user")
    setpw.set_defaults(handler=run_set_password)
    listing = sub.add_parser("list", help="list users", description="List every user.")
    listing.set_defaults(handler=run_list_users)

    keys = commands.add_parser(
        "keys", help="create and revoke API keys (database); list yours (through the API)"
    )
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    kcreate = ksub.add_parser(
        "create",
        help="create an API key; prints only the key",
        description="Create an API key for a user and print only the key on standard output "
        "(it is not shown again).",
    )
    kcreate.add_argument("--user", required=True, metavar="USERNAME", help="the key's owner")
    kcreate.add_argument("--name", default="cli key", help="a label for the key")
    kcreate.set_defaults(handler=run_create_key)
    krevoke = ksub.add_parser("revoke", help="revoke an API key", description="Revoke a key.")
    krevoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (a UUID)")
    krevoke.set_defaults(handler=run_revoke_key)
    remote.add_keys_list(ksub)


def _caller() -> Caller:
    login = getpass.getuser()
    return Caller(
        user_id=f"cli:{login}",
        name=login,
        actor=f"cli:{login}",
        sees_everything=True,
        admin=True,
        source="helix cli",
    )


@asynccontextmanager
async def _accounts() -> AsyncIterator[Accounts]:
    settings = Settings.from_env()
    async with pool(settings) as p:
        # No wake-ups from here: the running sequencer's polling picks the events up.
        yield Accounts(
            EventStore(p, default_registry()), password_min_length=settings.password_min_length
        )


def _fail(exc: HelixError) -> int:
    print(f"error: {exc.message}", file=sys.stderr)
    return 1


async def run_create_user(args: argparse.Namespace) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    async with _accounts() as accounts:
        try:
            user = await accounts.create_user(
                args.username, Role(args.role), password, caller=_caller()
            )
        except HelixError as exc:
            return _fail(exc)
    print(f"created user {user.username} ({user.user_id}) with role {user.role.value}")
    return 0


def _read_password() -> str:
    """The first line of standard input; asked for without echo on a terminal."""
    if sys.stdin.isatty():
        return getpass.getpass("new password: ")
    return sys.stdin.readline().rstrip("\r\n")


async def run_set_password(args: argparse.Namespace) -> int:
    password = _read_password()
    async with _accounts() as accounts:
        try:
            found = await accounts.by_username(args.username)
            await accounts.set_password(found.user_id, password, caller=_caller())
        except HelixError as exc:
            return _fail(exc)
    print(f"set the password of {found.username}; their JWTs are revoked")
    return 0


async def run_list_users(args: argparse.Namespace) -> int:
    async with _accounts() as accounts:
        found, _ = await accounts.list_users(role=None, limit=100_000, offset=0)
    for u in found:
        state = "disabled" if u.disabled else "active"
        print(f"{u.user_id}  {u.username:<24} {u.role.value:<8} {state}")
    return 0


async def run_create_key(args: argparse.Namespace) -> int:
    async with _accounts() as accounts:
        try:
            user = await accounts.by_username(args.user)
            _, key = await accounts.create_key(user.user_id, args.name, caller=_caller())
        except HelixError as exc:
            return _fail(exc)
    print(key)
    return 0


async def run_revoke_key(args: argparse.Namespace) -> int:
    try:
        key_id = uuid.UUID(args.key_id)
    except ValueError:
        print("error: KEY_ID must be a UUID", file=sys.stderr)
        return 2
    async with _accounts() as accounts:
        try:
            record = await accounts.revoke_key(key_id, owner=None, caller=_caller())
        except HelixError as exc:
            return _fail(exc)
    print(f"revoked key {record.prefix}… ({record.key_id})")
    return 0
