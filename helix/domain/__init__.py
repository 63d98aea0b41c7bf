"""The pure domain: the project, job, user, webhook and worker aggregates as deciders, with no I/O.

Each aggregate package holds `events.py` (frozen, past-tense events and their `EVENTS`
registry of dotted type names), `commands.py` (imperative commands, each carrying the time it
happens) and `decider.py` (`decide`, `evolve`, `fold` over a frozen state). Nothing here
imports a database, HTTP or JSON library.
"""

from __future__ import annotations

from helix.domain.job.events import EVENTS as JOB_EVENTS
from helix.domain.project.events import EVENTS as PROJECT_EVENTS
from helix.domain.user.events import EVENTS as USER_EVENTS
from helix.domain.webhook.events import EVENTS as WEBHOOK_EVENTS
from helix.domain.worker.events import EVENTS as WORKER_EVENTS

# Every domain event class by its dotted type name (no two aggregates share a name).
EVENTS: dict[str, type] = {
    **PROJECT_EVENTS,
    **JOB_EVENTS,
    **USER_EVENTS,
    **WEBHOOK_EVENTS,
    **WORKER_EVENTS,
}

__all__ = ["EVENTS", "JOB_EVENTS", "PROJECT_EVENTS"]
