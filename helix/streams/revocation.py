"""Closing live streams whose credentials stop holding: a revoked API key, a disabled user, a
changed role, a logged-out or revoked JWT (a password change revokes them too), an expired
stream token or API key.

A stream is authorized once, when it opens, so each one registers its principal here for as long
as it runs. The user and key events are events of the log like any other: the tailer hands
every batch it fans out to `observe`, which looks each event's stream up in a dict (user events
are on `user-<id>`) and closes the matching streams of this process, with no polling.

A stream authenticates (a database read) before it can register, so a revocation published in
between would pass unseen: `check` reads the credentials once more after registering. Anything
committed before that read is in it; anything later is sequenced, and so fanned out, after the
registration.

A stream token holds until it expires, so a watch of a principal that has `expires_at` also
ends its stream then, as a revocation would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import asyncpg
import attrs

from helix.auth.principal import Principal
from helix.domain import user
from helix.errors import Forbidden, HelixError, Unauthorized
from helix.eventstore import RecordedEvent
from helix.streams.frames import Frame
from helix.streams.sql import QUERIES

log = logging.getLogger(__name__)

DISABLED = "user.disabled"
ROLE_CHANGED = "user.role_changed"
KEY_REVOKED = "api_key.revoked"
TOKEN_REVOKED = "user.token_revoked"
TOKENS_REVOKED = "user.tokens_revoked"
PASSWORD_CHANGED = "user.password_changed"
WATCHED_TYPES = frozenset(
    {DISABLED, ROLE_CHANGED, KEY_REVOKED, TOKEN_REVOKED, TOKENS_REVOKED, PASSWORD_CHANGED}
)


@attrs.frozen
class Revoked:
    """Why a stream's credentials no longer hold. `forbidden`: they still identify the caller,
    but no longer grant what the stream was opened with (a changed role)."""

    reason: str
    forbidden: bool = False

    def error(self) -> HelixError:
        """The refusal a client is given: 401, or 403 for credentials that no longer grant."""
        return (Forbidden if self.forbidden else Unauthorized)(self.reason)


KEY_GONE = Revoked("the API key has been revoked")
USER_DISABLED = Revoked("the user is disabled")
USER_GONE = Revoked("the user no longer exists")
ROLE_CHANGED_AWAY = Revoked("the user's role has changed", forbidden=True)
UNREADABLE = Revoked("the user's credentials have changed")
TOKEN_EXPIRED = Revoked("the stream token has expired")
KEY_EXPIRED = Revoked("the API key has expired")
TOKEN_GONE = Revoked("the token has been revoked")


class Watch:
    """One stream's registration; `cancel` (or leaving the `with`) when the stream ends."""

    __slots__ = ("_expiry", "_watcher", "on_revoked", "principal")

    def __init__(
        self, watcher: Revocations, principal: Principal, on_revoked: Callable[[Revoked], None]
    ) -> None:
        self._watcher = watcher
        self.principal = principal
        self.on_revoked = on_revoked
        self._expiry: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self._watcher.forget(self)
        if self._expiry is not None:
            self._expiry.cancel()

    def expire_at(self, when: datetime) -> None:
        """Revoke the stream at `when` (on this event loop), unless it is cancelled first."""
        delay = max(0.0, (when - datetime.now(UTC)).total_seconds())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self.cancel()
        self.on_revoked(TOKEN_EXPIRED if self.principal.stream_token else KEY_EXPIRED)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *_: object) -> None:
        self.cancel()


class Revocations:
    def __init__(self, decode: Callable[[RecordedEvent], object]) -> None:
        self._decode = decode
        self._by_stream: dict[str, set[Watch]] = {}

    def __len__(self) -> int:
        return sum(len(watches) for watches in self._by_stream.values())

    def watch(self, principal: Principal, on_revoked: Callable[[Revoked], None]) -> Watch:
        """Call `on_revoked` (once, on the event loop, from the tailer's fan-out: it must not
        block) when the principal's credentials stop holding."""
        found = Watch(self, principal, on_revoked)
        self._by_stream.setdefault(user.stream_id(principal.user_id), set()).add(found)
        return found

    def forget(self, found: Watch) -> None:
        stream_id = user.stream_id(found.principal.user_id)
        watches = self._by_stream.get(stream_id)
        if watches is not None:
            watches.discard(found)
            if not watches:
                del self._by_stream[stream_id]

    def observe(self, frames: Iterable[Frame]) -> None:
        """The tailer's hook, after each fan-out: never raises, so the tailer never stalls."""
        if not self._by_stream:
            return
        for frame in frames:
            watches = self._by_stream.get(frame.stream_id)
            if not watches or frame.type not in WATCHED_TYPES:
                continue
            try:
                decoded = self._decode(frame.event)
            except Exception:
                # Fail closed: a stream is easier to reopen than a leak to take back.
                log.exception("cannot decode %s at %s", frame.type, frame.position)
                decoded = None
            for found in list(watches):
                revoked = UNREADABLE if decoded is None else revoked_by(decoded, found.principal)
                if revoked is not None:
                    found.cancel()
                    try:
                        found.on_revoked(revoked)
                    except Exception:
                        log.exception("closing a stream of user %s failed", found.principal.user_id)


def revoked_by(event: object, principal: Principal) -> Revoked | None:
    """Whether one of the principal's own user events ends their streams."""
    match event:
        case user.UserDisabled():
            return USER_DISABLED
        case user.UserRoleChanged() if event.to_role is not principal.role:
            return ROLE_CHANGED_AWAY
        case user.ApiKeyRevoked() if event.key_id == principal.key_id:
            return KEY_GONE
        case user.TokenRevoked() if event.token_id == principal.token_id:
            return TOKEN_GONE
        case user.TokensRevoked() | user.UserPasswordChanged() if principal.token_ended_by(
            event.at
        ):
            return TOKEN_GONE
    return None


async def check(pool: asyncpg.Pool, principal: Principal) -> Revoked | None:
    """Whether the principal's credentials still hold now (one read of the read models)."""
    row = await pool.fetchrow(
        QUERIES["credentials"], principal.user_id, principal.key_id, principal.token_id
    )
    if row is None:
        return USER_GONE
    if row["disabled"]:
        return USER_DISABLED
    if row["role"] != principal.role.value:
        return ROLE_CHANGED_AWAY
    if principal.key_id is not None and (not row["key_found"] or row["key_revoked"]):
        return KEY_GONE
    if row["token_revoked"] or principal.token_ended_by(row["tokens_valid_after"]):
        return TOKEN_GONE
    return None
