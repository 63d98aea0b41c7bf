"""`X-Helix-Position`: the log position a REST read reflects, so that a client can read, then
subscribe from that position with nothing missed.

The rule: take the position BEFORE the read-model query, and only for read models that are
applied inline (in the append's own transaction). Every event at or below the head was
committed before the head was read, and with it its inline read-model rows, so the query that
follows sees at least those: the position is a safe lower bound. The read may also reflect
events committed but not yet sequenced; they get positions above the stamp and a subscriber
from it receives them once more, which the client recognizes by the resource's `version`
(events of that stream with a version at or below it are already reflected).

A read model kept by the asynchronous projection runner must be stamped with that projection's
checkpoint read in the same transaction as the query, never with the head. Webhook deliveries
are such a read model: the dispatcher commits them with its checkpoint, so the checkpoint read
before the query is a lower bound in the same way (`helix.webhooks.deliveries`).

The other way round, a position a client resumes a stream after is checked once, here
(`resume_position`), for SSE and WebSocket alike.
"""

from __future__ import annotations

from helix.errors import ValidationError

HEADER = "X-Helix-Position"
MAX_POSITION = 2**63 - 1  # positions are PostgreSQL bigints
_DIGITS = len(str(MAX_POSITION))


def resume_position(value: object) -> int:
    """A position a client resumes after (SSE `after` or Last-Event-ID, WebSocket `after`):
    an integer from 0 to MAX_POSITION, else a 422 and no stream."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POSITION:
        return value
    raise ValidationError(
        f"'after' must be a log position, an integer from 0 to {MAX_POSITION}", field="after"
    )


def parse_resume_position(text: str) -> int:
    """`resume_position` of a header or query value: decimal digits only."""
    digits = text.strip()
    ok = digits.isascii() and digits.isdigit() and len(digits) <= _DIGITS
    return resume_position(int(digits) if ok else None)
