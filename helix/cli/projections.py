"""`helix projections status` and `helix projections rebuild NAME|all`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from helix.cli.context import pool
from helix.config import Settings
from helix.eventstore import EventStore
from helix.serialization import default_registry
from projections import registry
from projections.rebuild import Progress, rebuild
from projections.runner import status

ALL = "all"  # `rebuild all`: every projection, one after the other
BAR_WIDTH = 30
PLAIN_EVERY_S = 1.0


def register(commands: Any) -> None:
    group = commands.add_parser("projections", help="inspect and rebuild the read models")
    sub = group.add_subparsers(dest="projections_command", metavar="ACTION", required=True)
    show = sub.add_parser(
        "status",
        help="each projection's version, checkpoint position and lag behind the log",
    )
    show.set_defaults(handler=run_status)
    again = sub.add_parser(
        "rebuild",
        help="rebuild a read model (or all) from the log into fresh tables and swap them in",
        description="Replays every event the projection handles into fresh tables while the "
        "live ones keep serving, then swaps them in within one short transaction. Shows a "
        "progress bar on a terminal and progress lines otherwise.",
    )
    again.add_argument(
        "name", help=f"one of: {', '.join(sorted(registry.BY_NAME))}, or {ALL!r} for every one"
    )
    again.add_argument(
        "--batch-size", type=int, default=5000, help="events per batch (default 5000)"
    )
    again.set_defaults(handler=run_rebuild)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressDisplay:
    """A redrawn bar with rate and ETA on a terminal; a line per second otherwise."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        fraction = min(p.position / p.target, 1.0) if p.target else 1.0
        rate = p.events / p.elapsed if p.elapsed > 0 else 0.0
        speed = p.position / p.elapsed if p.elapsed > 0 else 0.0
        eta = max(p.target - p.position, 0) / speed if speed > 0 else None
        summary = (
            f"{p.position}/{p.target} positions, {p.events} events, {rate:,.0f} events/s, "
            f"ETA {_duration(eta)}"
        )
        if self.tty:
            filled = int(fraction * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self.out.write(f"\r{p.projection} [{bar}] {fraction:6.1%} {summary}\x1b[K")
            self.out.flush()
            return
        now = time.monotonic()
        if now - self._last >= PLAIN_EVERY_S or fraction >= 1.0:
            self._last = now
            print(f"rebuild {p.projection}: {fraction:.0%} {summary}", file=self.out, flush=True)

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")


async def run_status(args: argparse.Namespace) -> int:
    async with pool(Settings.from_env(), read_only=True) as p:
        states = await status(p)
    print(
        f"{'NAME':<10} {'VERSION':>7} {'BUILT':>5} {'POSITION':>10} {'HEAD':>10} {'LAG':>8}  STATE"
    )
    for s in states:
        built = "-" if s.stored_version is None else str(s.stored_version)
        state = "stale: rebuild" if s.stale else ("never run" if s.stored_version is None else "ok")
        numbers = f"{s.version:>7} {built:>5} {s.position:>10} {s.head:>10} {s.lag:>8}"
        print(f"{s.name:<10} {numbers}  {state}")
    return 0


async def run_rebuild(args: argparse.Namespace) -> int:
    try:
        chosen = registry.ALL if args.name == ALL else (registry.get(args.name),)
    except registry.UnknownProjection as exc:
        print(f"error: {exc} or {ALL!r}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    async with pool(Settings.from_env()) as p:
        store = EventStore(p, default_registry())
        for projection in chosen:
            display = ProgressDisplay()
            report = await rebuild(store, projection, batch_size=args.batch_size, progress=display)
            display.done()
            print(
                f"rebuilt {report.projection}: {report.events} events up to position "
                f"{report.position} in {report.seconds:.1f}s",
                flush=True,
            )
    return 0
