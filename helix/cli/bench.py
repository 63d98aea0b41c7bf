"""`helix bench`: measured throughput and latency beside a raw-PostgreSQL baseline."""

from __future__ import annotations

import argparse
from typing import Any

from helix.bench import append, output, stream, webhooks
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
    w = sub.add_parser("webhooks", help="deliveries per second and event-to-delivery latency")
    w.add_argument("--events", type=int, default=2000, help="events per measurement")
    w.add_argument("--latency-samples", type=int, default=200, help="events timed one by one")
    w.set_defaults(handler=run_webhooks)
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


async def run_output(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    async with database_url(settings) as server, scratch_database(server) as url:
        return await output.run(url, settings, lines=args.lines, runs=args.runs)
