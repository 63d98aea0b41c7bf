"""`helix audit verify`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from helix.cli.context import pool
from helix.config import Settings
from helix.eventstore import verify_chain


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="check the integrity of the event log")
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = sub.add_parser(
        "verify",
        help="walk the hash chain; exit 1 naming the first bad position",
        description="Recompute the sha256 chain over every positioned event and check that "
        "positions are dense from 1 to the head. Exits 0 when the log is intact, 1 otherwise.",
    )
    verify.set_defaults(handler=run_verify)


async def run_verify(args: argparse.Namespace) -> int:
    async with pool(Settings.from_env(), read_only=True) as p:
        report = await verify_chain(p)
    if report.ok:
        print(f"ok: {report.verified_head} events verified, head hash {report.head_hash}")
        return 0
    print(
        f"FAILED at position {report.first_bad_position}: {report.reason} "
        f"(verified up to {report.verified_head})",
        file=sys.stderr,
    )
    return 1
