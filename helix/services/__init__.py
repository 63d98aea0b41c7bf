"""The service layer: command handlers over the deciders, and the queries behind the API.

Commands load their streams, decide, append and apply the inline projections in one
transaction (`helix.services.unit`); queries read the read models and render JSON-ready dicts.
Nothing here knows about HTTP.
"""

from __future__ import annotations

import attrs

from helix.auth.sealing import Sealer
from helix.config import Settings
from helix.eventstore import ChannelWatcher, EventStore
from helix.services.artifacts import ArtifactService
from helix.services.caller import Caller, system_caller
from helix.services.jobs import JobService
from helix.services.projects import Execution, ProjectService
from helix.services.queries import Queries
from helix.services.unit import Tx, Writer
from helix.services.workers import WorkerService


@attrs.frozen
class Services:
    projects: ProjectService
    jobs: JobService
    queries: Queries
    workers: WorkerService
    artifacts: ArtifactService

    @classmethod
    def build(
        cls,
        store: EventStore,
        settings: Settings,
        signal: ChannelWatcher | None = None,
        sealer: Sealer | None = None,
        *,
        writer: Writer | None = None,
    ) -> Services:
        """Without a `sealer`, plans with phase secrets are refused and jobs with them fail;
        without a `signal`, claims poll."""
        writer = writer or Writer(store)
        workers = WorkerService(writer, settings, signal, sealer)
        return cls(
            projects=ProjectService(writer, settings, sealer),
            jobs=JobService(writer, settings),
            queries=Queries(store, settings),
            workers=workers,
            artifacts=ArtifactService(writer, settings, workers),
        )


__all__ = [
    "ArtifactService",
    "Caller",
    "Execution",
    "JobService",
    "ProjectService",
    "Queries",
    "Services",
    "Tx",
    "WorkerService",
    "Writer",
    "system_caller",
]
