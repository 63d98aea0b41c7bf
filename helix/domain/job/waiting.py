"""Why a queued job may wait for ever: no worker offers what its phases still to run need.

A job is claimable by one worker whose capabilities cover every phase still to run, so the
question is never "is each capability offered somewhere" but "does one worker offer them all".
The same rule answers three questions: the job view's `waiting` (the workers online now), the
reaper's `job.waiting` event (the same), and execute's warning (every registered worker, online
or not: a plan none of them could ever run).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

# What a phase without a command needs: a worker that runs an agent for it.
AGENT_HINT = (
    "phases without a command run on a worker with an agent command "
    "(HELIX_AGENT_COMMAND for the in-process worker of helix serve)"
)


@attrs.frozen(kw_only=True)
class Need:
    """What one phase still to run needs: its capabilities, and whether it has a command."""

    capabilities: tuple[str, ...]
    has_command: bool


@attrs.frozen(kw_only=True)
class Waiting:
    """A sentence saying why, and the capabilities no single worker offers together."""

    reason: str
    capabilities: tuple[str, ...]


def unmet(needs: Sequence[Need], offers: Iterable[Iterable[str]], where: str) -> Waiting | None:
    """Why no worker among `offers` (each worker's capabilities; `where` says which workers,
    e.g. "online") can run phases with these needs; None when one of them can."""
    needed = tuple(dict.fromkeys(c for need in needs for c in need.capabilities))
    if not needed:
        return None
    offered = [frozenset(offer) for offer in offers]
    if any(offer.issuperset(needed) for offer in offered):
        return None
    anywhere = frozenset().union(*offered)
    missing = tuple(c for c in needed if c not in anywhere)
    if not offered:
        reason = f"no worker is {where}; the job needs one offering {_names(needed)}"
    elif missing:
        reason = f"no {where} worker offers {_names(missing)}"
    else:
        reason = f"no single {where} worker offers {_names(needed)} together"
    blamed = set(missing or needed)
    if any(not n.has_command and blamed.intersection(n.capabilities) for n in needs):
        reason = f"{reason}; {AGENT_HINT}"
    return Waiting(reason=reason, capabilities=missing or needed)


def _names(capabilities: Sequence[str]) -> str:
    return ", ".join(capabilities)


__all__ = ["AGENT_HINT", "Need", "Waiting", "unmet"]
