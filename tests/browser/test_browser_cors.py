"""A page on another origin uses Helix from a real, headless Chromium (driven by selenium): with
fetch it creates and executes a project and mints a stream token, then follows the job with
EventSource until the job is done and the browser stops reconnecting. A page on an origin that
is not allowed is blocked by the browser and changes nothing.

The API is the app on a real TCP port, the page a static file served by a small http.server on
another port (`127.0.0.1` is the allowed origin; `localhost`, the same server under another
name, is not). Selenium blocks, so its calls run in threads while the event loop serves."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestServer
from selenium import webdriver

from helix.api.app import create_app
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.services import Services
from tests.browser.conftest import in_thread
from tests.integration.fixtures import Caller
from tests.integration.streams.streams_support import run_job

HERE = Path(__file__).parent
WITHIN = 30.0  # seconds for the page to get somewhere


@pytest.fixture
def page_port() -> Iterator[int]:
    """The page's own server: this directory, on a port of its own, until the test ends."""
    handler = functools.partial(_QuietHandler, directory=str(HERE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
async def api(node: LogNode, settings: Settings, page_port: int) -> Any:
    """The API on a real port, allowing the page's origin (read as the operator sets it), with
    a short `retry:` so the browser reconnects soon after `done`."""
    allowed = Settings.from_env({"HELIX_CORS_ORIGINS": f"http://127.0.0.1:{page_port}"})
    served = attrs.evolve(settings, cors_origins=allowed.cors_origins, stream_retry_ms=200)
    app = create_app(node, served)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def open_page(
    browser: webdriver.Chrome, host: str, port: int, api: Any, key: str, **more: str
) -> None:
    query = urlencode({"api": str(api.make_url("")).rstrip("/"), "key": key, **more})
    await in_thread(browser.get, f"http://{host}:{port}/page.html?{query}")


async def report_when(
    browser: webdriver.Chrome, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The page's window.report once `ready` holds for it (failing if it does not in time)."""
    report: dict[str, Any] = {}
    async with asyncio.timeout(WITHIN):
        while True:
            found = await in_thread(browser.execute_script, "return window.report || null")
            report = found or {}
            if report and ready(report):
                return report
            await asyncio.sleep(0.1)


async def test_a_page_on_an_allowed_origin_runs_a_project_and_follows_its_job_to_the_end(
    browser: webdriver.Chrome,
    api: Any,
    page_port: int,
    services: Services,
    user: Caller,
    make_caller: Callable[..., Awaitable[Caller]],
) -> None:
    await open_page(browser, "127.0.0.1", page_port, api, user.key)
    started = await report_when(browser, lambda r: "job_id" in r or "blocked" in r)
    assert "blocked" not in started, started
    await run_job(services, uuid.UUID(started["job_id"]))  # a worker runs it
    report = await report_when(browser, lambda r: bool(r.get("closed")))
    await asyncio.sleep(1)  # were the browser still reconnecting, it would have by now
    state = await in_thread(browser.execute_script, "return window.report.source.readyState")
    after = await in_thread(browser.execute_script, "return window.report")
    console = await in_thread(browser.get_log, "browser")

    created = report["created"]
    assert created["status"] == 201
    assert created["body"]["name"] == "from a page"
    assert created["request_id"]  # the response headers the page needs are readable
    assert created["location"].endswith(f"/api/v1/projects/{created['body']['id']}")
    assert created["rate_limit"] == "600"
    assert report["listed"]["status"] == 200 and int(report["listed"]["position"]) > 0
    assert report["executed"]["status"] == 202
    assert report["token_status"] == 201
    types = [event["type"] for event in report["events"]]
    assert types[0] == "job.queued" and "caught_up" in types
    assert types[-1] == "job.completed"
    assert "job.phase_output" in types
    # Done once: the reconnect after it (with Last-Event-ID) was 204, so the browser stopped.
    assert report["done"] == 1
    assert report["done_data"]["job_id"] == started["job_id"]
    assert int(report["done_data"]["position"]) == int(report["events"][-1]["id"])
    assert report["opens"] == 1
    assert state == 2  # EventSource.CLOSED
    assert (after["opens"], after["done"]) == (1, 1)
    assert [e for e in report["errors"] if e["data"] is not None] == []  # no `event: error`
    assert [entry for entry in console if entry["level"] == "SEVERE"] == []


async def test_a_page_on_an_allowed_origin_reads_the_error_envelopes_it_is_given(
    browser: webdriver.Chrome, api: Any, page_port: int, user: Caller
) -> None:
    await open_page(browser, "127.0.0.1", page_port, api, user.key, mode="errors")
    report = await report_when(browser, lambda r: bool(r.get("finished")) or "blocked" in r)
    console = await in_thread(browser.get_log, "browser")

    assert "blocked" not in report, report
    for name, status, code in [
        ("missing", 404, "NOT_FOUND"),
        ("anonymous", 401, "UNAUTHORIZED"),
        ("bad", 422, "VALIDATION_ERROR"),
    ]:
        seen = report[name]
        assert (seen["status"], seen["body"]["error"]["code"]) == (status, code)
        assert seen["body"]["request_id"] == seen["request_id"]
    # The browser notes each failed status; nothing else, and nothing about CORS.
    severe = [entry["message"] for entry in console if entry["level"] == "SEVERE"]
    assert len(severe) == 3 and all("Failed to load resource" in m for m in severe), severe


async def test_a_page_on_another_origin_is_blocked_by_the_browser_and_changes_nothing(
    browser: webdriver.Chrome, api: Any, page_port: int, user: Caller
) -> None:
    await open_page(browser, "localhost", page_port, api, user.key)
    report = await report_when(browser, lambda r: "blocked" in r or "job_id" in r)
    console = await in_thread(browser.get_log, "browser")
    async with (
        aiohttp.ClientSession() as session,
        session.get(api.make_url("/api/v1/projects"), headers=user.headers) as resp,
    ):
        projects = await resp.json()

    assert report["blocked"].startswith("TypeError")  # fetch rejected: no answer to read
    assert "created" not in report
    assert any("CORS" in entry["message"] for entry in console)
    assert projects["items"] == []  # the preflight failed, so the POST was never sent
