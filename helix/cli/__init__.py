"""The `helix` command. Each subcommand group lives in its own module with a `register`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from helix import logs
from helix.cli import (
    audit,
    bench,
    database,
    events,
    projections,
    remote,
    serve,
    users,
    webhooks,
    worker,
)
from helix.cli.context import NoDatabase
from helix.config import SettingError, Settings

GROUPS = [serve, database, users, remote, projections, events, webhooks, audit, bench, worker]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helix",
        description="Helix: an event-sourced control plane for AI development work. Every "
        "command that works on the database finds it the same way: HELIX_DATABASE_URL, else "
        "the embedded PostgreSQL in HELIX_DATA_DIR (default ./.helix). `projects`, `jobs`, "
        "`keys list` and `events tail` talk to a running server's API instead (--server, "
        "HELIX_SERVER).",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.handler
    try:
        settings = Settings.from_env()  # a bad HELIX_* value stops every command before it starts
        logs.configure(args.log_level, settings.log_format, access_log=settings.access_log)
        return asyncio.run(handler(args))
    except SettingError as exc:
        print(f"helix: {exc}", file=sys.stderr)
        return 2
    except NoDatabase as exc:
        print(f"helix: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
