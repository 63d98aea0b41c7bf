"""`helix serve`: the database (embedded unless configured), migrations, the log node, the API
and the background roles, in one process, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import secrets
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
from aiohttp import web

from helix import migrate
from helix.api.app import create_app, create_probe_app
from helix.auth import passwords
from helix.auth.accounts import Accounts
from helix.auth.sealing import parse_keys
from helix.bootstrap import Components, LogNode
from helix.cli.context import database_url
from helix.cli.local_worker import CALLER as SERVE_CALLER
from helix.cli.local_worker import LocalWorker
from helix.config import Settings
from helix.services import templates
from helix.services.reaper import LeaseReaper
from helix.system_users import private_dir
from helix.webhooks import Endpoints, WebhookRoles
from helix.worker.isolation import IsolationError, PhaseUser
from projections.runner import ProjectionRunner

log = logging.getLogger(__name__)


class PortInUse(Exception):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is in use")


class BackgroundRole(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


ROLES = ("api", "sequencer", "projections", "webhooks", "reaper")


def parse_roles(text: str) -> frozenset[str]:
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = roles - set(ROLES)
    if unknown or not roles:
        raise argparse.ArgumentTypeError(
            f"roles are a comma-separated choice of {', '.join(ROLES)}"
        )
    return roles


def background_roles(
    node: LogNode,
    settings: Settings,
    roles: frozenset[str] = frozenset(ROLES),
    *,
    endpoints: Endpoints | None = None,
) -> list[BackgroundRole]:
    """The roles that run beside the API, started in order after the node and stopped in
    reverse order before it (the webhook roles with the process's endpoint registry, when
    given). The sequencer runs inside the LogNode itself; every role's loops run under the
    node's supervisor, which restarts them on any error and reports their states."""
    found: list[BackgroundRole] = []
    supervisor = node.supervisor
    if "projections" in roles:
        found.append(
            ProjectionRunner(
                node.store,
                batch_size=settings.projection_batch_size,
                poll_interval=settings.projection_poll_interval,
                supervisor=supervisor,
            )
        )
    if "webhooks" in roles:
        found.append(WebhookRoles(node.store, settings, endpoints=endpoints, supervisor=supervisor))
    if "reaper" in roles:
        found.append(LeaseReaper(node.store, settings, supervisor=supervisor))
    return found


def register(commands: Any) -> None:
    p = commands.add_parser(
        "serve",
        help="run Helix: database, migrations, API, sequencer and background roles",
        description="Start every role in one process. Without HELIX_DATABASE_URL an embedded "
        "PostgreSQL runs in HELIX_DATA_DIR (default ./.helix). On a database with no users it "
        "creates the user 'admin' and prints a one-time admin API key and password (the "
        "password is HELIX_ADMIN_PASSWORD when set, and then not printed). Ctrl-C or SIGTERM stops "
        "accepting requests, finishes those in flight, then stops the background roles, the "
        "sequencer and the database.",
    )
    p.add_argument("--host", help="address to listen on (env HELIX_HOST, default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        help="port to listen on (env HELIX_PORT, default 8100): the API, or on a node without "
        "the api role only /healthz, /readyz and /metrics",
    )
    p.add_argument(
        "--role",
        type=parse_roles,
        default=frozenset(ROLES),
        help="comma-separated roles to run in this process: api (stateless HTTP), sequencer "
        "(leadership fails over between nodes), projections, webhooks (delivery workers scale "
        "out), reaper (expires lost job leases, marks silent workers offline); default: all",
    )
    p.add_argument(
        "--no-worker",
        dest="worker",
        action="store_false",
        help="do not run the in-process worker (by default one with the `shell` capability "
        "runs beside the API, so that executing a project works out of the box)",
    )
    p.set_defaults(handler=run_serve)


async def run_serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    changes: dict[str, Any] = {}
    if args.host:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    settings = attrs.evolve(settings, **changes)
    try:
        templates.load(settings.phase_templates_file)
        if settings.secrets_keys:
            parse_keys(settings.secrets_keys)
    except ValueError as exc:  # a TemplateError, or a HELIX_SECRETS_KEY that is not a key
        print(f"helix serve: {exc}", file=sys.stderr)
        return 2
    if settings.admin_password is not None:
        problem = passwords.password_problem(settings.admin_password, settings.password_min_length)
        if problem:
            print(f"helix serve: HELIX_ADMIN_PASSWORD: {problem}", file=sys.stderr)
            return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Workspaces (and the embedded server's files) live here.
    private_dir(settings.data_dir)
    async with database_url(settings) as url:
        await migrate.upgrade(url)
        try:
            await serve(url, settings, stop, args.role, worker=args.worker and "api" in args.role)
        except IsolationError as exc:
            print(f"helix serve: the in-process worker cannot run phases: {exc}", file=sys.stderr)
            return 2
        except PortInUse as exc:
            print(f"helix: {exc}", file=sys.stderr)
            return 1
    return 0


def _worker_line(user: PhaseUser, settings: Settings) -> str:
    line = "An in-process worker runs phases with the `shell` capability"
    if settings.agent_command is not None:
        # The program only: the rest of the line may carry what a log should not.
        program = shlex.quote(settings.agent_command[0])
        line = (
            "An in-process worker runs phases with the `shell` capability, and phases without "
            f"a command with the agent command ({program} …)"
        )
    if user.switch:
        return f"{line}, as the unprivileged user {user.name}."
    return f"{line}, as {user.name}, the server's own user: they are not isolated from it."


def _loopback_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


async def serve(
    url: str,
    settings: Settings,
    stop: asyncio.Event,
    roles: frozenset[str] = frozenset(ROLES),
    *,
    worker: bool = False,
) -> None:
    node = LogNode(url, settings, sequencer="sequencer" in roles)
    await node.start()
    started: list[BackgroundRole] = []
    runner: web.AppRunner | None = None
    local: LocalWorker | None = None
    components: Components | None = None
    try:
        components = await Components.start(node, settings)
        await _first_admin(components.accounts, settings.admin_password)
        if "api" in roles:
            app = create_app(node, settings, components)
            app.on_shutdown.append(_ending_long_polls(components))
        else:
            app = create_probe_app(node, settings)
        # The port first: one in use stops the start before any role has begun its work.
        runner = await _listen(app, settings)
        for role in background_roles(node, settings, roles, endpoints=components.endpoints):
            await role.start()
            started.append(role)
        if "api" in roles:
            print(f"Helix is serving on http://{settings.host}:{settings.port}", flush=True)
            if worker:
                local = LocalWorker(components.accounts, settings, _loopback_url(settings))
                await local.start()
                print(_worker_line(local.phase_user, settings), flush=True)
        else:
            print(
                f"Helix is running the roles: {', '.join(sorted(roles))}; its probes are on "
                f"http://{settings.host}:{settings.port}",
                flush=True,
            )
        await stop.wait()
        log.warning("shutting down")  # a log line, in HELIX_LOG_FORMAT like every other
    finally:
        # Order matters: the in-process worker stops while the API still answers it; then no
        # new requests and in-flight ones finished (their appends committed) before the roles,
        # then the sequencer positions what was committed, then the pool.
        if local is not None:
            with contextlib.suppress(Exception):
                await local.stop()
        if runner is not None:
            await runner.cleanup()
        for role in reversed(started):
            with contextlib.suppress(Exception):
                await role.stop()
        if components is not None:
            await components.stop()
        await node.stop()


async def _listen(app: web.Application, settings: Settings) -> web.AppRunner:
    """Serve `app` on the configured address; a port in use is `PortInUse`."""
    runner = web.AppRunner(
        app, shutdown_timeout=settings.shutdown_timeout, access_log=None, handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(settings.host, settings.port) from None
        raise
    return runner


def _ending_long_polls(components: Components) -> Callable[[web.Application], Awaitable[None]]:
    """Once the server stops accepting requests, waiting claims answer at once (no job) and
    waiting job reads with the job as it stands: the requests still in flight are then only
    the short ones, and the stop takes no longer than they do."""

    async def end(_: web.Application) -> None:
        components.services.workers.stop_waiting()
        components.services.queries.stop_waiting()

    return end


async def _first_admin(accounts: Accounts, password: str | None) -> None:
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(18)
    created = await accounts.ensure_first_admin(password=password, caller=SERVE_CALLER)
    if created is not None:
        _, key = created
        print("Created the user 'admin'. Its API key, shown only this once:", flush=True)
        print(f"admin API key: {key}", flush=True)
        if generated:
            print(f"admin password: {password}", flush=True)
        else:
            print("admin password: the one in HELIX_ADMIN_PASSWORD", flush=True)
