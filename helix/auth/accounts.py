"""User commands and queries: every change is a command the user aggregate decides, appended
through the one unit of work (`helix.services.unit`), whose inline step applies the `users`
projection in the same transaction (read-your-writes).

Password hashes are credentials, not events: they live in `user_passwords`, written with the
unit of work's connection in the transaction of the `user.created` or `user.password_changed`
event they go with, so an event and its credential commit or vanish together. That table is not
a projection: a rebuild of `users` never touches it. Neither are `api_key_usage` (last use) and
`helix_secrets`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime

import asyncpg
import attrs

from helix.auth import keys, passwords
from helix.auth.records import ApiKeyRecord, UserRecord
from helix.auth.sql import QUERIES
from helix.domain import user as domain
from helix.domain.user import Role, UserState, check_username
from helix.envelope import rfc3339
from helix.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError
from helix.eventstore import EventStore
from helix.services.caller import Caller
from helix.services.unit import Aggregate, Tx, Writer

USER: Aggregate[UserState, domain.Command] = Aggregate(
    name="user",
    stream_id=domain.stream_id,
    fold=domain.fold,
    initial=domain.INITIAL,
    decide=domain.decide,
)

__all__ = ["USER", "Accounts", "PresentedKey", "check_username"]


@attrs.frozen(kw_only=True)
class PresentedKey:
    """An API key that authenticated a request: its id, own scopes (None: all its user's role
    allows) and expiry."""

    key_id: uuid.UUID
    scopes: list[str] | None
    expires_at: datetime | None


# The users read model's unique constraint on the subject (NULLs, local users, never clash); a
# rebuild gives its clone this name back.
SUBJECT_UNIQUE = "users_external_subject_key"
# First requests of new external subjects that may lose a race for a username in a row.
PROVISION_ATTEMPTS = 5
# A key's `last_used_at` is written at most this often: by each process (it remembers when it
# last wrote it) and in the database (a write from another process that recently did is none).
KEY_TOUCH_S = 5.0
KEY_TOUCH_MEMORY = 10_000  # keys remembered per process before the memory starts over


def _taken(username: str) -> Conflict:
    return Conflict("that username is taken", username=username)


async def _user(tx: Tx, user_id: uuid.UUID) -> UserState:
    state = await tx.state(USER, user_id)
    if not state.exists:
        raise NotFound("no such user", user_id=str(user_id))
    return state


class Accounts:
    """User commands, each a unit of work of `writer` (one of its own when none is given), and
    the reads of the users read model. New passwords need `password_min_length` characters."""

    def __init__(
        self,
        store: EventStore,
        writer: Writer | None = None,
        *,
        password_min_length: int = passwords.MIN_LENGTH,
    ) -> None:
        self.store = store
        self.pool = store.pool
        self.writer = writer if writer is not None else Writer(store)
        self.password_min_length = password_min_length
        self._touched: dict[uuid.UUID, float] = {}  # key → when this process last wrote its use

    async def _hashed(self, password: str, field: str = "password") -> str:
        problem = passwords.password_problem(password, self.password_min_length)
        if problem:
            raise ValidationError(problem, field=field, min_length=self.password_min_length)
        return await asyncio.to_thread(passwords.hash_password, password)

    # -- writing ------------------------------------------------------------------------------

    async def create_user(
        self,
        username: str,
        role: Role,
        password: str | None,
        *,
        caller: Caller,
        external_subject: str | None = None,
    ) -> UserRecord:
        check_username(username)
        password_hash = None if password is None else await self._hashed(password)
        user_id = uuid.uuid4()

        async def work(tx: Tx) -> UserRecord:
            await self._create(tx, user_id, username, role, password_hash, external_subject)
            return await self.get(user_id, conn=tx.conn)

        try:
            return await self.writer.run(caller, work)
        except asyncpg.UniqueViolationError as violation:
            # The users read model's unique indexes: a concurrent creation of the same name, or
            # of a user for the same external subject.
            if violation.constraint_name == SUBJECT_UNIQUE:
                raise Conflict(
                    "that external subject has a user already", external_subject=external_subject
                ) from None
            raise _taken(username) from None

    async def _create(
        self,
        tx: Tx,
        user_id: uuid.UUID,
        username: str,
        role: Role,
        password_hash: str | None,
        external_subject: str | None = None,
    ) -> None:
        if await tx.conn.fetchval(QUERIES["username_taken"], username):
            raise _taken(username)
        command = domain.CreateUser(
            user_id=user_id,
            username=username,
            role=role,
            external_subject=external_subject,
            at=tx.at,
        )
        await tx.decide(USER, user_id, command)
        if password_hash is not None:
            await tx.conn.execute(QUERIES["set_password"], user_id, password_hash)

    async def update_user(
        self,
        user_id: uuid.UUID,
        *,
        role: Role | None = None,
        disabled: bool | None = None,
        caller: Caller,
    ) -> UserRecord:
        async def work(tx: Tx) -> UserRecord:
            await _user(tx, user_id)
            # Serializes every change that could leave no enabled admin: the count below is
            # read after the lock, so two admins cannot demote each other at once.
            await tx.conn.execute(QUERIES["admin_lock"])
            others = int(await tx.conn.fetchval(QUERIES["other_enabled_admins"], user_id))
            commands: list[domain.Command] = []
            if role is not None:
                commands.append(
                    domain.ChangeRole(to_role=role, other_enabled_admins=others, at=tx.at)
                )
            if disabled is True:
                commands.append(domain.DisableUser(other_enabled_admins=others, at=tx.at))
            elif disabled is False:
                commands.append(domain.EnableUser(at=tx.at))
            await tx.decide(USER, user_id, *commands)
            return await self.get(user_id, conn=tx.conn)

        return await self.writer.run(caller, work)

    async def set_password(
        self, user_id: uuid.UUID, password: str, *, current: str | None = None, caller: Caller
    ) -> None:
        """Set a user's password (`user.password_changed`, which also ends the JWTs issued
        before it). With `current`, only if it is the user's password now (403 if not)."""
        password_hash = await self._hashed(password, field="new")
        if current is not None:
            stored = await self.pool.fetchval(QUERIES["password_of"], user_id)
            ok = await asyncio.to_thread(
                passwords.verify_password, current, stored or passwords.DUMMY_HASH
            )
            if stored is None or not ok:
                raise Forbidden("the current password is not right")

        async def work(tx: Tx) -> None:
            await _user(tx, user_id)
            await tx.decide(USER, user_id, domain.SetPassword(at=tx.at))
            await tx.conn.execute(QUERIES["set_password"], user_id, password_hash)

        await self.writer.run(caller, work)

    async def create_key(
        self,
        user_id: uuid.UUID,
        name: str,
        *,
        scopes: Iterable[str] | None = None,
        expires_at: datetime | None = None,
        caller: Caller,
    ) -> tuple[ApiKeyRecord, str]:
        """A new key for the user: its record, and the key itself (shown once, never stored).
        `scopes` None: all the user's role allows; `expires_at` None: it never expires."""
        name = name.strip() or "api key"
        key_id = uuid.uuid4()
        limited = None if scopes is None else tuple(scopes)

        async def work(tx: Tx) -> tuple[ApiKeyRecord, str]:
            key = await self._create_key(tx, user_id, key_id, name, limited, expires_at)
            return await self._key(tx, key_id), key

        return await self.writer.run(caller, work)

    async def _create_key(
        self,
        tx: Tx,
        user_id: uuid.UUID,
        key_id: uuid.UUID,
        name: str,
        scopes: tuple[str, ...] | None = None,
        expires_at: datetime | None = None,
    ) -> str:
        await _user(tx, user_id)
        key = keys.generate_key()
        while await tx.conn.fetchval(QUERIES["prefix_taken"], keys.prefix_of(key)):
            key = keys.generate_key()
        command = domain.CreateApiKey(
            key_id=key_id,
            name=name,
            prefix=keys.prefix_of(key),
            key_sha256=keys.key_sha256(key),
            scopes=scopes,
            expires_at=expires_at,
            at=tx.at,
        )
        await tx.decide(USER, user_id, command)
        return key

    async def revoke_key(
        self, key_id: uuid.UUID, *, owner: uuid.UUID | None, caller: Caller
    ) -> ApiKeyRecord:
        """Revoke a key; with `owner`, only that user's key (another's is not found)."""
        found = await self.get_key(key_id)
        if found is None or (owner is not None and found.user_id != owner):
            raise NotFound("no such API key", key_id=str(key_id))

        async def work(tx: Tx) -> ApiKeyRecord:
            await tx.decide(USER, found.user_id, domain.RevokeApiKey(key_id=key_id, at=tx.at))
            return await self._key(tx, key_id)

        return await self.writer.run(caller, work)

    async def revoke_token(
        self, user_id: uuid.UUID, token_id: str, expires_at: datetime, *, caller: Caller
    ) -> None:
        """Log one JWT out (`user.token_revoked`): it is refused from now until its `exp`."""

        async def work(tx: Tx) -> None:
            command = domain.RevokeToken(token_id=token_id, expires_at=expires_at, at=tx.at)
            await tx.decide(USER, user_id, command)

        await self.writer.run(caller, work)

    async def revoke_tokens(self, user_id: uuid.UUID, *, caller: Caller) -> UserRecord:
        """End every JWT of the user issued until now (`user.tokens_revoked`)."""

        async def work(tx: Tx) -> UserRecord:
            await _user(tx, user_id)
            await tx.decide(USER, user_id, domain.RevokeTokens(at=tx.at))
            return await self.get(user_id, conn=tx.conn)

        return await self.writer.run(caller, work)

    async def _key(self, tx: Tx, key_id: uuid.UUID) -> ApiKeyRecord:
        record = await self.get_key(key_id, conn=tx.conn)
        assert record is not None
        return record

    async def login(self, username: str, password: str, *, caller: Caller) -> UserRecord:
        """The user whose password this is; records the attempt either way.

        The attempt is recorded apart from the request's idempotency key: a refused login must
        stay on the log although its answer (a 401) is not a response the key stores, and
        errors roll a key's transaction back."""
        caller = attrs.evolve(caller, idempotency=None)
        row = await self.pool.fetchrow(QUERIES["user_by_username"], username)
        user = None if row is None else UserRecord.from_row(row)
        stored = (
            None if user is None else await self.pool.fetchval(QUERIES["password_of"], user.user_id)
        )
        # Unknown users are checked against a dummy hash so both answers take as long.
        ok = await asyncio.to_thread(
            passwords.verify_password, password, stored or passwords.DUMMY_HASH
        )
        if user is None:
            await self.writer.run(caller, lambda tx: self._unknown_login(tx, username))
            raise Unauthorized("invalid username or password")
        failure = "no_password" if stored is None else None if ok else "wrong_password"
        if failure is None and not user.disabled:
            # The caller has proven who they are: the event names them.
            caller = attrs.evolve(caller, actor=f"user:{user.user_id}")

        async def work(tx: Tx) -> tuple[UserState, UserRecord]:
            command = domain.RecordLogin(method="password", failure=failure, at=tx.at)
            state = await tx.decide(USER, user.user_id, command)
            return state, await self.get(user.user_id, conn=tx.conn)

        state, record = await self.writer.run(caller, work)
        if failure is not None or state.disabled:
            raise Unauthorized("invalid username or password")
        return record

    async def _unknown_login(self, tx: Tx, username: str) -> None:
        failed = domain.LoginFailed(username=username[:200], reason="unknown_user", at=tx.at)
        await tx.record(domain.failures_stream_id(tx.at.date()), [failed])

    async def external_user(self, issuer: str, subject: str, *, caller: Caller) -> UserRecord:
        """The user an external issuer's subject maps to, provisioned (role user) on first use.

        Provisioning commits on its own, apart from any idempotency key of the request it
        happens in: it is not that request's command."""
        caller = attrs.evolve(caller, idempotency=None)
        external = f"{issuer}|{subject}"
        base = re.sub(r"[^A-Za-z0-9._@-]", "_", subject).lstrip("._@-")[:56] or "user"
        for attempt in range(1, PROVISION_ATTEMPTS + 1):
            row = await self.pool.fetchrow(QUERIES["user_by_external_subject"], external)
            if row is not None:
                return UserRecord.from_row(row)
            username = base
            while await self.pool.fetchval(QUERIES["username_taken"], username):
                username = f"{base}-{secrets.token_hex(3)}"
            try:
                return await self.create_user(
                    username, Role.USER, None, caller=caller, external_subject=external
                )
            except Conflict:
                # A concurrent request committed first (a unique violation waits for it): it
                # provisioned this subject, read back above, or took the name, so pick another.
                if attempt == PROVISION_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def ensure_first_admin(
        self, *, password: str | None = None, caller: Caller
    ) -> tuple[UserRecord, str] | None:
        """On a database with no users: an `admin` user (with `password`, if given) and a key
        for it (else None)."""
        user_id = uuid.uuid4()
        password_hash = None if password is None else await self._hashed(password)

        async def work(tx: Tx) -> tuple[UserRecord, str] | None:
            await tx.conn.execute(QUERIES["admin_lock"])
            if await tx.conn.fetchval(QUERIES["count_users"]):
                return None
            await self._create(tx, user_id, "admin", Role.ADMIN, password_hash)
            key = await self._create_key(tx, user_id, uuid.uuid4(), "first admin key")
            return await self.get(user_id, conn=tx.conn), key

        return await self.writer.run(caller, work)

    # -- reading ------------------------------------------------------------------------------

    async def get(
        self, user_id: uuid.UUID, *, conn: asyncpg.Connection | None = None
    ) -> UserRecord:
        """With `conn`, as a unit of work sees it (with an idempotency key, its transaction
        commits only after the response is stored, so the pool would not see it yet)."""
        row = await (conn or self.pool).fetchrow(QUERIES["user_by_id"], user_id)
        if row is None:
            raise NotFound("no such user", user_id=str(user_id))
        return UserRecord.from_row(row)

    async def by_username(self, username: str) -> UserRecord:
        row = await self.pool.fetchrow(QUERIES["user_by_username"], username)
        if row is None:
            raise NotFound("no such user", username=username)
        return UserRecord.from_row(row)

    async def list_users(
        self, *, role: Role | None, limit: int, offset: int
    ) -> tuple[list[UserRecord], int]:
        rows = await self.pool.fetch(
            QUERIES["list_users"], role.value if role else None, limit, offset
        )
        total = rows[0]["total"] if rows else await self.pool.fetchval(QUERIES["count_users"])
        return [UserRecord.from_row(r) for r in rows], int(total)

    async def get_key(
        self, key_id: uuid.UUID, *, conn: asyncpg.Connection | None = None
    ) -> ApiKeyRecord | None:
        row = await (conn or self.pool).fetchrow(QUERIES["key_by_id"], key_id)
        return None if row is None else ApiKeyRecord.from_row(row)

    async def list_keys(self, user_id: uuid.UUID, *, include_revoked: bool) -> list[ApiKeyRecord]:
        rows = await self.pool.fetch(QUERIES["keys_of_user"], user_id, include_revoked)
        return [ApiKeyRecord.from_row(r) for r in rows]

    async def authenticate_key(
        self, key: str, *, now: datetime, caller: Caller
    ) -> tuple[UserRecord, PresentedKey]:
        """The user a presented API key belongs to, and the key; 401 if it is not valid, or
        has expired by `now`. The first refusal of an expired key records `api_key.expired`
        (under `caller`, named as the key), once: the decider makes a repeat no event."""
        row = await self.pool.fetchrow(QUERIES["key_for_auth"], keys.prefix_of(key))
        if row is None or not keys.key_matches(key, row["key_sha256"]):
            raise Unauthorized("the API key is not valid")
        if row["revoked_at"] is not None:
            raise Unauthorized("the API key has been revoked")
        user = UserRecord.from_row(row)
        key_id: uuid.UUID = row["key_id"]
        expires_at: datetime | None = row["expires_at"]
        if expires_at is not None and expires_at <= now:
            if row["expired_at"] is None:
                await self._expired(user.user_id, key_id, now, caller)
            raise Unauthorized("the API key has expired", expires_at=rfc3339(expires_at))
        if user.disabled:
            raise Unauthorized("the user is disabled")
        await self._touch(key_id)
        return user, PresentedKey(key_id=key_id, scopes=row["scopes"], expires_at=expires_at)

    async def _touch(self, key_id: uuid.UUID) -> None:
        """Record the key's use, unless this process did less than `KEY_TOUCH_S` ago."""
        clock = time.monotonic()
        last = self._touched.get(key_id)
        if last is not None and clock - last < KEY_TOUCH_S:
            return
        if len(self._touched) >= KEY_TOUCH_MEMORY:
            self._touched.clear()
        self._touched[key_id] = clock
        await self.pool.execute(QUERIES["touch_key"], key_id, KEY_TOUCH_S)

    async def _expired(
        self, user_id: uuid.UUID, key_id: uuid.UUID, now: datetime, caller: Caller
    ) -> None:
        caller = attrs.evolve(caller, actor=f"key:{key_id}", idempotency=None)
        command = domain.ExpireApiKey(key_id=key_id, at=now)
        await self.writer.run(caller, lambda tx: tx.decide(USER, user_id, command))

    async def token_revoked(self, token_id: str) -> bool:
        """Whether a JWT (by its `jti`) has been logged out."""
        return bool(await self.pool.fetchval(QUERIES["token_revoked"], token_id))

    async def get_or_create_secret(
        self, name: str, generate: Callable[[], str] = lambda: secrets.token_urlsafe(48)
    ) -> str:
        """A random secret kept in the database, so every node agrees on it; the first node to
        ask stores the one `generate` makes."""
        await self.pool.execute(QUERIES["secret_insert"], name, generate())
        value: str = await self.pool.fetchval(QUERIES["secret_get"], name)
        return value
