"""`helix events export` and `helix events import`: the log to NDJSON and back.

`add_subcommands(sub)` adds both to the `events` group's subparsers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import attrs

from helix.audit.export import export_events
from helix.audit.filters import EventFilter, check_range, parse_types, parse_uuid
from helix.audit.importer import InvalidExport, StoreNotEmpty, import_log
from helix.audit.progress import ProgressReporter
from helix.cli.context import pool
from helix.cli.projections import ProgressDisplay
from helix.config import Settings
from helix.errors import ValidationError
from helix.eventstore import EventStore
from helix.eventstore.sql import QUERIES
from helix.inputs import parse_time
from helix.serialization import default_registry


def add_subcommands(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="write the log (or the events matching filters) as NDJSON",
        description="Writes one JSON object per event with every column needed to re-create "
        "it (position, ids, stream and version, type, data, metadata, recorded_at to the "
        "microsecond, hash). Pages through the log up to its head at the start; progress goes "
        "to stderr. Only an unfiltered export can be imported. An unfiltered export ends with "
        "a protected section: the credentials the log does not hold (password hashes, webhook "
        "signing secrets, the server's secrets), so an import restores every login; FILE is "
        "created readable by its owner only. Keep it as secret as the database.",
    )
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE, mode 0600 (default stdout)"
    )
    export.add_argument(
        "--without-credentials",
        action="store_true",
        help="leave the protected section out (e.g. for an auditor); an import of such a file "
        "has no passwords and no webhook secrets",
    )
    add_filter_arguments(export)
    export.add_argument("--page-size", type=int, default=1000, help="events per query")
    export.add_argument(
        "--progress-every", type=int, default=10_000, help="a progress line every N events"
    )
    export.set_defaults(handler=run_export)
    load = sub.add_parser(
        "import",
        help="load an export into an empty store, verify it and rebuild the read models",
        description="Loads an unfiltered export into a store with no events (refused, changing "
        "nothing, otherwise), keeping event ids, positions, recorded_at and hashes, in one "
        "transaction; then verifies the hash chain and rebuilds every projection.",
    )
    load.add_argument("file", metavar="FILE", help="the export to load (- for stdin)")
    load.add_argument("--batch-size", type=int, default=1000, help="events per insert")
    load.add_argument(
        "--progress-every", type=int, default=10_000, help="a progress line every N events"
    )
    load.set_defaults(handler=run_import)


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--after", type=int, default=0, help="only events after this position")
    parser.add_argument("--stream-id", help="only this stream (e.g. project-<uuid>)")
    parser.add_argument("--project-id", help="only events of this project and its jobs")
    parser.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="GLOB",
        help="event type globs, comma-separated or repeated (job.*)",
    )
    parser.add_argument("--actor", help="only events whose metadata actor is this")
    parser.add_argument("--since", help="recorded at or after this RFC 3339 time")
    parser.add_argument("--until", help="recorded before this RFC 3339 time")


def selection_of(args: argparse.Namespace) -> EventFilter:
    """The filter the arguments describe; ValidationError for a malformed one."""
    if args.after < 0:
        raise ValidationError("--after must be 0 or more")
    since = parse_time(args.since, "since") if args.since else None
    until = parse_time(args.until, "until") if args.until else None
    check_range(since, until)
    return EventFilter(
        after=args.after,
        stream_id=args.stream_id or None,
        project_id=parse_uuid(args.project_id, "project_id") if args.project_id else None,
        types=parse_types(args.type),
        actor=args.actor or None,
        since=since,
        until=until,
    )


def _filtered(selection: EventFilter) -> bool:
    return any(
        value
        for value in (
            selection.stream_id,
            selection.project_id,
            selection.types,
            selection.actor,
            selection.since,
            selection.until,
        )
    )


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """stdout, or FILE written under a temporary name and renamed once complete."""
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(descriptor, "w", encoding="utf-8") as out:
            yield out
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


async def run_export(args: argparse.Namespace) -> int:
    try:
        selection = selection_of(args)
    except ValidationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if args.page_size < 1:
        print("error: --page-size must be at least 1", file=sys.stderr)
        return 2
    async with pool(Settings.from_env(), read_only=True) as p:
        head = int(await p.fetchval(QUERIES["head"]))
        total = None if _filtered(selection) else max(head - selection.after, 0)
        reporter = ProgressReporter("export", total, every=args.progress_every)
        with _output(args.output) as out:
            report = await export_events(
                p,
                out,
                attrs.evolve(selection, up_to=head),
                page_size=args.page_size,
                progress=reporter.update,
                with_credentials=not (args.without_credentials or _filtered(selection)),
            )
    reporter.finish(report.events)
    where = args.output if args.output and args.output != "-" else "stdout"
    print(f"exported {report.events} events (log head {report.head}) to {where}", file=sys.stderr)
    if report.credentials:
        print(
            f"the export holds {report.credentials} credentials in its protected section: "
            "keep it as secret as the database",
            file=sys.stderr,
        )
    return 0


def _readable(path: str) -> bool:
    return path == "-" or Path(path).is_file()


@contextlib.contextmanager
def _input(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdin
        return
    with open(path, encoding="utf-8") as lines:
        yield lines


async def run_import(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    if not _readable(args.file):
        print(f"error: no such file: {args.file}", file=sys.stderr)
        return 2
    reporter = ProgressReporter("import", every=args.progress_every)
    rebuilds = ProgressDisplay(sys.stderr)
    try:
        async with pool(Settings.from_env()) as p:
            store = EventStore(p, default_registry())
            with _input(args.file) as lines:
                report = await import_log(
                    store,
                    lines,
                    batch_size=args.batch_size,
                    progress=reporter.update,
                    rebuild_progress=rebuilds,
                )
    except (StoreNotEmpty, InvalidExport) as exc:
        print(f"error: {exc.message}; nothing was imported", file=sys.stderr)
        return 1
    reporter.finish(report.load.events)
    rebuilds.done()
    print(
        f"imported {report.load.events} events, head {report.load.head} "
        f"hash {report.load.head_hash}, {report.load.credentials} credentials",
        file=sys.stderr,
    )
    if not report.ok:
        print(
            f"FAILED: the imported chain does not verify at position "
            f"{report.chain.first_bad_position}: {report.chain.reason}",
            file=sys.stderr,
        )
        return 1
    names = ", ".join(f"{r.projection} ({r.events})" for r in report.rebuilt)
    print(f"chain verified; rebuilt projections: {names}", file=sys.stderr)
    return 0
