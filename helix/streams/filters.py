"""What a subscriber asked for: a scope (one job, one project, everything), type globs, and
who is asking (so visibility is part of every match)."""

from __future__ import annotations

import enum
import uuid
from typing import Any

import attrs

from helix import globs
from helix.access import Viewer, may_see
from helix.errors import ValidationError
from helix.streams.frames import Frame


class ScopeKind(enum.StrEnum):
    JOB = "job"
    PROJECT = "project"
    ALL = "all"


@attrs.frozen
class Scope:
    kind: ScopeKind
    id: uuid.UUID | None = None

    @classmethod
    def job(cls, job_id: uuid.UUID) -> Scope:
        return cls(ScopeKind.JOB, job_id)

    @classmethod
    def project(cls, project_id: uuid.UUID) -> Scope:
        return cls(ScopeKind.PROJECT, project_id)

    @classmethod
    def everything(cls) -> Scope:
        return cls(ScopeKind.ALL)

    @classmethod
    def parse(cls, text: str) -> Scope:
        """`job:<id>`, `project:<id>` or `all` (the WebSocket `stream` field)."""
        if text == "all":
            return cls.everything()
        kind, _, raw = text.partition(":")
        if kind in (ScopeKind.JOB, ScopeKind.PROJECT):
            try:
                return cls(ScopeKind(kind), uuid.UUID(raw))
            except ValueError:
                pass
        raise ValidationError(
            "stream must be 'job:<uuid>', 'project:<uuid>' or 'all'", field="stream"
        )

    @property
    def stream_id(self) -> str | None:
        return f"job-{self.id}" if self.kind is ScopeKind.JOB else None

    def __str__(self) -> str:
        return "all" if self.kind is ScopeKind.ALL else f"{self.kind}:{self.id}"


def parse_types(raw: object) -> tuple[str, ...]:
    """`job.*,project.created` (or a list of globs) → the globs (see `helix.globs`)."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        return globs.split([raw], "types")
    if isinstance(raw, list):
        return globs.split(raw, "types")
    raise ValidationError("types must be a string or a list of strings", field="types")


class Filter:
    """Matches a frame if it is in scope, visible to the viewer, and of a wanted type."""

    __slots__ = ("_types", "scope", "types", "viewer")

    def __init__(self, scope: Scope, viewer: Viewer, types: tuple[str, ...] = ()) -> None:
        self.scope = scope
        self.viewer = viewer
        self.types = types
        self._types = globs.TypeGlobs(types)

    def wants_type(self, event_type: str) -> bool:
        return self._types.matches(event_type)

    def in_scope(self, frame: Frame) -> bool:
        match self.scope.kind:
            case ScopeKind.JOB:
                return frame.stream_id == self.scope.stream_id
            case ScopeKind.PROJECT:
                return frame.project_id == self.scope.id
        return True

    def matches(self, frame: Frame) -> bool:
        # The cheap checks first: a stream's globs cost nothing for the events it may not see.
        return (
            self.in_scope(frame)
            and may_see(self.viewer, frame, frame.owner)
            and self.wants_type(frame.type)
        )

    def read_args(self) -> dict[str, Any]:
        """The same filter as `EventStore.read_all` arguments (visibility is applied after)."""
        return {
            "stream_id": self.scope.stream_id,
            "project_id": self.scope.id if self.scope.kind is ScopeKind.PROJECT else None,
            "types": list(self.types) or None,
        }
