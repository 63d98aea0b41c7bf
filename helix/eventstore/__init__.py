"""The event log: append, read, sequence, wake up, verify."""

from helix.eventstore.records import ANY_VERSION, Appended, EncodedEvent, RecordedEvent
from helix.eventstore.sequencer import Blocker, Sequencer, blocked_by, sequencer_lag
from helix.eventstore.store import EventStore
from helix.eventstore.verify import ChainReport, verify_chain
from helix.eventstore.wakeups import ChannelWatcher, HeadWatcher, WakeUps

__all__ = [
    "ANY_VERSION",
    "Appended",
    "Blocker",
    "ChainReport",
    "ChannelWatcher",
    "EncodedEvent",
    "EventStore",
    "HeadWatcher",
    "RecordedEvent",
    "Sequencer",
    "WakeUps",
    "blocked_by",
    "sequencer_lag",
    "verify_chain",
]
