"""Stream filters and the visibility rule, without a database."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import pytest
from event_records import recorded_event

from helix.access import Viewer, may_see, may_see_owned, sees_everything
from helix.domain.user import Role
from helix.errors import ValidationError
from helix.globs import MAX_GLOBS
from helix.streams import Filter, Scope, parse_types
from tests.support import frame_of

ALICE = Viewer(user_id="alice")
ADMIN = Viewer(user_id="root", sees_everything=True)
PROJECT = uuid.uuid4()


# The made-up events of these tests belong to PROJECT unless they say otherwise.
event = functools.partial(recorded_event, project_id=PROJECT)


def test_types_are_parsed_from_a_comma_list_or_a_list_and_bad_ones_refused() -> None:
    assert parse_types("job.*, project.created,,") == ("job.*", "project.created")
    assert parse_types(["job.*", "job.*"]) == ("job.*",)
    assert parse_types(None) == ()
    for bad in ("job.%", "a b", ["x", 3], ",".join(f"t{i}" for i in range(40)), 5, {"a": 1}):
        with pytest.raises(ValidationError):
            parse_types(bad)


def test_stream_names_are_job_project_or_all() -> None:
    job_id = uuid.uuid4()

    assert Scope.parse(f"job:{job_id}") == Scope.job(job_id)
    assert Scope.parse(f"job:{job_id}").stream_id == f"job-{job_id}"
    assert str(Scope.parse(f"project:{job_id}")) == f"project:{job_id}"
    assert Scope.parse("all") == Scope.everything()
    for bad in ("jobs:all", "job:nope", "", "project:"):
        with pytest.raises(ValidationError):
            Scope.parse(bad)


def test_a_user_sees_their_projects_and_their_own_user_stream_and_nothing_else() -> None:
    assert may_see(ALICE, event(), owner="alice")
    assert not may_see(ALICE, event(), owner="bob")
    assert not may_see(ALICE, event(), owner=None)
    assert may_see(ALICE, event(stream_id="user-alice", project_id=None), owner=None)
    assert not may_see(ALICE, event(stream_id="user-bob", project_id=None), owner=None)
    assert not may_see(ALICE, event(stream_id="auth-failures-x", project_id=None), owner=None)
    assert may_see(ADMIN, event(stream_id="user-bob", project_id=None), owner=None)


def test_a_filter_combines_scope_types_and_visibility() -> None:
    job = Filter(Scope.job(uuid.UUID(int=1)), ALICE, ("job.*",))
    project = Filter(Scope.project(PROJECT), ALICE)
    mine = frame_of(event(stream_id=f"job-{uuid.UUID(int=1)}"), "alice")
    theirs = frame_of(event(stream_id=f"job-{uuid.UUID(int=1)}"), "bob")
    other_type = frame_of(
        event(type="project.updated", stream_id=f"job-{uuid.UUID(int=1)}"), "alice"
    )

    assert job.matches(mine) and project.matches(mine)
    assert not job.matches(theirs) and not project.matches(theirs)
    assert not job.matches(other_type) and project.matches(other_type)
    assert job.read_args() == {
        "stream_id": f"job-{uuid.UUID(int=1)}",
        "project_id": None,
        "types": ["job.*"],
    }
    assert project.read_args()["project_id"] == PROJECT


class RecordingFilter(Filter):
    __slots__ = ("asked",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: list[str] = []

    def wants_type(self, event_type: str) -> bool:
        self.asked.append(event_type)
        return super().wants_type(event_type)


def test_a_filter_matches_types_only_of_the_events_its_viewer_may_see() -> None:
    stalling = tuple("*?" * 48 + f"*A{i:02d}" for i in range(MAX_GLOBS))
    f = RecordingFilter(Scope.everything(), ALICE, stalling)
    long_type = "x" * 250 + "A01"
    theirs = frame_of(event(type=long_type, stream_id=f"project-{PROJECT}"), "bob")
    mine = frame_of(event(type=long_type, stream_id=f"project-{PROJECT}"), "alice")

    assert not f.matches(theirs)
    assert f.asked == []
    assert f.matches(mine)
    assert f.asked == [long_type]


def test_the_owner_level_rule_lets_users_see_only_their_own_and_admins_everything() -> None:
    assert may_see_owned(ADMIN, "bob")
    assert may_see_owned(ADMIN, None)
    assert may_see_owned(ALICE, "alice")
    assert not may_see_owned(ALICE, "bob")
    assert not may_see_owned(ALICE, None)
    assert (ALICE.owner_filter, ADMIN.owner_filter) == ("alice", None)
    assert {r for r in Role if sees_everything(r)} == {Role.ADMIN, Role.AUDITOR}


def test_an_event_of_a_users_own_stream_is_theirs_whatever_project_it_names() -> None:
    assert may_see(ALICE, event(stream_id="user-alice"), owner="bob")
