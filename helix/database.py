"""Finding the database and opening connections to it.

Every command finds the database the same way: `HELIX_DATABASE_URL` if set, else the embedded
server in `HELIX_DATA_DIR` (started, or joined if it already runs).
"""

from __future__ import annotations

import atexit
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from asyncpg.connection import LoggedQuery
from sqlalchemy.engine import make_url

from helix.config import Settings
from helix.embedded import EmbeddedPostgres

Connection = asyncpg.Connection
Pool = asyncpg.Pool

# Seconds a caller should wait before trying again after a 503: a database restart or failover
# takes a few.
UNAVAILABLE_RETRY_AFTER = 5

# What a database that is down, restarting, failing over or out of connections raises: refused
# or reset sockets and timeouts (OSError, TimeoutError included), a connection closed under a
# query (asyncpg's InterfaceError and class 08 errors), and the server's own refusals. Also
# what a server not in a state to serve the statement yet raises: class 55 (55000
# object_not_in_prerequisite_state, e.g. "recovery is in progress" while a standby is promoted;
# 55P03 a lock not available; 55006 an object in use) and 25006 (a read-only transaction: the
# connection reached a standby during a failover). Each passes; retrying is the answer.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ObjectNotInPrerequisiteStateError,
    asyncpg.ReadOnlySQLTransactionError,
)
# InterfaceErrors that are the client's own mistakes, not a lost server: a query argument that
# does not encode (asyncpg's is a ValueError), a misconfigured connection. They stay 500s.
NOT_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ValueError,
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
    asyncpg.exceptions.ProtocolViolationError,
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, says the database cannot be reached."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DATABASE_UNAVAILABLE) and not isinstance(current, NOT_UNAVAILABLE):
            return True
        current = current.__cause__ or current.__context__
    return False


def with_database(url: str, database: str) -> str:
    """The URL of another database on the same server: host or socket directory, port, user and
    options are kept, whichever form the URL has."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def database_name(url: str) -> str:
    return make_url(url).database or ""


def sqlalchemy_url(url: str) -> str:
    """The URL with SQLAlchemy's asyncpg driver named, for alembic and schema comparisons."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def server_settings(settings: Settings, application_name: str) -> dict[str, str]:
    return {
        "application_name": application_name,
        "idle_in_transaction_session_timeout": str(settings.idle_in_transaction_timeout_ms),
        "timezone": "UTC",
    }


# One encoder and one decoder for every value: json.dumps with options builds a new encoder
# per call, and json.loads checks its arguments before calling the same decoder.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.JSONDecoder().decode


async def init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_dumps, decoder=_loads, schema="pg_catalog", format="text"
        )


SYNC = "SELECT 1"
# The Connection methods that run a statement; each records whether it may have left the
# exchange with the server half done.
_STATEMENTS = ("execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany", "prepare")


class PoolConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection that knows whether its last statement may have left the server in
    the middle of an exchange.

    asyncpg prepares a statement (Parse, Describe) before it binds it, and ends the exchange
    with a Sync only at the bind. A statement interrupted in between (a cancellation, or an
    argument its codec refuses) or prepared and never run leaves the server in an implicit
    transaction that holds the statement's table locks and refuses a following
    `BEGIN ISOLATION LEVEL ...`, while asyncpg, which has had no ReadyForQuery since, believes
    the connection idle. A statement that returns normally ended its exchange."""

    unsynced = False


def _tracked(name: str) -> Callable[..., Awaitable[Any]]:
    method = getattr(asyncpg.Connection, name)

    @functools.wraps(method)
    async def run(self: PoolConnection, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await method(self, *args, **kwargs)
        except BaseException:
            self.unsynced = True
            raise
        self.unsynced = name == "prepare"
        return result

    return run


for _name in _STATEMENTS:
    setattr(PoolConnection, _name, _tracked(_name))


async def _end_the_exchange(conn: PoolConnection) -> None:
    """On release: one simple query, which commits that implicit transaction, after a
    statement that may have left one; nothing (no round trip) otherwise. An open explicit
    transaction asyncpg knows of it rolls back itself, before this. Pool connections never
    LISTEN, hold session advisory locks, keep cursors or SET session state (those live on
    dedicated connections), so the rest of asyncpg's default reset is not needed."""
    if conn.unsynced:
        await conn.execute(SYNC)


QueryLogger = Callable[[LoggedQuery], object]


def _initializer(
    query_logger: QueryLogger | None,
) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """Connection set-up, with `query_logger` told of every statement (a benchmark counts
    them)."""

    async def init(conn: asyncpg.Connection) -> None:
        await init_connection(conn)
        if query_logger is not None:
            conn.add_query_logger(query_logger)

    return init


async def create_pool(
    url: str,
    settings: Settings,
    *,
    application_name: str = "helix",
    max_size: int | None = None,
    query_logger: QueryLogger | None = None,
) -> asyncpg.Pool:
    size = max_size or settings.pool_size
    pool = await asyncpg.create_pool(
        url,
        min_size=min(2, size),
        max_size=size,
        init=_initializer(query_logger),
        connection_class=PoolConnection,
        reset=_end_the_exchange,
        # Idle connections are not closed on a timer: the timer costs a call_later per release.
        max_inactive_connection_lifetime=0,
        server_settings=server_settings(settings, application_name),
    )
    assert pool is not None
    return pool


async def connect(
    url: str,
    settings: Settings,
    *,
    application_name: str,
    query_logger: QueryLogger | None = None,
) -> asyncpg.Connection:
    conn = await asyncpg.connect(url, server_settings=server_settings(settings, application_name))
    await _initializer(query_logger)(conn)
    return conn


class Database:
    """The database a process uses: the configured URL, or the embedded server it joins."""

    def __init__(self, settings: Settings, *, durable: bool = True) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self._durable = durable

    def start(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        self.embedded = EmbeddedPostgres(self.settings.data_dir, durable=self._durable)
        return self.embedded.start()

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def resolve_url_for_cli() -> str:
    """For tools that only need a URL (alembic's own command line): join or start the server."""
    db = Database(Settings.from_env())
    url = db.start()
    atexit.register(db.stop)
    return url
