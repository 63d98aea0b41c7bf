"""`helix projects …`, `helix jobs …` and `helix keys list`: a person's commands, through the
API of a running server (with `helix.client`), where `helix users` and the other `helix keys`
actions work on the database directly.

Each takes `--server` (or HELIX_SERVER) and `--key` (or HELIX_API_KEY), and `--json` to print
the API's JSON instead of text. Exit status: 0 done, 1 the job ended failed or cancelled
(`jobs watch`), 2 a usage error, 3 the server could not be reached, 4 the server refused the
request (its error message is printed, never a traceback). `helix.client` is imported only when
one of these commands runs, so every other command starts without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TextIO

import attrs

if TYPE_CHECKING:
    from helix.client import AsyncClient
    from helix.client.types import Event, Resources

DEFAULT_SERVER = "http://127.0.0.1:8100"
FAILED, USAGE, UNREACHABLE, REFUSED = 1, 2, 3, 4
Action = Callable[["AsyncClient", argparse.Namespace, TextIO], Awaitable["Shown | int"]]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server", help=f"the server's URL (default: HELIX_SERVER, else {DEFAULT_SERVER})"
    )
    common.add_argument("--key", help="an API key or a token (default: HELIX_API_KEY)")
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    return common


def register(commands: Any) -> None:
    common = _common()
    projects = commands.add_parser("projects", help="projects, through the API")
    sub = projects.add_subparsers(dest="projects_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "create",
        parents=[common],
        help="create a project",
        description="Create a project (status draft) with --phase steps, a --phases file, a "
        "--template's phases, or the server's default template.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description")
    p.add_argument("--type", dest="project_type", help="the project type")
    p.add_argument("--template", help="a phase plan template configured on the server")
    p.add_argument(
        "--phase",
        action="append",
        dest="phase_steps",
        metavar="NAME=COMMAND",
        help="a phase that runs COMMAND with sh -c (repeatable, in order)",
    )
    p.add_argument(
        "--phases", metavar="FILE", help="the phase plan as a JSON array ('-': standard input)"
    )
    _action(p, create_project)
    p = sub.add_parser("list", parents=[common], help="list projects, newest first")
    p.add_argument("--status", help="only projects in this status")
    p.add_argument("--type", dest="project_type", help="only projects of this type")
    p.add_argument("--archived", choices=["true", "false", "all"], default="false")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _action(p, list_projects)
    p = sub.add_parser("show", parents=[common], help="show a project")
    p.add_argument("project_id", metavar="PROJECT_ID")
    _action(p, show_project)
    p = sub.add_parser(
        "execute",
        parents=[common],
        help="run a project",
        description="Queue a job for the project (marking a draft ready first) and print it; "
        "with --watch, follow it as `helix jobs watch` does.",
    )
    p.add_argument("project_id", metavar="PROJECT_ID")
    p.add_argument("--start-phase", help="start at this phase")
    p.add_argument("--model", help="the model the job's agent phases use")
    p.add_argument("--watch", action="store_true", help="follow the job until it ends")
    p.add_argument("--output", action="store_true", help="with --watch: its output lines too")
    _action(p, execute_project)
    p = sub.add_parser("cancel", parents=[common], help="cancel a project's current run")
    p.add_argument("project_id", metavar="PROJECT_ID")
    p.add_argument("--reason")
    _action(p, cancel_project)

    jobs = commands.add_parser("jobs", help="jobs, through the API")
    sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    p = sub.add_parser("show", parents=[common], help="show a job with its phases")
    p.add_argument("job_id", metavar="JOB_ID")
    _action(p, show_job)
    p = sub.add_parser(
        "watch",
        parents=[common],
        help="follow a job until it ends",
        description="Follow the job's event stream, printing its status, phases and progress "
        "(--output: its output lines too), and end with its final status: exit 0 if it "
        "completed, 1 if it failed or was cancelled. With --json, one JSON line per event, "
        "then the job.",
    )
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--output", action="store_true", help="print the job's output lines too")
    _action(p, watch_job)
    p = sub.add_parser("logs", parents=[common], help="print a job's output")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--phase", help="only this phase's output")
    p.add_argument("--follow", action="store_true", help="go on printing until the job ends")
    _action(p, job_logs)
    p = sub.add_parser("cancel", parents=[common], help="cancel a job")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--reason")
    _action(p, cancel_job)
    p = sub.add_parser("files", parents=[common], help="list the files a job's phases produced")
    p.add_argument("job_id", metavar="JOB_ID")
    _action(p, list_files)
    p = sub.add_parser(
        "download",
        parents=[common],
        help="save one of a job's files",
        description="Save the stored file at PATH of the job (checked against its sha256) as "
        "--output, by default its own name in the current directory; an existing file is "
        "replaced only with --force.",
    )
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("path", metavar="PATH")
    p.add_argument("-o", "--output", help="where to save it")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    _action(p, download_file)


def add_keys_list(keys: Any) -> None:
    """`helix keys list`, beside the database's `keys create` and `keys revoke`."""
    p = keys.add_parser(
        "list",
        parents=[_common()],
        help="list your API keys, through the API",
        description="List the caller's API keys (by prefix, never the key) from a running server.",
    )
    p.add_argument("--all", action="store_true", help="revoked keys too")
    _action(p, list_keys)


def _action(parser: argparse.ArgumentParser, action: Action) -> None:
    async def handler(args: argparse.Namespace) -> int:
        return await run(args, action)

    parser.set_defaults(handler=handler)


@asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[AsyncClient]:
    from helix.client import AsyncClient

    server = args.server or os.environ.get("HELIX_SERVER") or DEFAULT_SERVER
    key = args.key or os.environ.get("HELIX_API_KEY")
    if not key:
        raise ValueError("an API key is needed: --key or HELIX_API_KEY")
    async with AsyncClient(server, api_key=key) as client:
        yield client


async def run(args: argparse.Namespace, action: Action, out: TextIO | None = None) -> int:
    """`action` with a client for the arguments, its failures as messages and exit codes."""
    from helix.client import ApiError, ConnectionFailed

    try:
        out = out or sys.stdout
        async with _client(args) as client:
            result = await action(client, args, out)
        if isinstance(result, Shown):
            result.write(out, args.json)
            return 0
        return result
    except ApiError as exc:
        where = f" (request {exc.request_id})" if exc.request_id else ""
        print(f"helix: {exc.code}: {exc.message}{where}", file=sys.stderr)
        field = exc.details.get("field")
        if field:
            print(f"helix: the field: {field}", file=sys.stderr)
        return REFUSED
    except ConnectionFailed as exc:
        print(f"helix: the server could not be reached: {exc}", file=sys.stderr)
        return UNREACHABLE
    except ValueError as exc:  # a malformed id or argument, before anything was sent
        print(f"helix: {exc}", file=sys.stderr)
        return USAGE


@attrs.frozen
class Shown:
    """What a command shows: the API's JSON (with --json), or its text for a person."""

    value: Any
    text: str

    def write(self, out: TextIO, as_json: bool) -> None:
        text = json.dumps(self.value, indent=2) if as_json else self.text
        out.write(text + "\n" if text else "")


def _table(rows: Iterable[list[str]], header: list[str]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _phases(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    plan: list[dict[str, Any]] = []
    if args.phases:
        try:
            text = sys.stdin.read() if args.phases == "-" else Path(args.phases).read_text()
            loaded = json.loads(text)
        except OSError as exc:
            raise ValueError(f"--phases cannot be read: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"--phases is not JSON: {exc}") from None
        if not isinstance(loaded, list):
            raise ValueError("--phases must hold a JSON array of phases")
        plan.extend(loaded)
    for step in args.phase_steps or []:
        name, sep, command = step.partition("=")
        if not sep or not name or not command:
            raise ValueError(f"--phase takes NAME=COMMAND, not {step!r}")
        plan.append({"name": name, "command": ["sh", "-c", command]})
    return plan or None


# --- projects -------------------------------------------------------------------------------


async def create_project(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown:
    project = await client.create_project(
        args.name,
        description=args.description,
        project_type=args.project_type,
        template=args.template,
        phases=_phases(args),
    )
    phases = ", ".join(p["name"] for p in project["phases"]) or "none"
    return Shown(
        project, f"{project['id']}  {project['status']}  {project['name']}  phases: {phases}"
    )


async def list_projects(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown:
    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    archived: Any = "all" if args.archived == "all" else args.archived == "true"
    found = client.list_projects(
        status=args.status,
        project_type=args.project_type,
        archived=archived,
        page_size=min(args.limit, 200),
    )
    projects = [p async for p in _first(found, args.limit)]
    rows = [[p["id"], p["status"], p["updated_at"], p["name"]] for p in projects]
    return Shown(projects, _table(rows, ["ID", "STATUS", "UPDATED", "NAME"]))


async def _first(items: AsyncIterator[Any], limit: int) -> AsyncIterator[Any]:
    count = 0
    async for item in items:
        if count == limit:
            break
        count += 1
        yield item


async def show_project(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown:
    project = await client.get_project(args.project_id)
    text = [
        f"{project['name']}  ({project['id']})",
        f"status: {project['status']}{'  (archived)' if project['archived'] else ''}",
    ]
    if project["description"]:
        text.append(f"description: {project['description']}")
    text.append(f"messages: {project['message_count']}   updated: {project['updated_at']}")
    text.append("phases:")
    for phase in project["phases"]:
        command = " ".join(phase["command"]) if phase["command"] else "(agent)"
        text.append(f"  {phase['name']}: {command}")
    latest = project.get("latest_job")
    if latest:
        text.append(f"latest job: {latest['id']}  {latest['status']}  {latest['progress']}%")
    return Shown(project, "\n".join(text))


async def execute_project(
    client: AsyncClient, args: argparse.Namespace, out: TextIO
) -> Shown | int:
    project = await client.get_project(args.project_id)
    if project["status"] in ("draft", "discussing"):
        await client.ready(args.project_id)
    run = await client.execute(args.project_id, start_phase=args.start_phase, model=args.model)
    for warning in run.get("warnings", []):
        print(f"helix: warning: {warning['message']}", file=sys.stderr)
    if not args.watch:
        return Shown(run, f"{run['job_id']}  {run['status']}")
    if not args.json:
        out.write(f"job {run['job_id']} {run['status']}\n")
    return await _watch(client, run["job_id"], args, out)


async def cancel_project(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown:
    run = await client.cancel(args.project_id, reason=args.reason)
    pending = " (cancel requested; the worker stops it)" if run.get("cancel_requested") else ""
    return Shown(run, f"{run['job_id']}  {run['status']}{pending}")


# --- jobs -----------------------------------------------------------------------------------


async def show_job(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown:
    job = await client.get_job(args.job_id)
    text = [
        f"job {job['id']}  (project {job['project_id']})",
        f"status: {job['status']}   progress: {job['progress']}%",
    ]
    if job["error"]:
        text.append(f"error: {job['error']}")
    text.append(f"attempt: {job['attempt']}/{job['max_attempts']}   worker: {job['worker_id']}")
    total = job.get("resources")
    if total is not None:
        text.append(f"resources: {_resources(total)}")
    for phase in job.get("phases", []):
        exit_code = "" if phase["exit_code"] is None else f"  exit {phase['exit_code']}"
        used = "" if phase["resources"] is None else f"  ({_resources(phase['resources'])})"
        text.append(f"  {phase['ordinal']}. {phase['name']}: {phase['status']}{exit_code}{used}")
    return Shown(job, "\n".join(text))


def _resources(used: Resources) -> str:
    """CPU seconds, peak memory and bytes read and written, in MiB."""
    mib = 2**20
    return (
        f"cpu {used['cpu_s']:.2f}s, peak {used['max_rss_bytes'] / mib:.1f} MiB, "
        f"read {used['read_bytes'] / mib:.1f} MiB, written {used['write_bytes'] / mib:.1f} MiB"
    )


async def cancel_job(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown:
    job = await client.cancel_job(args.job_id, reason=args.reason)
    pending = " (cancel requested)" if job["cancel_requested"] else ""
    return Shown(job, f"{job['id']}  {job['status']}{pending}")


async def list_files(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown:
    files = [f async for f in client.list_files(args.job_id)]
    rows = [
        [
            f["path"],
            str(f["size"]),
            f"{f['phase']}#{f['attempt']}",
            "stored" if f["stored"] else f"not stored: {f['reason']}",
        ]
        for f in files
    ]
    return Shown(files, _table(rows, ["PATH", "BYTES", "PHASE", "STATE"]))


def _download_target(args: argparse.Namespace) -> Path:
    target = Path(args.output or PurePosixPath(args.path).name)
    if target.exists() and not args.force:
        raise ValueError(f"{target} exists: --force replaces it")
    return target


async def download_file(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown:
    saved = await client.download_file(args.job_id, args.path, _download_target(args))
    size = saved.stat().st_size
    return Shown({"path": args.path, "saved": str(saved), "size": size}, f"{saved}  {size} bytes")


async def watch_job(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    return await _watch(client, args.job_id, args, out)


async def _watch(client: AsyncClient, job_id: str, args: argparse.Namespace, out: TextIO) -> int:
    from helix.client import TERMINAL_STATUSES

    job = await client.get_job(job_id)
    names = [phase["name"] for phase in job.get("phases", [])]
    progress = job["progress"]
    async for event in client.stream(job_id):
        if args.json:
            out.write(json.dumps(event) + "\n")
        else:
            progress = event["data"].get("percent", progress)
            line = _describe(event, names, args.output)
            if line:
                out.write(f"[{progress:>3}%] {line}\n")
        out.flush()
    job = await client.get_job(job_id)
    if job["status"] not in TERMINAL_STATUSES:  # the stream ended early: wait for the end
        job = await client.wait_job(job_id)
    if args.json:
        out.write(json.dumps(job) + "\n")
    else:
        error = f": {job['error']}" if job["error"] else ""
        out.write(f"job {job['id']} {job['status']}{error}\n")
    return 0 if job["status"] == "completed" else FAILED


def _describe(event: Event, names: list[str], output: bool) -> str | None:
    """One line for a person about an event of the job, or None for one not worth it."""
    data, kind = event["data"], event["type"].removeprefix("job.")
    phase = data.get("phase")
    match kind:
        case "queued" | "started" | "completed" | "cancelled" | "paused" | "resumed":
            return f"job {kind}"
        case "claimed":
            return f"claimed by worker {data.get('worker_id')} (attempt {data.get('attempt')})"
        case "failed":
            return f"job failed: {data.get('error')}"
        case "phase_started":
            where = f" ({names.index(phase) + 1}/{len(names)})" if phase in names else ""
            return f"phase {phase} started{where}"
        case "phase_completed":
            return f"phase {phase} completed (exit {data.get('exit_code')})"
        case "phase_failed":
            return f"phase {phase} failed (exit {data.get('exit_code')}): {data.get('error')}"
        case "phase_skipped":
            return f"phase {phase} skipped: {data.get('reason')}"
        case "progress":
            return "progress"
        case "waiting":
            return f"waiting: {data.get('reason')}"
        case "cancel_requested" | "pause_requested" | "stuck" | "retry_scheduled":
            return kind.replace("_", " ")
        case "phase_output" if output:
            return "\n".join(f"       {phase}| {line}" for line in data.get("lines", [])).lstrip()
    return None


async def job_logs(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown | int:
    if args.follow:
        # The job's stream replays it from its start: every line once, then the live ones.
        async for event in client.stream(args.job_id, types=["job.phase_output"]):
            if args.phase and event["data"].get("phase") != args.phase:
                continue
            for line in event["data"].get("lines", []):
                item = {"phase": event["data"].get("phase"), "line": line}
                out.write((json.dumps(item) if args.json else line) + "\n")
            out.flush()
        return 0
    lines = [line async for line in client.output(args.job_id, phase=args.phase)]
    return Shown(lines, "\n".join(line["line"] for line in lines))


# --- keys -----------------------------------------------------------------------------------


async def list_keys(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> Shown:
    keys = [k async for k in client.list_keys(include_revoked=args.all)]
    rows = [
        [
            k["id"],
            k["prefix"],
            "revoked" if k["revoked_at"] else "active",
            k["last_used_at"] or "never",
            k["name"],
        ]
        for k in keys
    ]
    return Shown(keys, _table(rows, ["ID", "PREFIX", "STATE", "LAST USED", "NAME"]))
