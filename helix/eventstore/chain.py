"""The hash chain over the log: hash(n) = sha256(hash(n-1) || canonical bytes of event n)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from helix.envelope import chain_bytes

GENESIS = b"\x00" * 32


def link(previous: bytes, position: int, row: Mapping[str, Any]) -> bytes:
    """The link of the event at `position`; the position is hashed too, so reordering shows."""
    return hashlib.sha256(previous + chain_bytes(position, row)).digest()
