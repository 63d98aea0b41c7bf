"""Webhooks: endpoint registry, dispatcher, delivery workers, signatures, SSRF guard, replay.

`WebhookRoles` is the background role `helix serve` runs: one dispatcher and one delivery
worker per process (any number of processes may run them side by side).
"""

from __future__ import annotations

from helix.config import Settings
from helix.eventstore import EventStore
from helix.supervisor import Supervisor
from helix.webhooks.delivery import DeliveryWorker
from helix.webhooks.dispatcher import Dispatcher
from helix.webhooks.endpoints import Endpoints


class WebhookRoles:
    """The dispatcher and a delivery worker, the worker woken in-process by the dispatcher."""

    def __init__(
        self,
        store: EventStore,
        settings: Settings,
        *,
        dispatcher: bool = True,
        name: str = "w",
        endpoints: Endpoints | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.worker = DeliveryWorker(
            store, settings, name=name, endpoints=endpoints, supervisor=supervisor
        )
        self.dispatcher = (
            Dispatcher(store, settings, on_dispatched=self.worker.wake, supervisor=supervisor)
            if dispatcher
            else None
        )

    async def start(self) -> None:
        await self.worker.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()

    async def stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.worker.stop()


__all__ = ["DeliveryWorker", "Dispatcher", "Endpoints", "WebhookRoles"]
