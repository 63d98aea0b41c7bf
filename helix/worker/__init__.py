"""Helix's reference worker: claims jobs from a Helix server and runs their phases' commands.

worker = Worker(WorkerConfig(server="http://127.0.0.1:8100", key=key))
await worker.start()
...
await worker.stop()
"""

from __future__ import annotations

from helix.worker.config import WorkerConfig
from helix.worker.protocol import AccessDenied, ProtocolError
from helix.worker.runner import Worker

__all__ = ["AccessDenied", "ProtocolError", "Worker", "WorkerConfig"]
