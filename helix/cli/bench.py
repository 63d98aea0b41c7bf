"""`helix bench`: measured throughput and latency beside a raw-PostgreSQL baseline."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any

from helix.bench import append, jobs, output, rebuild, stream, webhooks
from helix.bench.common import scratch_database
from helix.cli.context import database_url
from helix.config import Settings


def register(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="benchmarks against a raw PostgreSQL baseline in the same run",
        description="Each benchmark runs in a scratch database created beside Helix's own on "
        "the same server (and dropped afterwards) and prints Helix's figures beside raw "
        "PostgreSQL's, with their ratio.",
    )
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    p = sub.add_parser("append", help="appends per second and append-to-notification latency")
    p.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    p.add_argument(
        "--concurrency", default="1,16", help="comma-separated writer counts (default 1,16)"
    )
    p.add_argument(
        "--latency-samples",
        type=int,
        default=300,
        help="appends timed for notification latency (default 300)",
    )
    p.set_defaults(handler=run_append)
    s = sub.add_parser("stream", help="append-to-SSE-client latency, queries per event, catch-up")
    s.add_argument("--clients", default="1,100,1000", help="client counts (default 1,100,1000)")
    s.add_argument("--events", type=int, default=200, help="appends per level (default 200)")
    s.add_argument(
        "--interval", type=float, default=0.05, help="seconds between appends (default 0.05)"
    )
    s.add_argument("--catch-up", type=int, default=100_000, help="events replayed (100000)")
    s.add_argument(
        "--settle", type=float, default=11.0, help="seconds of quiet before reading statistics"
    )
    s.set_defaults(handler=run_stream)
    r = sub.add_parser(
        "rebuild", help="projection rebuilds beside a raw decoded read of the same log"
    )
    size = r.add_mutually_exclusive_group()
    size.add_argument(
        "--events", type=int, default=20_000, help="events in the log (default 20000)"
    )
    size.add_argument(
        "--large", action="store_const", const=100_000, dest="events", help="100000 events"
    )
    r.add_argument(
        "--batch-size", type=int, default=5000, help="events per page and batch (default 5000)"
    )
    r.set_defaults(handler=run_rebuild)
    w = sub.add_parser("webhooks", help="deliveries per second and event-to-delivery latency")
    w.add_argument("--events", type=int, default=2000, help="events per measurement")
    w.add_argument("--latency-samples", type=int, default=200, help="events timed one by one")
    w.set_defaults(handler=run_webhooks)
    j = sub.add_parser(
        "jobs", help="jobs per second and execute-to-completed latency, beside procrastinate"
    )
    j.add_argument("--jobs", type=int, default=200, help="jobs per worker count (default 200)")
    j.add_argument("--latency-samples", type=int, default=50, help="jobs timed one by one")
    j.add_argument("--no-peer", action="store_true", help="leave procrastinate out")
    j.set_defaults(handler=run_jobs)
    o = sub.add_parser("output", help="phase output lines per second, end to end into the log")
    o.add_argument("--lines", type=int, default=100_000, help="lines the phase prints (100000)")
    o.add_argument("--runs", type=int, default=2, help="jobs run one after another (default 2)")
    o.set_defaults(handler=run_output)


async def run_append(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    async with database_url(settings) as server, scratch_database(server) as url:
        return await append.run(
            url, settings, seconds=args.seconds, levels=levels, latency_samples=args.latency_samples
        )


async def run_webhooks(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    async with database_url(settings) as server, scratch_database(server) as url:
        return await webhooks.run(
            url, settings, events=args.events, latency_samples=args.latency_samples
        )


async def run_rebuild(args: argparse.Namespace) -> int:
    if args.events < 1 or args.batch_size < 1:
        print("error: --events and --batch-size must be at least 1", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    async with database_url(settings) as server, scratch_database(server) as url:
        return await rebuild.run(url, settings, events=args.events, batch_size=args.batch_size)


async def run_stream(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    levels = [int(x) for x in args.clients.split(",") if x.strip()]
    async with database_url(settings) as server, scratch_database(server) as url:
        return await stream.run(
            url,
            settings,
            levels=levels,
            events=args.events,
            interval=args.interval,
            catch_up_events=args.catch_up,
            settle=args.settle,
        )


async def run_jobs(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.latency_samples < 1:
        raise SystemExit("--jobs and --latency-samples must be at least 1")
    if not args.no_peer and importlib.util.find_spec("procrastinate") is None:
        raise SystemExit("the peer needs procrastinate: install helix[bench], or pass --no-peer")
    settings = Settings.from_env()
    count, samples = args.jobs, args.latency_samples
    async with database_url(settings) as server:
        async with scratch_database(server) as url:
            ours = await jobs.run_helix(url, settings, jobs=count, samples=samples)
        peer = None
        if not args.no_peer:
            async with scratch_database(server) as url:
                peer = await jobs.run_peer(url, jobs=count, samples=samples)
    jobs.report(ours, peer, count, samples)
    return 0


async def run_output(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    async with database_url(settings) as server, scratch_database(server) as url:
        return await output.run(url, settings, lines=args.lines, runs=args.runs)
