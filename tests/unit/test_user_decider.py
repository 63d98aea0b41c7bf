"""The user decider, without a database: each command's effect and each refusal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from helix.domain.user import (
    INITIAL,
    MAX_KEY_NAME_CHARS,
    ApiKeyCreated,
    ApiKeyExpired,
    ApiKeyRevoked,
    ChangeRole,
    Command,
    CreateApiKey,
    CreateUser,
    DisableUser,
    EnableUser,
    Event,
    ExpireApiKey,
    LoginFailed,
    LoginSucceeded,
    RecordLogin,
    RevokeApiKey,
    RevokeToken,
    RevokeTokens,
    Role,
    SetPassword,
    TokenRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserPasswordChanged,
    UserRoleChanged,
    UserState,
    decide,
    fold,
)
from helix.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationError

AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
USER = UUID(int=1)
KEY = UUID(int=2)


def created(role: Role = Role.USER) -> UserState:
    return fold([UserCreated(user_id=USER, username="carol", role=role, at=AT)])


def run(state: UserState, *commands: Command) -> tuple[UserState, list[Event]]:
    """Decide the commands in order, each on the state the previous one left."""
    events: list[Event] = []
    for command in commands:
        caused = decide(state, command)
        state = fold(caused, state)
        events += caused
    return state, events


def key(key_id: UUID = KEY) -> CreateApiKey:
    return CreateApiKey(key_id=key_id, name="ci", prefix="hx_abcd", key_sha256="00" * 32, at=AT)


def test_creating_a_user_records_who_they_are() -> None:
    command = CreateUser(
        user_id=USER, username="carol", role=Role.AUDITOR, external_subject="iss|sub", at=AT
    )

    state, events = run(INITIAL, command)

    assert events == [
        UserCreated(
            user_id=USER, username="carol", role=Role.AUDITOR, external_subject="iss|sub", at=AT
        )
    ]
    assert (state.exists, state.user_id, state.username, state.role) == (
        True,
        USER,
        "carol",
        Role.AUDITOR,
    )
    assert state.external_subject == "iss|sub" and not state.disabled and not state.keys


def test_a_user_cannot_be_created_twice() -> None:
    with pytest.raises(InvalidTransition) as refused:
        decide(created(), CreateUser(user_id=USER, username="carol", role=Role.USER, at=AT))

    assert refused.value.status == 409
    assert refused.value.details["current_state"] == {"role": "user", "disabled": False}


@pytest.mark.parametrize("username", ["", "-dash-first", "has space", "x" * 65, "ümlaut"])
def test_a_username_outside_the_pattern_is_a_validation_error(username: str) -> None:
    with pytest.raises(ValidationError) as refused:
        decide(INITIAL, CreateUser(user_id=USER, username=username, role=Role.USER, at=AT))

    assert refused.value.details["field"] == "username"


@pytest.mark.parametrize(
    "command",
    [
        ChangeRole(to_role=Role.ADMIN, other_enabled_admins=1, at=AT),
        DisableUser(other_enabled_admins=1, at=AT),
        EnableUser(at=AT),
        SetPassword(at=AT),
        key(),
        RevokeApiKey(key_id=KEY, at=AT),
        RecordLogin(method="password", at=AT),
    ],
)
def test_every_command_but_create_on_a_user_that_does_not_exist_is_not_found(
    command: Command,
) -> None:
    with pytest.raises(NotFound):
        decide(INITIAL, command)


def test_a_role_change_names_both_roles_and_the_same_role_changes_nothing() -> None:
    state, events = run(created(), ChangeRole(to_role=Role.WORKER, other_enabled_admins=0, at=AT))

    assert events == [
        UserRoleChanged(user_id=USER, from_role=Role.USER, to_role=Role.WORKER, at=AT)
    ]
    assert state.role is Role.WORKER
    assert decide(state, ChangeRole(to_role=Role.WORKER, other_enabled_admins=0, at=AT)) == []


@pytest.mark.parametrize(
    "command",
    [
        ChangeRole(to_role=Role.USER, other_enabled_admins=0, at=AT),
        DisableUser(other_enabled_admins=0, at=AT),
    ],
)
def test_the_last_enabled_admin_can_be_neither_demoted_nor_disabled(command: Command) -> None:
    with pytest.raises(Conflict) as refused:
        decide(created(Role.ADMIN), command)

    assert refused.value.status == 409
    assert refused.value.message == "this is the last enabled admin"
    assert refused.value.details["user_id"] == str(USER)


def test_an_admin_with_another_enabled_admin_beside_them_may_step_down() -> None:
    state, events = run(
        created(Role.ADMIN),
        ChangeRole(to_role=Role.USER, other_enabled_admins=1, at=AT),
        DisableUser(other_enabled_admins=0, at=AT),  # no longer an admin: nothing to keep
    )

    assert [type(e) for e in events] == [UserRoleChanged, UserDisabled]
    assert (state.role, state.disabled) == (Role.USER, True)


def test_a_disabled_admin_may_be_demoted_even_with_no_other_admin() -> None:
    disabled = fold([UserDisabled(user_id=USER, at=AT)], created(Role.ADMIN))

    _, events = run(disabled, ChangeRole(to_role=Role.USER, other_enabled_admins=0, at=AT))

    assert [type(e) for e in events] == [UserRoleChanged]


def test_disabling_and_enabling_toggle_and_repeating_either_changes_nothing() -> None:
    state, events = run(
        created(),
        DisableUser(other_enabled_admins=0, at=AT),
        DisableUser(other_enabled_admins=0, at=AT),
        EnableUser(at=AT),
        EnableUser(at=AT),
    )

    assert events == [UserDisabled(user_id=USER, at=AT), UserEnabled(user_id=USER, at=AT)]
    assert not state.disabled


def test_setting_a_password_records_that_it_changed_and_nothing_of_it() -> None:
    state, events = run(created(), SetPassword(at=AT))

    assert events == [UserPasswordChanged(user_id=USER, at=AT)]
    assert state.has_password


def test_an_api_key_is_an_entity_of_its_user() -> None:
    state, events = run(created(), key())

    assert events == [
        ApiKeyCreated(
            user_id=USER, key_id=KEY, name="ci", prefix="hx_abcd", key_sha256="00" * 32, at=AT
        )
    ]
    assert state.keys[KEY].prefix == "hx_abcd" and not state.keys[KEY].revoked


def test_a_disabled_user_gets_no_new_key() -> None:
    disabled = fold([UserDisabled(user_id=USER, at=AT)], created())

    with pytest.raises(InvalidTransition) as refused:
        decide(disabled, key())

    assert refused.value.message == "the user is disabled"
    assert refused.value.details["current_state"]["disabled"] is True


def test_a_key_id_is_used_once() -> None:
    state, _ = run(created(), key())

    with pytest.raises(InvalidTransition):
        decide(state, key())


def test_a_key_name_longer_than_the_limit_is_a_validation_error() -> None:
    command = CreateApiKey(
        key_id=KEY, name="n" * (MAX_KEY_NAME_CHARS + 1), prefix="p", key_sha256="s", at=AT
    )

    with pytest.raises(ValidationError) as refused:
        decide(created(), command)

    assert refused.value.details["field"] == "name"


def test_revoking_a_key_marks_it_and_revoking_again_changes_nothing() -> None:
    state, events = run(created(), key(), RevokeApiKey(key_id=KEY, at=AT))

    assert events[-1] == ApiKeyRevoked(user_id=USER, key_id=KEY, at=AT)
    assert state.keys[KEY].revoked
    assert decide(state, RevokeApiKey(key_id=KEY, at=AT)) == []


def test_revoking_a_key_the_user_does_not_have_is_not_found() -> None:
    state, _ = run(created(), key())

    with pytest.raises(NotFound) as refused:
        decide(state, RevokeApiKey(key_id=UUID(int=99), at=AT))

    assert refused.value.status == 404


def test_a_matching_credential_is_a_successful_login() -> None:
    state, events = run(created(), RecordLogin(method="password", at=AT))

    assert events == [LoginSucceeded(user_id=USER, username="carol", method="password", at=AT)]
    assert state == created()  # a login changes nothing the decider needs


@pytest.mark.parametrize(
    ("disabled", "failure", "reason"),
    [
        (False, "wrong_password", "wrong_password"),
        (False, "no_password", "no_password"),
        (True, None, "disabled"),
        (True, "wrong_password", "wrong_password"),  # a wrong password is told first
    ],
)
def test_a_failed_login_names_its_reason(disabled: bool, failure: str | None, reason: str) -> None:
    state = created()
    if disabled:
        state = fold([UserDisabled(user_id=USER, at=AT)], state)

    events: Sequence[Event] = decide(state, RecordLogin(method="password", failure=failure, at=AT))

    assert events == [LoginFailed(username="carol", user_id=USER, reason=reason, at=AT)]


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError):
        decide(created(), SetPassword(at=datetime(2026, 1, 1)))


# --- key scopes and expiry, token revocation ------------------------------------------------


def test_a_key_with_scopes_its_role_grants_records_them_sorted_and_once() -> None:
    command = CreateApiKey(
        key_id=KEY,
        name="ci",
        prefix="hx_abc",
        key_sha256="s",
        scopes=("projects:write", "projects:read", "projects:read"),
        at=AT,
    )

    (event,) = decide(created(), command)

    assert isinstance(event, ApiKeyCreated)
    assert event.scopes == ("projects:read", "projects:write")
    assert fold([event], created()).keys[KEY].scopes == ("projects:read", "projects:write")


@pytest.mark.parametrize(
    ("role", "scope", "message"),
    [
        (Role.USER, "users:admin", "the role user does not grant: users:admin"),
        (Role.AUDITOR, "projects:write", "the role auditor does not grant: projects:write"),
        (Role.ADMIN, "projects:everything", "unknown scopes: projects:everything"),
    ],
)
def test_a_key_with_a_scope_beyond_its_users_role_is_a_403_and_an_unknown_one_a_422(
    role: Role, scope: str, message: str
) -> None:
    command = CreateApiKey(
        key_id=KEY, name="k", prefix="hx_abc", key_sha256="s", scopes=(scope,), at=AT
    )
    refusal = ValidationError if message.startswith("unknown") else Forbidden

    with pytest.raises(refusal) as refused:
        decide(created(role), command)

    assert refused.value.message == message
    assert refused.value.details["field"] == "scopes"


def test_a_key_that_would_expire_before_it_is_created_is_a_422() -> None:
    command = CreateApiKey(
        key_id=KEY, name="k", prefix="hx_abc", key_sha256="s", expires_at=AT, at=AT
    )

    with pytest.raises(ValidationError, match="'expires_at' must be in the future"):
        decide(created(), command)


def _expiring(at: datetime) -> UserState:
    command = CreateApiKey(
        key_id=KEY, name="k", prefix="hx_abc", key_sha256="s", expires_at=at, at=AT
    )
    return fold(decide(created(), command), created())


def test_a_key_is_recorded_as_expired_once_and_only_after_its_expiry() -> None:
    expires = AT + timedelta(hours=1)
    state = _expiring(expires)

    with pytest.raises(InvalidTransition) as early:
        decide(state, ExpireApiKey(key_id=KEY, at=expires - timedelta(seconds=1)))
    after, events = run(state, ExpireApiKey(key_id=KEY, at=expires))

    assert early.value.details["reason"] == "not_expired"
    assert events == [ApiKeyExpired(user_id=USER, key_id=KEY, at=expires)]
    assert after.keys[KEY].expired
    assert decide(after, ExpireApiKey(key_id=KEY, at=expires + timedelta(days=1))) == []


def test_a_key_that_never_expires_cannot_be_recorded_expired_and_an_unknown_one_is_missing() -> (
    None
):
    state = fold(
        decide(created(), CreateApiKey(key_id=KEY, name="k", prefix="p", key_sha256="s", at=AT)),
        created(),
    )

    with pytest.raises(InvalidTransition):
        decide(state, ExpireApiKey(key_id=KEY, at=AT + timedelta(days=3650)))
    with pytest.raises(NotFound):
        decide(state, ExpireApiKey(key_id=UUID(int=99), at=AT))


def test_revoking_one_token_records_its_id_and_expiry() -> None:
    expires = AT + timedelta(hours=1)

    events = decide(created(), RevokeToken(token_id="abc", expires_at=expires, at=AT))

    assert events == [TokenRevoked(user_id=USER, token_id="abc", expires_at=expires, at=AT)]


def test_revoking_all_tokens_or_changing_the_password_ends_the_tokens_issued_before() -> None:
    later = AT + timedelta(minutes=5)

    revoked, _ = run(created(), RevokeTokens(at=AT))
    changed, _ = run(revoked, SetPassword(at=later))

    assert revoked.tokens_valid_after == AT
    assert changed.tokens_valid_after == later
    assert changed.has_password
