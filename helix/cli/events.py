"""`helix events tail`: follow the log live through the API, one JSON line per event."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from helix.cli import events_io
from helix.cli.remote import DEFAULT_SERVER


def register(commands: Any) -> None:
    events = commands.add_parser("events", help="the event log, through the API")
    sub = events.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    events_io.add_subcommands(sub)
    tail = sub.add_parser(
        "tail",
        help="follow the log live, one JSON line per event",
        description="Streams every event the caller may see (or one project's) from a running "
        "Helix server over SSE and prints each as one JSON line. After a dropped connection it "
        "resumes from the last position it printed, so nothing is missed or repeated.",
    )
    tail.add_argument("--types", help="comma-separated type globs, e.g. 'job.*,project.created'")
    tail.add_argument("--project", help="only this project's events (its jobs' included)")
    tail.add_argument("--after", type=int, help="replay from after this position first")
    tail.add_argument(
        "--server", help=f"the server's URL (default: HELIX_SERVER, else {DEFAULT_SERVER})"
    )
    tail.add_argument("--key", help="API key or token (default: HELIX_API_KEY)")
    tail.add_argument("--count", type=int, help="stop after printing this many events")
    tail.set_defaults(handler=run_tail)


async def run_tail(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("HELIX_API_KEY")
    if not key:
        print("an API key is needed: --key or HELIX_API_KEY", file=sys.stderr)
        return 2
    return await tail(
        args.server or os.environ.get("HELIX_SERVER") or DEFAULT_SERVER,
        key,
        types=args.types,
        project=args.project,
        after=args.after,
        count=args.count,
    )


async def tail(
    server: str,
    key: str,
    *,
    types: str | None = None,
    project: str | None = None,
    after: int | None = None,
    count: int | None = None,
    out: TextIO | None = None,
) -> int:
    from helix.client import ApiError, AsyncClient, ConnectionFailed  # only when tailing

    out = out or sys.stdout
    globs = types.split(",") if types else None
    printed = 0
    async with AsyncClient(server, api_key=key) as client:
        try:
            if project:
                events = client.stream_project(project, after=after, types=globs)
            else:
                events = client.stream_events(after=after, types=globs)
            async for event in events:
                out.write(json.dumps(event, separators=(",", ":")) + "\n")
                out.flush()
                printed += 1
                if count is not None and printed >= count:
                    return 0
        except ApiError as exc:
            print(f"the server refused the stream: {exc}", file=sys.stderr)
            return 1
        except ConnectionFailed as exc:
            print(f"the stream could not be resumed: {exc}", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"helix: {exc}", file=sys.stderr)
            return 2
    return 0
