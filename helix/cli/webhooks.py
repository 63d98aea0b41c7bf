"""`helix webhooks replay`: re-deliver a range of the log to one endpoint, from the command
line, directly against the database (the running delivery workers send them)."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from helix.cli.context import pool
from helix.config import Settings
from helix.errors import HelixError
from helix.inputs import parse_time
from helix.webhooks.replay import replay
from helix.webhooks.sql import QUERIES


def register(commands: Any) -> None:
    group = commands.add_parser("webhooks", help="webhook endpoints and their deliveries")
    sub = group.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "replay",
        help="deliver the endpoint's matching events again, from a position or a time",
        description="Queue new deliveries (kind replay, same webhook-id) for every event the "
        "endpoint matches and its owner may see, from --since-position (inclusive) or "
        "--since-time on, up to --until-position or the log's head.",
    )
    p.add_argument("endpoint_id", metavar="ENDPOINT_ID", type=uuid.UUID)
    since = p.add_mutually_exclusive_group(required=True)
    since.add_argument("--since-position", type=int, metavar="N")
    since.add_argument(
        "--since-time", metavar="T", help="an RFC 3339 time with an offset (2026-01-31T12:00:00Z)"
    )
    p.add_argument("--until-position", type=int, metavar="N")
    p.add_argument("--type", action="append", dest="types", metavar="GLOB",
                   help="only these event types (repeatable; globs such as job.*)")  # fmt: skip
    p.set_defaults(handler=run_replay)


async def run_replay(args: argparse.Namespace) -> int:
    try:
        since_time = parse_time(args.since_time, "--since-time") if args.since_time else None
    except HelixError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    async with pool(Settings.from_env()) as p:
        if await p.fetchrow(QUERIES["endpoint_get"], args.endpoint_id) is None:
            print(f"no webhook endpoint {args.endpoint_id}", file=sys.stderr)
            return 1
        try:
            result = await replay(
                p,
                args.endpoint_id,
                since_position=args.since_position,
                since_time=since_time,
                until_position=args.until_position,
                types=args.types,
            )
        except HelixError as exc:
            print(exc.message, file=sys.stderr)
            return 2
    if not result.deliveries:
        print("nothing to replay")
        return 0
    print(
        f"queued {result.deliveries} deliveries, positions {result.first_position}"
        f"..{result.last_position}"
    )
    if result.next_position is not None:
        print(f"more remain: run again with --since-position {result.next_position}")
    return 0
