"""What a subscriber asked for: a scope (one job, one project, everything), type globs, and
who is asking (so visibility is part of every match)."""

from __future__ import annotations

import enum
import re
import uuid
from typing import Any

import attrs

from helix.errors import ValidationError
from helix.streams.frames import Frame
from helix.streams.visibility import Viewer, may_see

MAX_TYPE_PATTERNS = 32
TYPE_PATTERN = re.compile(r"^[A-Za-z0-9_.*?-]{1,100}$")


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


def parse_types(raw: str | list[Any] | None) -> tuple[str, ...]:
    """`job.*,project.created` (or a list of globs) → the globs; `*` and `?` are wildcards."""
    if raw is None:
        return ()
    items = raw.split(",") if isinstance(raw, str) else raw
    patterns: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError("types must be strings", field="types")
        item = item.strip()
        if not item:
            continue
        if not TYPE_PATTERN.match(item):
            raise ValidationError(
                f"type pattern {item!r} may hold letters, digits, '.', '_', '-', '*' and '?'",
                field="types",
            )
        patterns.append(item)
    if len(patterns) > MAX_TYPE_PATTERNS:
        raise ValidationError(f"at most {MAX_TYPE_PATTERNS} type patterns", field="types")
    return tuple(dict.fromkeys(patterns))


def compile_types(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for the globs, with the meaning `read_all` gives them in SQL (LIKE)."""
    if not patterns:
        return None
    parts = [
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p)
        for p in patterns
    ]
    return re.compile("|".join(f"(?:{p})" for p in parts))


class Filter:
    """Matches a frame if it is in scope, of a wanted type, and visible to the viewer."""

    __slots__ = ("_types", "scope", "types", "viewer")

    def __init__(self, scope: Scope, viewer: Viewer, types: tuple[str, ...] = ()) -> None:
        self.scope = scope
        self.viewer = viewer
        self.types = types
        self._types = compile_types(types)

    def wants_type(self, event_type: str) -> bool:
        return self._types is None or self._types.fullmatch(event_type) is not None

    def in_scope(self, frame: Frame) -> bool:
        event = frame.event
        match self.scope.kind:
            case ScopeKind.JOB:
                return event.stream_id == self.scope.stream_id
            case ScopeKind.PROJECT:
                return event.project_id == self.scope.id
        return True

    def matches(self, frame: Frame) -> bool:
        return (
            self.in_scope(frame)
            and self.wants_type(frame.event.type)
            and may_see(self.viewer, frame.event, frame.owner)
        )

    def read_args(self) -> dict[str, Any]:
        """The same filter as `EventStore.read_all` arguments (visibility is applied after)."""
        return {
            "stream_id": self.scope.stream_id,
            "project_id": self.scope.id if self.scope.kind is ScopeKind.PROJECT else None,
            "types": list(self.types) or None,
        }
