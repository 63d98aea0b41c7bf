"""The user aggregate as a decider: `decide(state, command) -> events`, `evolve(state, event)`.

A user is created once, then changes role, is disabled and enabled again, sets passwords, gets
and revokes API keys, and has its sign-in attempts recorded. API keys are entities of their
user (on the user's stream): a key's invariants are its user's, so a disabled user gets no new
key. Repeating a change that is already true (the same role, disabling a disabled user,
revoking a revoked key) returns no events.

Rules that span users come in with the command: a role change or a disable that would leave no
enabled admin is refused when the command says there is no other one (the handler counts them
under a lock); username uniqueness is the users read model's unique index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn, assert_never
from uuid import UUID

import attrs

from helix.domain.user.commands import (
    ChangeRole,
    Command,
    CreateApiKey,
    CreateUser,
    DisableUser,
    EnableUser,
    ExpireApiKey,
    RecordLogin,
    RevokeApiKey,
    RevokeToken,
    RevokeTokens,
    SetPassword,
)
from helix.domain.user.events import (
    ApiKeyCreated,
    ApiKeyExpired,
    ApiKeyRevoked,
    Event,
    LoginFailed,
    LoginSucceeded,
    Role,
    TokenRevoked,
    TokensRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserPasswordChanged,
    UserRoleChanged,
)
from helix.domain.user.scopes import ROLE_SCOPES, SCOPES
from helix.errors import Forbidden, InvalidTransition, NotFound, ValidationError

# A username: 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit.
USERNAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
MAX_KEY_NAME_CHARS = 200
_USERNAME = re.compile(USERNAME_PATTERN)


@attrs.frozen(kw_only=True)
class ApiKeyState:
    prefix: str
    revoked: bool = False
    scopes: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    expired: bool = False  # `api_key.expired` is recorded


@attrs.frozen(kw_only=True)
class UserState:
    """A user folded from its stream; `exists` is False until `user.created`.

    `has_password` records a `user.password_changed`; a password given at creation is only in
    the credential table (the `user.created` of every log, old and new, says nothing of it).
    """

    exists: bool = False
    user_id: UUID | None = None
    username: str = ""
    role: Role = Role.USER
    disabled: bool = False
    external_subject: str | None = None
    has_password: bool = False
    # JWTs issued before this are refused (a password change, or all tokens revoked).
    tokens_valid_after: datetime | None = None
    keys: Mapping[UUID, ApiKeyState] = attrs.field(factory=dict)

    @property
    def enabled_admin(self) -> bool:
        return self.exists and self.role is Role.ADMIN and not self.disabled


INITIAL = UserState()


def fold(events: Iterable[Event], state: UserState = INITIAL) -> UserState:
    for event in events:
        state = evolve(state, event)
    return state


def check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise ValidationError(
            "a username is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter "
            "or digit",
            field="username",
        )
    return username


# --- decide ---------------------------------------------------------------------------------


def _current(state: UserState) -> dict[str, Any]:
    return {"role": state.role.value, "disabled": state.disabled}


def _refuse(state: UserState, message: str, reason: str, **details: Any) -> NoReturn:
    raise InvalidTransition(message, current=_current(state), reason=reason, **details)


def _at(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError("at must be a timezone-aware datetime", field="at")
    return at.astimezone(UTC)


def decide(state: UserState, command: Command) -> list[Event]:
    """The events that `command` causes, or InvalidTransition / NotFound / ValidationError."""
    if isinstance(command, CreateUser):
        return _create(state, command)
    if not state.exists or state.user_id is None:
        raise NotFound("no such user")
    user_id = state.user_id
    at = _at(command.at)
    match command:
        case ChangeRole():
            if command.to_role is state.role:
                return []
            if command.to_role is not Role.ADMIN:
                _keep_an_admin(state, command.other_enabled_admins)
            return [
                UserRoleChanged(
                    user_id=user_id, from_role=state.role, to_role=command.to_role, at=at
                )
            ]
        case DisableUser():
            if state.disabled:
                return []
            _keep_an_admin(state, command.other_enabled_admins)
            return [UserDisabled(user_id=user_id, at=at)]
        case EnableUser():
            return [UserEnabled(user_id=user_id, at=at)] if state.disabled else []
        case SetPassword():
            return [UserPasswordChanged(user_id=user_id, at=at)]
        case CreateApiKey():
            return _create_key(state, user_id, command, at)
        case RevokeApiKey():
            key = state.keys.get(command.key_id)
            if key is None:
                raise NotFound("no such API key", key_id=str(command.key_id))
            return (
                []
                if key.revoked
                else [ApiKeyRevoked(user_id=user_id, key_id=command.key_id, at=at)]
            )
        case ExpireApiKey():
            return _expire_key(state, user_id, command.key_id, at)
        case RevokeToken():
            expires_at = _at(command.expires_at)
            return [
                TokenRevoked(
                    user_id=user_id, token_id=command.token_id, expires_at=expires_at, at=at
                )
            ]
        case RevokeTokens():
            return [TokensRevoked(user_id=user_id, at=at)]
        case RecordLogin():
            return [_login(state, user_id, command, at)]
        case _:
            assert_never(command)


def _create(state: UserState, command: CreateUser) -> list[Event]:
    if state.exists:
        _refuse(state, "the user exists already", "exists", user_id=str(command.user_id))
    check_username(command.username)
    return [
        UserCreated(
            user_id=command.user_id,
            username=command.username,
            role=command.role,
            external_subject=command.external_subject,
            at=_at(command.at),
        )
    ]


def _keep_an_admin(state: UserState, other_enabled_admins: int) -> None:
    if state.enabled_admin and other_enabled_admins <= 0:
        _refuse(state, "this is the last enabled admin", "last_admin", user_id=str(state.user_id))


def _create_key(
    state: UserState, user_id: UUID, command: CreateApiKey, at: datetime
) -> list[Event]:
    if len(command.name) > MAX_KEY_NAME_CHARS:
        raise ValidationError(
            f"a key name has at most {MAX_KEY_NAME_CHARS} characters", field="name"
        )
    if state.disabled:
        _refuse(state, "the user is disabled", "disabled", user_id=str(user_id))
    if command.key_id in state.keys:
        _refuse(state, "the API key exists already", "exists", key_id=str(command.key_id))
    scopes = None if command.scopes is None else _scopes(state.role, command.scopes)
    expires_at = None if command.expires_at is None else _at(command.expires_at)
    if expires_at is not None and expires_at <= at:
        raise ValidationError("'expires_at' must be in the future", field="expires_at")
    return [
        ApiKeyCreated(
            user_id=user_id,
            key_id=command.key_id,
            name=command.name,
            prefix=command.prefix,
            key_sha256=command.key_sha256,
            scopes=scopes,
            expires_at=expires_at,
            at=at,
        )
    ]


def _scopes(role: Role, requested: tuple[str, ...]) -> tuple[str, ...]:
    """The requested scopes, sorted and without repeats; 422 for one that is unknown or that
    the role does not grant (a key never exceeds its user's role)."""
    unknown = sorted(set(requested) - set(SCOPES))
    if unknown:
        raise ValidationError(
            f"unknown scopes: {', '.join(unknown)}", field="scopes", allowed_values=sorted(SCOPES)
        )
    beyond = sorted(set(requested) - ROLE_SCOPES[role])
    if beyond:
        raise Forbidden(
            f"the role {role.value} does not grant: {', '.join(beyond)}",
            field="scopes",
            allowed_values=sorted(ROLE_SCOPES[role]),
        )
    return tuple(sorted(set(requested)))


def _expire_key(state: UserState, user_id: UUID, key_id: UUID, at: datetime) -> list[Event]:
    key = state.keys.get(key_id)
    if key is None:
        raise NotFound("no such API key", key_id=str(key_id))
    if key.expired or key.revoked:
        return []
    if key.expires_at is None or key.expires_at > at:
        _refuse(state, "the API key has not expired", "not_expired", key_id=str(key_id))
    return [ApiKeyExpired(user_id=user_id, key_id=key_id, at=at)]


def _login(state: UserState, user_id: UUID, command: RecordLogin, at: datetime) -> Event:
    reason = command.failure or ("disabled" if state.disabled else None)
    if reason is None:
        return LoginSucceeded(
            user_id=user_id, username=state.username, method=command.method, at=at
        )
    return LoginFailed(username=state.username, user_id=user_id, reason=reason, at=at)


# --- evolve ---------------------------------------------------------------------------------


def evolve(state: UserState, event: Event) -> UserState:
    match event:
        case UserCreated():
            return UserState(
                exists=True,
                user_id=event.user_id,
                username=event.username,
                role=event.role,
                external_subject=event.external_subject,
            )
        case UserRoleChanged():
            return attrs.evolve(state, role=event.to_role)
        case UserDisabled():
            return attrs.evolve(state, disabled=True)
        case UserEnabled():
            return attrs.evolve(state, disabled=False)
        case UserPasswordChanged():
            return attrs.evolve(state, has_password=True, tokens_valid_after=event.at)
        case TokensRevoked():
            return attrs.evolve(state, tokens_valid_after=event.at)
        case TokenRevoked():
            return state
        case ApiKeyCreated():
            created = ApiKeyState(
                prefix=event.prefix, scopes=event.scopes, expires_at=event.expires_at
            )
            return attrs.evolve(state, keys={**state.keys, event.key_id: created})
        case ApiKeyExpired():
            key = state.keys.get(event.key_id)
            if key is None:
                return state
            keys = {**state.keys, event.key_id: attrs.evolve(key, expired=True)}
            return attrs.evolve(state, keys=keys)
        case ApiKeyRevoked():
            key = state.keys.get(event.key_id)
            if key is None:
                return state
            keys = {**state.keys, event.key_id: attrs.evolve(key, revoked=True)}
            return attrs.evolve(state, keys=keys)
        case LoginSucceeded() | LoginFailed():
            return state
        case _:
            assert_never(event)
