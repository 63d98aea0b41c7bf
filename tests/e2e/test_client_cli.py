"""`helix projects|jobs|keys list` as a person runs them against a real `helix serve`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.processes import run_helix
from tests.e2e.served import Served, served

__all__ = ["served"]


def _env(served: Served, key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
    env.update(HELIX_SERVER=served.url, HELIX_API_KEY=key or served.admin_key)
    return env


async def _helix(served: Served, *args: str, key: str | None = None) -> tuple[int, str]:
    return await run_helix(_env(served, key), *args)


async def test_a_person_creates_runs_and_watches_a_shell_project_to_its_end(
    served: Served,
) -> None:
    code, out = await _helix(
        served, "projects", "create", "greeter", "--phase", "greet=echo hello from the cli",
        "--phase", "bye=echo bye", "--json",
    )  # fmt: skip
    assert code == 0, out
    project = json.loads(out)
    assert project["status"] == "draft"
    assert [p["name"] for p in project["phases"]] == ["greet", "bye"]

    code, out = await _helix(served, "projects", "list", "--json")
    assert code == 0, out
    assert [p["id"] for p in json.loads(out)] == [project["id"]]
    code, out = await _helix(served, "projects", "list")
    assert code == 0 and out.splitlines()[0].split() == ["ID", "STATUS", "UPDATED", "NAME"]
    assert project["id"] in out and "greeter" in out
    code, out = await _helix(served, "projects", "show", project["id"])
    assert code == 0 and "greeter" in out and "greet: sh -c echo hello from the cli" in out

    code, out = await _helix(served, "projects", "execute", project["id"], "--json")
    assert code == 0, out
    run = json.loads(out)
    assert run["project_id"] == project["id"] and run["status"] == "queued"

    code, out = await _helix(served, "jobs", "watch", run["job_id"])
    assert code == 0, out
    lines = out.splitlines()
    assert "phase greet started (1/2)" in out and "phase bye completed (exit 0)" in out
    assert lines[-1] == f"job {run['job_id']} completed"
    assert "[100%]" in out

    code, out = await _helix(served, "jobs", "watch", run["job_id"], "--json")
    assert code == 0, out
    documents = [json.loads(line) for line in out.splitlines()]
    assert documents[-1]["id"] == run["job_id"] and documents[-1]["status"] == "completed"
    assert documents[-2]["type"] == "job.completed"

    code, out = await _helix(served, "jobs", "logs", run["job_id"])
    assert code == 0 and out.splitlines() == ["hello from the cli", "bye"]
    code, out = await _helix(served, "jobs", "logs", run["job_id"], "--phase", "bye", "--json")
    assert code == 0 and [line["line"] for line in json.loads(out)] == ["bye"]
    code, out = await _helix(served, "jobs", "logs", run["job_id"], "--follow")
    assert code == 0 and out.splitlines() == ["hello from the cli", "bye"]
    code, out = await _helix(served, "jobs", "show", run["job_id"], "--json")
    shown = json.loads(out)
    assert code == 0 and shown["status"] == "completed"
    # The local worker measured each phase's process: what it read (its program's libraries)
    # and the line it printed. (An echo is too brief and small for its memory to be measured.)
    for phase in shown["phases"]:
        assert phase["resources"]["read_bytes"] > 0, phase
        assert phase["resources"]["write_bytes"] >= len("bye\n"), phase
    assert shown["resources"]["cpu_s"] == pytest.approx(
        sum(p["resources"]["cpu_s"] for p in shown["phases"])
    )
    code, out = await _helix(served, "jobs", "show", run["job_id"])
    assert code == 0 and "status: completed" in out and "2. bye: completed  exit 0  (cpu " in out
    assert "resources: cpu " in out

    code, out = await _helix(served, "keys", "list", "--json")
    assert code == 0, out
    keys = json.loads(out)
    assert len(keys) == 1 and served.admin_key.startswith(keys[0]["prefix"])
    code, out = await _helix(served, "keys", "list")
    assert code == 0 and keys[0]["prefix"] in out and "active" in out


async def test_a_failing_job_ends_watch_with_a_nonzero_status(served: Served) -> None:
    code, out = await _helix(
        served, "projects", "create", "breaks", "--phase", "boom=echo about to fail; exit 3",
        "--json",
    )  # fmt: skip
    assert code == 0, out
    project = json.loads(out)
    code, out = await _helix(served, "projects", "execute", project["id"], "--watch")
    assert code == 1, out
    assert "phase boom failed (exit 3)" in out
    assert out.splitlines()[-1].startswith("job ") and " failed" in out.splitlines()[-1]

    slow = "nap=sleep 30"
    code, out = await _helix(served, "projects", "create", "naps", "--phase", slow, "--json")
    assert code == 0, out
    napping = json.loads(out)
    code, out = await _helix(served, "projects", "execute", napping["id"], "--json")
    assert code == 0, out
    job_id = json.loads(out)["job_id"]
    code, out = await _helix(served, "projects", "cancel", napping["id"], "--json")
    assert code == 0 and json.loads(out)["job_id"] == job_id
    code, out = await _helix(served, "jobs", "watch", job_id)
    assert code == 1 and out.splitlines()[-1] == f"job {job_id} cancelled"
    code, out = await _helix(served, "jobs", "cancel", job_id, "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"


async def test_refusals_are_messages_and_exit_codes_not_tracebacks(served: Served) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"X-API-Key": "hx_wrong"}
        async with session.get(f"{served.url}/api/v1/users/me", headers=headers) as resp:
            message = (await resp.json())["error"]["message"]
    code, out = await _helix(served, "projects", "list", key="hx_wrong")
    assert code == 4
    assert f"helix: UNAUTHORIZED: {message} (request req_" in out
    assert "Traceback" not in out

    code, out = await _helix(served, "jobs", "show", "00000000-0000-4000-8000-000000000000")
    assert code == 4 and "helix: NOT_FOUND: job not found" in out and "Traceback" not in out
    code, out = await _helix(served, "jobs", "show", "not-a-uuid")
    assert code == 2 and "UUID" in out and "Traceback" not in out
    code, out = await _helix(served, "projects", "create", "", "--json")
    assert code == 4 and "VALIDATION_ERROR" in out and "Traceback" not in out
    code, out = await _helix(served, "projects", "create", "x", "--phase", "no-equals-sign")
    assert code == 2 and "NAME=COMMAND" in out

    env = {k: v for k, v in _env(served).items() if k != "HELIX_API_KEY"}
    code, out = await run_helix(env, "projects", "list")
    assert code == 2 and "an API key is needed" in out
    env = _env(served)
    env["HELIX_SERVER"] = "http://127.0.0.1:9"
    code, out = await run_helix(env, "projects", "list")
    assert code == 3 and "could not be reached" in out and "Traceback" not in out


async def test_a_jobs_files_are_listed_and_downloaded(served: Served, tmp_path: Path) -> None:
    write = "out=mkdir -p out; seq 1 3000 > out/numbers.txt; echo '::helix file out/numbers.txt'"
    code, out = await _helix(served, "projects", "create", "files", "--phase", write, "--json")
    assert code == 0, out
    project = json.loads(out)
    code, out = await _helix(served, "projects", "execute", project["id"], "--watch", "--json")
    assert code == 0, out
    job_id = json.loads(out.splitlines()[-1])["id"]

    code, out = await _helix(served, "jobs", "files", job_id)
    assert code == 0 and out.splitlines()[0].split() == ["PATH", "BYTES", "PHASE", "STATE"]
    expected = "".join(f"{i}\n" for i in range(1, 3001))
    assert out.splitlines()[1].split() == ["out/numbers.txt", str(len(expected)), "out#1", "stored"]
    target = tmp_path / "saved" / "n.txt"
    target.parent.mkdir()
    args = ("jobs", "download", job_id, "out/numbers.txt", "-o", str(target))
    code, out = await _helix(served, *args)
    assert code == 0 and target.read_text() == expected, out
    code, out = await _helix(served, *args)
    assert code == 2 and "exists: --force replaces it" in out
    target.write_text("stale")
    code, out = await _helix(served, *args, "--force", "--json")
    assert code == 0 and json.loads(out)["size"] == len(expected)
    assert target.read_text() == expected
    code, out = await _helix(
        served, "jobs", "download", job_id, "nothing.txt", "-o", str(target), "--force"
    )
    assert code != 0 and "NOT_FOUND" in out and target.read_text() == expected
