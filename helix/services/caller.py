"""Who asks for a command or a query, and what goes into the metadata of the events it causes."""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from helix.access import Viewer, may_see_owned
from helix.services.idempotency import Idempotency


def _new_request_id() -> str:
    return str(uuid.uuid4())


@attrs.frozen(kw_only=True)
class Caller:
    """The service layer's view of a principal: no HTTP in sight.

    `user_id` is what projects and jobs record as their owner; `actor` is how event metadata
    names the caller (`user:<id>`, `key:<id>`, `worker:<id>`).
    """

    user_id: str
    name: str
    actor: str
    sees_everything: bool = False
    admin: bool = False  # the role admin (an auditor sees everything too, but is no admin)
    request_id: str = attrs.field(factory=_new_request_id)
    source: str | None = None
    # What the client asked to attach to the events of its request (a quick action's
    # `metadata`): recorded under `client` in their metadata, when given.
    client_metadata: dict[str, Any] | None = None
    # The request's idempotency key, if it sent one: the unit of work records it (see there).
    idempotency: Idempotency | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def viewer(self) -> Viewer:
        return Viewer(user_id=self.user_id, sees_everything=self.sees_everything)

    def may_see(self, owner: str | None) -> bool:
        """Whether the caller may see a resource `owner` owns (the rule of `helix.access`)."""
        return may_see_owned(self.viewer, owner)

    def metadata(self, causation_id: uuid.UUID | None = None) -> dict[str, Any]:
        """The metadata of every event this caller causes: who, which request, and the event
        that caused it when another event did (a job's end causes its project's)."""
        metadata: dict[str, Any] = {
            "actor": self.actor,
            "request_id": self.request_id,
            "correlation_id": self.request_id,
            "causation_id": None if causation_id is None else str(causation_id),
            "source": self.source,
        }
        if self.client_metadata is not None:
            metadata["client"] = self.client_metadata
        return metadata


def system_caller(name: str = "helix") -> Caller:
    """For work Helix does on its own (reapers, process managers)."""
    return Caller(user_id=f"system:{name}", name=name, actor=f"system:{name}", sees_everything=True)
