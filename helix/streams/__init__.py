"""Live streams: one tailer per process fans the log out in memory to SSE and WebSocket
subscribers; a subscriber that falls behind catches up from the database and rejoins."""

from helix.streams.filters import Filter, Scope, parse_types
from helix.streams.frames import CaughtUp, Frame
from helix.streams.subscriptions import Batch, Subscription
from helix.streams.tailer import Heartbeat, Tailer

__all__ = [
    "Batch",
    "CaughtUp",
    "Filter",
    "Frame",
    "Heartbeat",
    "Scope",
    "Subscription",
    "Tailer",
    "parse_types",
]
