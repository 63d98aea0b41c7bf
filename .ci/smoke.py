"""Smoke test of an installed Helix, run with the Python of the venv it is installed in, from a
directory outside the source tree so that nothing is imported from a checkout: on an empty
embedded PostgreSQL, `helix migrate`, `helix serve`, one project with one shell phase executed
through the REST API with the admin key serve prints, its output checked, and a SIGTERM that
ends serve with exit code 0. Standard library only."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

TIMEOUT = 60.0
HELIX = str(Path(sys.executable).with_name("helix"))


def fail(message: str) -> NoReturn:
    raise SystemExit(f"smoke: {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, key: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def expect(status: int, got: tuple[int, Any], what: str) -> Any:
    if got[0] != status:
        fail(f"{what}: expected {status}, got {got[0]} {got[1]}")
    return got[1]


class Serve:
    """`helix serve` with its stdout read line by line on a thread of its own."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.proc = subprocess.Popen(
            [HELIX, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            shown = line.split(":", 1)[0] + ": ..." if "API key:" in line else line.rstrip()
            print(f"  serve| {shown}", flush=True)
            self.lines.put(line.strip())
        self.lines.put(None)

    def wait_for(self, marker: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                fail(f"helix serve ended (code {self.proc.wait()}) before printing {marker!r}")
            if marker in line:
                return line
        fail(f"helix serve did not print {marker!r} within {TIMEOUT:.0f} s")


def run_job(base: str, key: str) -> None:
    project = {"name": "smoke", "phases": [{"name": "hi", "command": ["sh", "-c", "echo hi"]}]}
    created = expect(201, call(f"{base}/api/v1/projects", key, "POST", project), "create")
    project_id = created["id"]
    expect(200, call(f"{base}/api/v1/projects/{project_id}/ready", key, "POST"), "ready")
    queued = expect(202, call(f"{base}/api/v1/projects/{project_id}/execute", key, "POST"), "run")
    job_id = queued["job_id"]
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        job = expect(200, call(f"{base}/api/v1/jobs/{job_id}", key), "job")
        if job["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.2)
    else:
        fail(f"job {job_id} did not finish within {TIMEOUT:.0f} s: {job}")
    if job["status"] != "completed":
        fail(f"job {job_id} ended {job['status']}: {job}")
    output = expect(200, call(f"{base}/api/v1/jobs/{job_id}/output", key), "output")
    lines = [line["line"] for line in output["items"]]
    if lines != ["hi"]:
        fail(f"job {job_id} printed {lines!r}, expected ['hi']")
    print(f"smoke: job {job_id} completed and printed {lines!r}", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="helix-smoke-") as work:
        # As root the cluster and the phases run as system users of their own, which must be
        # able to pass through to the data dir (a temporary directory is made 0700).
        os.chmod(work, 0o711)
        os.chdir(work)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
        env["HELIX_DATA_DIR"] = str(Path(work) / "data")

        migrate = subprocess.run(
            [HELIX, "migrate"], env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
        print(f"smoke: helix migrate exited {migrate.returncode}: {migrate.stdout.strip()}")
        if migrate.returncode != 0:
            fail(f"helix migrate failed: {migrate.stderr}")

        port = free_port()
        serve = Serve(env, port)
        try:
            key = serve.wait_for("admin API key:").split(":", 1)[1].strip()
            serve.wait_for(f"serving on http://127.0.0.1:{port}")
            run_job(f"http://127.0.0.1:{port}", key)
            serve.proc.send_signal(signal.SIGTERM)
            code = serve.proc.wait(timeout=TIMEOUT)
        finally:
            if serve.proc.poll() is None:
                serve.proc.kill()
                serve.proc.wait()
        if code != 0:
            fail(f"helix serve exited {code} on SIGTERM")
        print("smoke: helix serve stopped on SIGTERM with exit code 0")


if __name__ == "__main__":
    main()
