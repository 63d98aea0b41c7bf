"""Random command sequences on several users never break the user aggregate's invariants.

Each step picks a user and a command, with the count of other enabled admins taken from the
states themselves (as the service counts them under its lock). An accepted command's events
are folded in; a refused one must be a 409 carrying the current state, a 404 or a 422, and
change nothing. Whatever happens, some enabled admin remains.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from helix.domain import user as domain
from helix.domain.user import ApiKeyCreated, Role, UserState
from helix.errors import InvalidTransition, NotFound, ValidationError

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
        except (NotFound, ValidationError):
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
