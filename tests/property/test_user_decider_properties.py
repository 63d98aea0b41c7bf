"""Random command sequences on several users never break the user aggregate's invariants.

Each step picks a user and a command, with the count of other enabled admins taken from the
states themselves (as the service counts them under its lock). An accepted command's events
are folded in; a refused one must be a 409 carrying the current state, a 404 or a 422, and
change nothing. Whatever happens, some enabled admin remains.

A second machine drives one user's keys and tokens with a moving clock: a key's scopes never
exceed its user's role when it is created, a key is recorded expired once at most and never
before its expiry, and the time before which JWTs are refused only moves forward.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from helix.domain import user as domain
from helix.domain.user import ApiKeyCreated, ApiKeyExpired, Role, UserState
from helix.domain.user.scopes import ROLE_SCOPES, SCOPES
from helix.errors import Forbidden, InvalidTransition, NotFound, ValidationError

AT = datetime(2026, 1, 1, tzinfo=UTC)
USERS = tuple(UUID(int=i + 1) for i in range(3))
KEYS = tuple(UUID(int=100 + i) for i in range(3))

steps = st.lists(
    st.tuples(
        st.integers(0, len(USERS) - 1),
        st.sampled_from(
            ["role", "disable", "enable", "password", "key", "revoke", "login", "create"]
        ),
        st.sampled_from(list(Role)),
        st.integers(0, len(KEYS) - 1),
        st.sampled_from([None, "wrong_password"]),
    ),
    max_size=40,
)


def _command(
    kind: str, role: Role, key: UUID, failure: str | None, others: int, user_id: UUID
) -> domain.Command:
    match kind:
        case "role":
            return domain.ChangeRole(to_role=role, other_enabled_admins=others, at=AT)
        case "disable":
            return domain.DisableUser(other_enabled_admins=others, at=AT)
        case "enable":
            return domain.EnableUser(at=AT)
        case "password":
            return domain.SetPassword(at=AT)
        case "key":
            return domain.CreateApiKey(
                key_id=key, name="k", prefix=f"p{key}", key_sha256="s", at=AT
            )
        case "revoke":
            return domain.RevokeApiKey(key_id=key, at=AT)
        case "login":
            return domain.RecordLogin(method="password", failure=failure, at=AT)
        case _:
            return domain.CreateUser(user_id=user_id, username="again", role=role, at=AT)


@settings(max_examples=300, deadline=None)
@given(steps=steps, first_role=st.sampled_from(list(Role)))
def test_no_sequence_of_commands_leaves_no_enabled_admin_or_breaks_a_key(
    steps: list[tuple[int, str, Role, int, str | None]], first_role: Role
) -> None:
    roles = (Role.ADMIN, first_role, Role.USER)
    states: dict[UUID, UserState] = {}
    history: dict[UUID, list[domain.Event]] = {}
    for user_id, role in zip(USERS, roles, strict=True):
        command = domain.CreateUser(user_id=user_id, username=f"u{user_id.int}", role=role, at=AT)
        history[user_id] = list(domain.decide(domain.INITIAL, command))
        states[user_id] = domain.fold(history[user_id])

    for index, kind, role, key_index, failure in steps:
        user_id = USERS[index]
        state = states[user_id]
        others = sum(s.enabled_admin for u, s in states.items() if u != user_id)
        command = _command(kind, role, KEYS[key_index], failure, others, user_id)
        try:
            events = domain.decide(state, command)
        except InvalidTransition as refused:
            assert refused.details["current_state"] == {
                "role": state.role.value,
                "disabled": state.disabled,
            }
            continue
        except (Forbidden, NotFound, ValidationError):
            assert kind == "revoke" and KEYS[key_index] not in state.keys
            continue
        after = domain.fold(events, state)
        if any(isinstance(e, ApiKeyCreated) for e in events):
            assert not state.disabled
        for key_id, key in state.keys.items():
            assert not key.revoked or after.keys[key_id].revoked  # a revoked key stays revoked
        if kind in ("role", "disable", "enable", "revoke"):
            assert domain.decide(after, command) == []  # repeating it changes nothing
        history[user_id] += events
        states[user_id] = after
        assert any(s.enabled_admin for s in states.values())

    for user_id, events in history.items():
        assert domain.fold(events) == states[user_id]  # the log alone gives the state


key_steps = st.lists(
    st.tuples(
        st.sampled_from(["key", "expire", "revoke", "revoke_tokens", "password", "role", "logout"]),
        st.integers(0, len(KEYS) - 1),
        st.frozensets(st.sampled_from(sorted(SCOPES))) | st.none(),
        st.integers(0, 120),  # minutes the clock moves before this step
        st.integers(-60, 240) | st.none(),  # a new key's expiry, in minutes from now
        st.sampled_from([Role.USER, Role.AUDITOR, Role.WORKER]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps=key_steps, first_role=st.sampled_from([Role.USER, Role.AUDITOR, Role.WORKER]))
def test_keys_never_exceed_their_role_expire_once_after_their_expiry_and_cutoffs_only_advance(
    steps: list[tuple[str, int, frozenset[str] | None, int, int | None, Role]], first_role: Role
) -> None:
    user_id = USERS[0]
    at = AT
    history = list(
        domain.decide(
            domain.INITIAL,
            domain.CreateUser(user_id=user_id, username="u", role=first_role, at=at),
        )
    )
    state = domain.fold(history)
    for kind, key_index, scopes, minutes, expiry, role in steps:
        at += timedelta(minutes=minutes)
        key = KEYS[key_index]
        command: domain.Command
        match kind:
            case "key":
                command = domain.CreateApiKey(
                    key_id=key,
                    name="k",
                    prefix=f"p{key}",
                    key_sha256="s",
                    scopes=None if scopes is None else tuple(scopes),
                    expires_at=None if expiry is None else at + timedelta(minutes=expiry),
                    at=at,
                )
            case "expire":
                command = domain.ExpireApiKey(key_id=key, at=at)
            case "revoke":
                command = domain.RevokeApiKey(key_id=key, at=at)
            case "revoke_tokens":
                command = domain.RevokeTokens(at=at)
            case "password":
                command = domain.SetPassword(at=at)
            case "role":
                command = domain.ChangeRole(to_role=role, other_enabled_admins=1, at=at)
            case _:
                command = domain.RevokeToken(
                    token_id=f"t{minutes}", expires_at=at + timedelta(hours=1), at=at
                )
        try:
            events = domain.decide(state, command)
        except (Forbidden, InvalidTransition, NotFound, ValidationError):
            events = []
            if isinstance(command, domain.CreateApiKey):
                beyond = scopes is not None and not scopes <= ROLE_SCOPES[state.role]
                past = expiry is not None and expiry <= 0
                assert beyond or past or key in state.keys
            elif isinstance(command, domain.ExpireApiKey):
                found = state.keys.get(key)
                assert found is None or found.expires_at is None or found.expires_at > at
            elif isinstance(command, domain.RevokeApiKey):
                assert key not in state.keys
            else:
                raise
        after = domain.fold(events, state)
        for event in events:
            if isinstance(event, ApiKeyCreated) and event.scopes is not None:
                assert set(event.scopes) <= ROLE_SCOPES[state.role]  # never beyond the role
            if isinstance(event, ApiKeyCreated) and event.expires_at is not None:
                assert event.expires_at > at
            if isinstance(event, ApiKeyExpired):
                expired = state.keys[event.key_id]
                assert not expired.expired and not expired.revoked  # recorded once at most
                assert expired.expires_at is not None and expired.expires_at <= event.at
        if state.tokens_valid_after is not None:
            assert after.tokens_valid_after is not None
            assert after.tokens_valid_after >= state.tokens_valid_after  # cutoffs only advance
        history += events
        state = after
    assert domain.fold(history) == state
