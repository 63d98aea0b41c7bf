"""Random command sequences on one webhook endpoint never break its invariants: an accepted
command's events fold into a state that agrees with a plain model of the endpoint, a refused
one appends nothing, and once deleted the endpoint refuses everything as not found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from helix.domain import webhook
from helix.domain.webhook import (
    CreateEndpoint,
    DeleteEndpoint,
    DisabledReason,
    DisableEndpoint,
    EnableEndpoint,
    RotateSecret,
    UpdateEndpoint,
)
from helix.errors import InvalidTransition, NotFound, ValidationError

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ENDPOINT = UUID("00000000-0000-4000-8000-0000000000e1")
OWNER = UUID("00000000-0000-4000-8000-0000000000b1")
URLS = st.sampled_from(["https://a.example/", "https://b.example/", ""])
TYPES = st.sampled_from([("*",), ("job.*",), ("job.*", "project.created"), (), ("a b",)])
DESCRIPTIONS = st.sampled_from(["", "ci", "x" * (webhook.MAX_DESCRIPTION_CHARS + 1)])


def commands(at: datetime) -> st.SearchStrategy[webhook.Command]:
    return st.one_of(
        st.builds(
            CreateEndpoint, endpoint_id=st.just(ENDPOINT), owner=st.just(OWNER), url=URLS,
            event_types=TYPES, description=DESCRIPTIONS, enabled=st.booleans(),
            after_position=st.integers(-1, 10), at=st.just(at),
        ),
        st.builds(
            UpdateEndpoint, url=st.none() | URLS, event_types=st.none() | TYPES,
            description=st.none() | DESCRIPTIONS, at=st.just(at),
        ),
        st.builds(DisableEndpoint, reason=st.sampled_from(DisabledReason), at=st.just(at)),
        st.builds(EnableEndpoint, at=st.just(at)),
        st.builds(
            RotateSecret,
            previous_valid_until=st.sampled_from([at - timedelta(1), at + timedelta(1)]),
            at=st.just(at),
        ),
        st.builds(DeleteEndpoint, at=st.just(at)),
    )  # fmt: skip


@given(st.lists(commands(T0), max_size=30))
def test_random_commands_keep_an_endpoint_consistent(sequence: list[webhook.Command]) -> None:
    state = webhook.INITIAL
    history: list[webhook.Event] = []
    enabled: bool | None = None  # the model: None while it does not exist
    deleted = False
    for command in sequence:
        try:
            events = webhook.decide(state, command)
        except (InvalidTransition, ValidationError):
            assert not deleted or isinstance(command, CreateEndpoint)
            continue
        except NotFound:
            assert enabled is None or deleted
            continue
        assert not deleted, "a deleted endpoint accepted a command"
        state = webhook.fold(events, state)
        history += events
        match command:
            case CreateEndpoint():
                enabled = command.enabled
            case DisableEndpoint():
                enabled = False
            case EnableEndpoint():
                enabled = True
            case DeleteEndpoint():
                enabled, deleted = False, True
        assert state.exists and state.enabled is enabled and state.deleted is deleted
        assert state.disabled_reason is None or not state.enabled
        assert state.event_types and state.url
    # The stream folds to the same state from scratch, as the projection and rebuild see it.
    assert webhook.fold(history) == state
