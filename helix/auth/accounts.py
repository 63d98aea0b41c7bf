"""User commands and queries: every change is an event on the user's stream, and the `users`
projection updates the read model in the same transaction (read-your-writes)."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from helix.auth import keys, passwords
from helix.auth import sql as q
from helix.auth.records import ApiKeyRecord, UserRecord
from helix.domain import user as domain
from helix.domain.user import Role
from helix.errors import Conflict, NotFound, Unauthorized, ValidationError
from helix.eventstore import ANY_VERSION, EventStore, RecordedEvent
from projections.users import LIVE_TABLES, PROJECTION

USERNAME = re.compile(domain.USERNAME_PATTERN)
MAX_KEY_NAME = domain.MAX_KEY_NAME_CHARS
Metadata = Mapping[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username):
        raise ValidationError(
            "a username is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter "
            "or digit",
            field="username",
        )
    return username


class Accounts:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.pool = store.pool

    # -- writing ------------------------------------------------------------------------------

    async def _append(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        expected: int,
        events: Sequence[object],
        metadata: Metadata,
    ) -> None:
        encoded = [self.store.registry.encode(e) for e in events]
        appended = await self.store.append(
            stream_id, expected, encoded, metadata=metadata, conn=conn
        )
        for offset, (event, event_id) in enumerate(zip(encoded, appended.event_ids, strict=True)):
            recorded = RecordedEvent(
                event_id=event_id,
                stream_id=stream_id,
                stream_type=stream_id.split("-", 1)[0],
                version=appended.first_version + offset,
                position=None,
                project_id=None,
                type=event.type,
                schema_version=event.schema_version,
                data=event.data,
                metadata=dict(metadata),
                recorded_at=appended.recorded_at,
            )
            await PROJECTION.apply(conn, recorded, LIVE_TABLES)

    async def _locked(self, conn: asyncpg.Connection, user_id: uuid.UUID) -> UserRecord:
        row = await conn.fetchrow(q.LOCK_USER, user_id)
        if row is None:
            raise NotFound("no such user", user_id=str(user_id))
        return UserRecord.from_row(row)

    async def create_user(
        self,
        username: str,
        role: Role,
        password: str | None,
        *,
        metadata: Metadata,
        external_subject: str | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> UserRecord:
        check_username(username)
        password_hash = None
        if password is not None:
            problem = passwords.password_problem(password)
            if problem:
                raise ValidationError(problem, field="password")
            password_hash = await asyncio.to_thread(passwords.hash_password, password)
        user_id = uuid.uuid4()
        event = domain.UserCreated(
            user_id=user_id,
            username=username,
            role=role,
            external_subject=external_subject,
            at=_now(),
        )
        if conn is not None:
            await self._create(conn, event, password_hash, metadata)
        else:
            async with self.store.transaction() as own:
                await self._create(own, event, password_hash, metadata)
        return await self.get(user_id)

    async def _create(
        self,
        conn: asyncpg.Connection,
        event: domain.UserCreated,
        password_hash: str | None,
        metadata: Metadata,
    ) -> None:
        if await conn.fetchval(q.USERNAME_TAKEN, event.username):
            raise Conflict("that username is taken", username=event.username)
        try:
            async with conn.transaction():
                await self._append(conn, domain.stream_id(event.user_id), 0, [event], metadata)
        except asyncpg.UniqueViolationError:
            raise Conflict("that username is taken", username=event.username) from None
        if password_hash is not None:
            await conn.execute(q.SET_PASSWORD, event.user_id, password_hash)

    async def update_user(
        self,
        user_id: uuid.UUID,
        *,
        role: Role | None = None,
        disabled: bool | None = None,
        metadata: Metadata,
    ) -> UserRecord:
        async with self.store.transaction() as conn:
            await conn.execute(q.ADMIN_LOCK)
            user = await self._locked(conn, user_id)
            now = _now()
            events: list[object] = []
            if role is not None and role != user.role:
                events.append(
                    domain.UserRoleChanged(
                        user_id=user_id, from_role=user.role, to_role=role, at=now
                    )
                )
            if disabled is True and not user.disabled:
                events.append(domain.UserDisabled(user_id=user_id, at=now))
            elif disabled is False and user.disabled:
                events.append(domain.UserEnabled(user_id=user_id, at=now))
            leaves_admin = (
                user.role is Role.ADMIN
                and not user.disabled
                and ((role is not None and role is not Role.ADMIN) or disabled is True)
            )
            if leaves_admin and not await conn.fetchval(q.OTHER_ENABLED_ADMINS, user_id):
                raise Conflict("this is the last enabled admin", user_id=str(user_id))
            if events:
                await self._append(conn, domain.stream_id(user_id), user.version, events, metadata)
        return await self.get(user_id)

    async def set_password(self, user_id: uuid.UUID, password: str, *, metadata: Metadata) -> None:
        problem = passwords.password_problem(password)
        if problem:
            raise ValidationError(problem, field="password")
        password_hash = await asyncio.to_thread(passwords.hash_password, password)
        async with self.store.transaction() as conn:
            user = await self._locked(conn, user_id)
            await conn.execute(q.SET_PASSWORD, user_id, password_hash)
            await self._append(
                conn,
                domain.stream_id(user_id),
                user.version,
                [domain.UserPasswordChanged(user_id=user_id, at=_now())],
                metadata,
            )

    async def create_key(
        self,
        user_id: uuid.UUID,
        name: str,
        *,
        metadata: Metadata,
        conn: asyncpg.Connection | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """A new key for the user: its record, and the key itself (shown once, never stored)."""
        name = name.strip() or "api key"
        if len(name) > MAX_KEY_NAME:
            raise ValidationError(f"a key name has at most {MAX_KEY_NAME} characters", field="name")
        key_id = uuid.uuid4()
        if conn is not None:
            key = await self._create_key(conn, user_id, key_id, name, metadata)
        else:
            async with self.store.transaction() as own:
                key = await self._create_key(own, user_id, key_id, name, metadata)
        record = await self.get_key(key_id)
        assert record is not None
        return record, key

    async def _create_key(
        self,
        conn: asyncpg.Connection,
        user_id: uuid.UUID,
        key_id: uuid.UUID,
        name: str,
        metadata: Metadata,
    ) -> str:
        user = await self._locked(conn, user_id)
        if user.disabled:
            raise Conflict("the user is disabled", user_id=str(user_id))
        key = keys.generate_key()
        while await conn.fetchval(q.PREFIX_TAKEN, keys.prefix_of(key)):
            key = keys.generate_key()
        event = domain.ApiKeyCreated(
            user_id=user_id,
            key_id=key_id,
            name=name,
            prefix=keys.prefix_of(key),
            key_sha256=keys.key_sha256(key),
            at=_now(),
        )
        await self._append(conn, domain.stream_id(user_id), user.version, [event], metadata)
        return key

    async def revoke_key(
        self, key_id: uuid.UUID, *, owner: uuid.UUID | None, metadata: Metadata
    ) -> ApiKeyRecord:
        """Revoke a key; with `owner`, only that user's key (another's is not found)."""
        found = await self.get_key(key_id)
        if found is None or (owner is not None and found.user_id != owner):
            raise NotFound("no such API key", key_id=str(key_id))
        async with self.store.transaction() as conn:
            user = await self._locked(conn, found.user_id)
            current = await self.get_key(key_id, conn=conn)
            if current is not None and current.revoked_at is None:
                event = domain.ApiKeyRevoked(user_id=found.user_id, key_id=key_id, at=_now())
                await self._append(
                    conn, domain.stream_id(found.user_id), user.version, [event], metadata
                )
        record = await self.get_key(key_id)
        assert record is not None
        return record

    async def login(self, username: str, password: str, *, metadata: Metadata) -> UserRecord:
        """The user whose password this is; records the attempt either way."""
        row = await self.pool.fetchrow(q.USER_BY_USERNAME, username)
        user = None if row is None else UserRecord.from_row(row)
        stored = None if user is None else await self.pool.fetchval(q.PASSWORD_OF, user.user_id)
        # Unknown users are checked against a dummy hash so both answers take as long.
        ok = await asyncio.to_thread(
            passwords.verify_password, password, stored or passwords.DUMMY_HASH
        )
        now = _now()
        if user is None:
            failed = domain.LoginFailed(username=username[:200], reason="unknown_user", at=now)
            await self.store.append(
                domain.failures_stream_id(now.date()), ANY_VERSION, [failed], metadata=metadata
            )
            raise Unauthorized("invalid username or password")
        reason = None
        if stored is None:
            reason = "no_password"
        elif not ok:
            reason = "wrong_password"
        elif user.disabled:
            reason = "disabled"
        event: object = (
            domain.LoginSucceeded(
                user_id=user.user_id, username=user.username, method="password", at=now
            )
            if reason is None
            else domain.LoginFailed(
                username=user.username, user_id=user.user_id, reason=reason, at=now
            )
        )
        if reason is None:  # the caller has proven who they are: the event names them
            metadata = {**metadata, "actor": f"user:{user.user_id}"}
        async with self.store.transaction() as conn:
            locked = await self._locked(conn, user.user_id)
            await self._append(
                conn, domain.stream_id(user.user_id), locked.version, [event], metadata
            )
        if reason is not None:
            raise Unauthorized("invalid username or password")
        return await self.get(user.user_id)

    async def external_user(self, issuer: str, subject: str, *, metadata: Metadata) -> UserRecord:
        """The user an external issuer's subject maps to, provisioned (role user) on first use."""
        external = f"{issuer}|{subject}"
        row = await self.pool.fetchrow(q.USER_BY_EXTERNAL_SUBJECT, external)
        if row is not None:
            return UserRecord.from_row(row)
        base = re.sub(r"[^A-Za-z0-9._@-]", "_", subject).lstrip("._@-")[:56] or "user"
        username = base
        while await self.pool.fetchval(q.USERNAME_TAKEN, username):
            username = f"{base}-{secrets.token_hex(3)}"
        try:
            return await self.create_user(
                username, Role.USER, None, metadata=metadata, external_subject=external
            )
        except Conflict:
            # Another request provisioned the same subject first.
            row = await self.pool.fetchrow(q.USER_BY_EXTERNAL_SUBJECT, external)
            if row is None:
                raise
            return UserRecord.from_row(row)

    async def ensure_first_admin(self, *, metadata: Metadata) -> tuple[UserRecord, str] | None:
        """On a database with no users: an `admin` user and a key for it (else None)."""
        async with self.store.transaction() as conn:
            await conn.execute(q.ADMIN_LOCK)
            if await conn.fetchval(q.COUNT_USERS):
                return None
            user_id = uuid.uuid4()
            event = domain.UserCreated(
                user_id=user_id, username="admin", role=Role.ADMIN, at=_now()
            )
            await self._create(conn, event, None, metadata)
            key_id = uuid.uuid4()
            key = await self._create_key(conn, user_id, key_id, "first admin key", metadata)
        return await self.get(user_id), key

    # -- reading ------------------------------------------------------------------------------

    async def get(self, user_id: uuid.UUID) -> UserRecord:
        row = await self.pool.fetchrow(q.USER_BY_ID, user_id)
        if row is None:
            raise NotFound("no such user", user_id=str(user_id))
        return UserRecord.from_row(row)

    async def by_username(self, username: str) -> UserRecord:
        row = await self.pool.fetchrow(q.USER_BY_USERNAME, username)
        if row is None:
            raise NotFound("no such user", username=username)
        return UserRecord.from_row(row)

    async def list_users(
        self, *, role: Role | None, limit: int, offset: int
    ) -> tuple[list[UserRecord], int]:
        rows = await self.pool.fetch(q.LIST_USERS, role.value if role else None, limit, offset)
        total = rows[0]["total"] if rows else await self.pool.fetchval(q.COUNT_USERS)
        return [UserRecord.from_row(r) for r in rows], int(total)

    async def get_key(
        self, key_id: uuid.UUID, *, conn: asyncpg.Connection | None = None
    ) -> ApiKeyRecord | None:
        row = await (conn or self.pool).fetchrow(q.KEY_BY_ID, key_id)
        return None if row is None else ApiKeyRecord.from_row(row)

    async def list_keys(self, user_id: uuid.UUID, *, include_revoked: bool) -> list[ApiKeyRecord]:
        rows = await self.pool.fetch(q.KEYS_OF_USER, user_id, include_revoked)
        return [ApiKeyRecord.from_row(r) for r in rows]

    async def authenticate_key(self, key: str) -> tuple[UserRecord, uuid.UUID]:
        """The user a presented API key belongs to, and the key's id; 401 if it is not valid."""
        row = await self.pool.fetchrow(q.KEY_FOR_AUTH, keys.prefix_of(key))
        if row is None or not keys.key_matches(key, row["key_sha256"]):
            raise Unauthorized("the API key is not valid")
        if row["revoked_at"] is not None:
            raise Unauthorized("the API key has been revoked")
        user = UserRecord.from_row(row)
        if user.disabled:
            raise Unauthorized("the user is disabled")
        await self.pool.execute(q.TOUCH_KEY, row["key_id"])
        return user, row["key_id"]

    async def get_or_create_secret(
        self, name: str, generate: Callable[[], str] = lambda: secrets.token_urlsafe(48)
    ) -> str:
        """A random secret kept in the database, so every node agrees on it; the first node to
        ask stores the one `generate` makes."""
        await self.pool.execute(q.SECRET_INSERT, name, generate())
        value: str = await self.pool.fetchval(q.SECRET_GET, name)
        return value
