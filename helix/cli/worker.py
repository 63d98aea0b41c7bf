"""`helix worker`: the reference worker, claiming jobs from a server and running their phases."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from helix.config import agent_command, output_filter_patterns
from helix.system_users import PHASE_USER
from helix.worker import ProtocolError, Worker, WorkerConfig
from helix.worker.isolation import IsolationError

DEFAULT_SERVER = "http://127.0.0.1:8100"


def register(commands: Any) -> None:
    p = commands.add_parser(
        "worker",
        help="run a worker that claims jobs and runs their phases' commands",
        description="Registers with a Helix server under a worker's API key, then claims jobs "
        "one at a time and runs each phase's command (as argv, no shell) in the project's "
        "workspace, streaming its output and reporting the files it changed. SIGTERM or "
        "Ctrl-C stops the running phase and exits; the job's lease then expires and it is "
        "retried elsewhere. Killed outright, it takes its running phase with it: a guard process "
        "kills the phase's processes, and a worker started on the same workdir kills whatever a "
        "dead one left there. Started as root, it runs phases as an unprivileged user with a clean "
        "environment. The worker logs its activity at INFO.",
    )
    p.add_argument(
        "--server",
        default=(
            os.environ.get("HELIX_SERVER")
            or os.environ.get("HELIX_SERVER_URL")  # the name it had first, still read
            or DEFAULT_SERVER
        ),
        help=f"the server's URL (env HELIX_SERVER, as for every client command; default "
        f"{DEFAULT_SERVER})",
    )
    p.add_argument(
        "--key",
        help="a worker's API key (default: HELIX_WORKER_KEY, which, unlike an argument, other "
        "local users and phases cannot read in the process list)",
    )
    p.add_argument(
        "--capabilities",
        default="shell",
        help="comma-separated capabilities this worker offers (default shell)",
    )
    p.add_argument(
        "--agent-command",
        help="a command line run (as argv, no shell) for each phase without a command of its "
        "own, e.g. a coding agent's CLI reading HELIX_PROMPT (default: HELIX_AGENT_COMMAND); "
        "offer the capabilities of those phases with --capabilities",
    )
    p.add_argument("--name", default=socket.gethostname(), help="default: the hostname")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(".helix/workspaces"),
        help="each project's workspace is WORKDIR/PROJECT_ID (default ./.helix/workspaces)",
    )
    p.add_argument(
        "--phase-user",
        default=os.environ.get("HELIX_PHASE_USER") or PHASE_USER,
        help="when the worker runs as root, the unprivileged user phases run as, created when "
        f"missing (env HELIX_PHASE_USER, default {PHASE_USER}): this worker's alone, and running "
        "nothing else, since the worker kills every process of it after each phase; as any "
        "other user, phases run as that user",
    )
    p.add_argument(
        "--lines-per-event",
        type=int,
        default=100,
        help="output lines handed on at once (while a report is in flight, more are merged, up "
        "to 1000 a report; default 100)",
    )
    p.add_argument(
        "--flush-interval",
        type=float,
        default=0.5,
        help="seconds after a batch's first line that it is sent even if not full (default 0.5)",
    )
    p.add_argument(
        "--heartbeat-interval", type=float, help="seconds (default: what the server asks for)"
    )
    p.add_argument("--claim-wait", type=int, default=20, help="long-poll seconds, 0..60")
    p.add_argument(
        "--stderr-tail", type=int, default=20, help="stderr lines kept with a failed phase"
    )
    p.add_argument(
        "--kill-grace",
        type=float,
        default=5.0,
        help="seconds between SIGTERM and SIGKILL when stopping a phase (default 5)",
    )
    p.add_argument(
        "--output-filter",
        action="append",
        metavar="REGEX",
        help="drop output lines this regular expression matches; may be repeated (default: "
        "the JSON array in HELIX_OUTPUT_FILTER_PATTERNS)",
    )
    p.add_argument("--once", action="store_true", help="exit after one job")
    p.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    p.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    p.set_defaults(handler=run_worker)


async def run_worker(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("HELIX_WORKER_KEY")
    if not key:
        print("a worker's API key is needed: --key or HELIX_WORKER_KEY", file=sys.stderr)
        return 2
    if args.key:
        print(
            "warning: a key given with --key can be read by every local user, phases included, "
            "in this process's command line; give it in HELIX_WORKER_KEY instead",
            file=sys.stderr,
        )
    try:
        output_filter = args.output_filter or output_filter_patterns(os.environ)
        agent = agent_command(
            {"HELIX_AGENT_COMMAND": args.agent_command} if args.agent_command else os.environ
        )
        config = WorkerConfig(
            server=args.server,
            key=key,
            capabilities=args.capabilities,
            name=args.name,
            workdir=args.workdir,
            phase_user=args.phase_user,
            lines_per_event=args.lines_per_event,
            flush_interval=args.flush_interval,
            heartbeat_interval=args.heartbeat_interval,
            claim_wait=args.claim_wait,
            stderr_tail=args.stderr_tail,
            kill_grace=args.kill_grace,
            output_filter=output_filter,
            agent_command=agent,
            once=args.once,
            max_jobs=args.max_jobs,
        )
    except ValueError as exc:  # SettingError and UnsafePattern among them
        print(f"invalid option: {exc}", file=sys.stderr)
        return 2
    worker_log = logging.getLogger("helix.worker")
    worker_log.setLevel(
        logging.WARNING if args.quiet else min(logging.INFO, logging.getLogger().level)
    )
    return await run(config)


async def run(config: WorkerConfig) -> int:
    """Run a worker until it ends by itself or SIGTERM/SIGINT stops it; the exit status."""
    worker = Worker(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await worker.start()
        except IsolationError as exc:
            print(f"the worker cannot run phases: {exc}", file=sys.stderr)
            return 2
        ended = asyncio.ensure_future(worker.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        await worker.stop()
        try:
            await ended
        except ProtocolError as exc:
            if exc.status in (401, 403):
                print(
                    f"the server refused the worker's key (HTTP {exc.status}: {exc.message}); "
                    "it must be a valid API key of a user with the role worker",
                    file=sys.stderr,
                )
            else:
                print(f"the server refused the worker: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
