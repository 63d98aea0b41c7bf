"""`helix migrate`."""

from __future__ import annotations

import argparse
from typing import Any

from helix import migrate
from helix.cli.context import database_url
from helix.config import Settings


def register(commands: Any) -> None:
    p = commands.add_parser("migrate", help="upgrade the schema to the newest revision (alembic)")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.add_argument(
        "--downgrade",
        action="store_true",
        help="downgrade to --revision instead (e.g. --revision base)",
    )
    p.set_defaults(handler=run_migrate)


async def run_migrate(args: argparse.Namespace) -> int:
    async with database_url(Settings.from_env()) as url:
        if args.downgrade:
            await migrate.downgrade(url, args.revision)
        else:
            await migrate.upgrade(url, args.revision)
    print(f"database at revision {args.revision}")
    return 0
