"""The dashboard in a real, headless Chromium against a real `helix serve` (its in-process
worker running the shell phases): sign in, create and execute a project, watch its phases and
output arrive live, pause and resume it, open the audit log; a second user sees none of the
first's projects; a server restart in the middle of a job ends with the whole job shown once.

Phases wait on a gate file the test opens, so "live" is observed, not timed. Screenshots of the
main pages are written to `build/screenshots` (or HELIX_SCREENSHOTS)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.browser.conftest import chrome, in_thread
from tests.e2e.processes import HELIX, STARTUP_TIMEOUT, free_port, helix_env, wait_ready

ARTIFACT = "the bytes of a file a phase made"
MAKE_FILE = f"echo {ARTIFACT} > out.txt; echo '::helix file out.txt'"
WITHIN = 60.0  # seconds for the page to get somewhere
PASSWORD = "a dashboard test password"
SCREENSHOTS = Path(os.environ.get("HELIX_SCREENSHOTS", "build/screenshots"))


class HelixServe:
    """`helix serve` on a port of its own, restartable on that port with the same database."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env = env
        self.log = log
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *HELIX, "serve", "--port", str(self.port), env=self.env,
            stdout=self.log.open("ab"), stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, self.url)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), STARTUP_TIMEOUT)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def serve(database_url: str, tmp_path: Path) -> AsyncIterator[HelixServe]:
    env = helix_env(
        database_url,
        tmp_path / "data",
        HELIX_ADMIN_PASSWORD=PASSWORD,
        HELIX_JWT_SECRET="dashboard-test-jwt-secret-" + "5c1d" * 8,
        HELIX_ACCESS_LOG="false",
        HELIX_WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32",
        # The machine's phase user, unless the run names another (two servers cannot share one).
        **{k: v for k, v in os.environ.items() if k == "HELIX_PHASE_USER"},
    )
    server = HelixServe(env, free_port(), tmp_path / "serve.log")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def gate() -> Iterator[Path]:
    """A directory the phases (which may run as an unprivileged user) can read, holding the
    gate file once the test opens it."""
    path = Path(tempfile.mkdtemp(prefix="helix-gate-"))
    path.chmod(0o755)
    try:
        yield path / "open"
    finally:
        (path / "open").unlink(missing_ok=True)
        path.rmdir()


def gated_phases(gate: Path) -> list[dict[str, Any]]:
    wait = f"echo started; while [ ! -e {gate} ]; do sleep 0.1; done; echo released"
    return [
        {"name": "build", "command": ["sh", "-c", wait]},
        {"name": "test", "command": ["sh", "-c", "echo two; echo '::helix progress 80'"]},
        {"name": "ship", "command": ["sh", "-c", f"echo three; {MAKE_FILE}"]},
    ]


async def api(
    server: HelixServe, method: str, path: str, body: Any = None, token: str | None = None
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{server.url}/api/v1{path}", json=body, headers=headers) as r,
    ):
        assert r.status < 300, (r.status, await r.text())
        return await r.json()


async def login_token(server: HelixServe, username: str, password: str) -> str:
    answer = await api(server, "POST", "/auth/login", {"username": username, "password": password})
    return str(answer["token"])


async def until(browser: webdriver.Chrome, check: Callable[[], Any], what: str) -> Any:
    """`check()` (run in a thread) once it is truthy, failing with `what` if it is not in time."""
    try:
        async with asyncio.timeout(WITHIN):
            while True:
                try:
                    found = await in_thread(check)
                except Exception:  # an element replaced as the page re-renders
                    found = None
                if found:
                    return found
                await asyncio.sleep(0.1)
    except TimeoutError:
        await screenshot(browser, "timeout")
        console = await in_thread(browser.get_log, "browser")
        raise AssertionError(f"the page never showed {what}; its console: {console}") from None


async def screenshot(browser: webdriver.Chrome, name: str) -> None:
    def save() -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    await in_thread(save)


def submit(browser: webdriver.Chrome, form_id: str, **fields: str) -> None:
    """Types each value into the form's field of that name, then submits the form."""
    form = browser.find_element(By.ID, form_id)
    for name, value in fields.items():
        form.find_element(By.NAME, name).send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def text_of(browser: webdriver.Chrome, selector: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


async def sign_in(browser: webdriver.Chrome, server: HelixServe, username: str) -> None:
    await in_thread(browser.get, f"{server.url}/")
    await until(browser, lambda: browser.find_elements(By.ID, "login"), "the sign-in form")
    await screenshot(browser, "login")

    await in_thread(lambda: submit(browser, "login", username=username, password=PASSWORD))
    await until(browser, lambda: browser.find_elements(By.ID, "new-project"), "the projects page")


def output_lines(browser: webdriver.Chrome) -> list[str]:
    lines = browser.execute_script(
        "return [...document.querySelectorAll('#output .line')].map(l => l.textContent.trim())"
    )
    return [str(line) for line in lines]


def shown_events(browser: webdriver.Chrome) -> list[int]:
    texts = browser.execute_script(
        "return [...document.querySelectorAll('#events li')].map(l => l.textContent)"
    )
    return [int(str(text).split(" ", 1)[0]) for text in texts]


def job_status(browser: webdriver.Chrome) -> str:
    return text_of(browser, "h1 .badge")


def severe(browser: webdriver.Chrome) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


async def log_positions(server: HelixServe, token: str, job_id: str) -> list[int]:
    page = await api(server, "GET", f"/events?stream_id=job-{job_id}&limit=1000", token=token)
    return [int(event["position"]) for event in page["items"]]


async def test_a_user_signs_in_runs_a_project_watches_it_live_pauses_resumes_and_audits_it(
    browser: webdriver.Chrome, serve: HelixServe, gate: Path, downloads: Path
) -> None:
    await sign_in(browser, serve, "admin")

    phases = json.dumps(gated_phases(gate))
    fields = {"name": "dashboard demo", "description": "made in a browser", "phases": phases}
    await in_thread(lambda: submit(browser, "new-project", **fields))
    await until(browser, lambda: "Mark ready" in browser.page_source, "the new project")
    await in_thread(lambda: browser.find_element(By.XPATH, "//button[.='Mark ready']").click())
    await until(browser, lambda: browser.find_elements(By.ID, "execute"), "the execute form")
    await screenshot(browser, "project")
    await in_thread(
        lambda: browser.find_element(By.CSS_SELECTOR, "#execute button[type=submit]").click()
    )

    # Live: the first phase's first line arrives while the phase is still held at its gate.
    await until(browser, lambda: "started" in " ".join(output_lines(browser)), "live output")
    assert not any("released" in line for line in await in_thread(output_lines, browser))
    assert await in_thread(job_status, browser) == "running"
    statuses = await in_thread(
        browser.execute_script,
        "return Object.fromEntries([...document.querySelectorAll('#timeline li')]"
        ".map(li => [li.dataset.phase, li.dataset.status]))",
    )
    assert statuses == {"build": "running", "test": "pending", "ship": "pending"}

    # Pause: the running phase finishes, then the job holds before the next one.
    await in_thread(lambda: browser.find_element(By.ID, "pause-job").click())
    await until(browser, lambda: "job.pause_requested" in text_of(browser, "#events"), "the pause")
    await in_thread(gate.touch)
    await until(browser, lambda: job_status(browser) == "paused", "the paused job")
    assert any("released" in line for line in await in_thread(output_lines, browser))
    assert not any("two" in line for line in await in_thread(output_lines, browser))
    await screenshot(browser, "job-paused")

    await in_thread(lambda: browser.find_element(By.ID, "resume-job").click())
    await until(browser, lambda: job_status(browser) == "completed", "the completed job")
    await until(
        browser, lambda: text_of(browser, "#stream-state") == "· finished", "the stream's end"
    )
    lines = await in_thread(output_lines, browser)
    assert [line.split("] ", 1)[1] for line in lines] == ["started", "released", "two", "three"]
    assert lines[0].startswith("[build#1 1]")
    progress = await in_thread(
        browser.execute_script,
        "return document.querySelector('[role=progressbar]').getAttribute('aria-valuenow')",
    )
    assert progress == "100"
    token = await login_token(serve, "admin", PASSWORD)
    job_id = (await in_thread(lambda: browser.current_url)).rsplit("/", 1)[1]
    assert await in_thread(shown_events, browser) == await log_positions(serve, token, job_id)

    # The file the last phase made and reported is listed, and downloads as it was written.
    def download() -> bool:
        browser.find_element(By.XPATH, "//*[@id='files']//button[.='Download']").click()
        return True

    await until(browser, download, "a file to download")
    assert "out.txt" in await in_thread(text_of, browser, "#files")
    saved = downloads / "out.txt"
    await until(browser, saved.exists, "the downloaded file")
    assert (await in_thread(saved.read_text)) == ARTIFACT + "\n"
    await screenshot(browser, "job")

    # The audit log shows the pause and the resume, and travels back in time to them.
    await in_thread(lambda: browser.find_element(By.LINK_TEXT, "Audit log").click())
    await until(browser, lambda: "job.resumed" in text_of(browser, "#audit"), "the audit log")
    assert "job.paused" in await in_thread(text_of, browser, "#audit")
    await screenshot(browser, "audit")
    await in_thread(lambda: browser.find_element(By.LINK_TEXT, "Health").click())
    await until(browser, lambda: browser.find_elements(By.ID, "roles"), "the health page")
    assert "sequencer" in await in_thread(text_of, browser, "#roles")
    await screenshot(browser, "health")
    await in_thread(lambda: browser.find_element(By.LINK_TEXT, "Workers").click())
    await until(browser, lambda: browser.find_elements(By.ID, "workers"), "the workers page")
    assert "helix serve" in await in_thread(text_of, browser, "#workers")
    assert await in_thread(severe, browser) == []


async def test_a_second_user_sees_none_of_the_first_users_projects(
    browser: webdriver.Chrome, serve: HelixServe
) -> None:
    admin = await login_token(serve, "admin", PASSWORD)
    mine = await api(serve, "POST", "/projects", {"name": "the admin's secret plan"}, admin)
    await api(
        serve, "POST", "/users", {"username": "bea", "password": PASSWORD, "role": "user"}, admin
    )
    bea = await login_token(serve, "bea", PASSWORD)
    await api(serve, "POST", "/projects", {"name": "bea's own project"}, bea)

    await sign_in(browser, serve, "bea")
    await until(browser, lambda: browser.find_elements(By.ID, "projects"), "bea's projects")
    listed = await in_thread(text_of, browser, "#projects")
    assert "bea's own project" in listed and "secret plan" not in listed
    hidden = "return [...document.querySelectorAll('[data-role=admin]')].map(a => a.hidden)"
    assert await in_thread(browser.execute_script, hidden) == [True, True]  # no operators' pages

    await in_thread(browser.get, f"{serve.url}/#/projects/{mine['id']}")
    await until(browser, lambda: "you may not see it" in browser.page_source, "a not-found message")
    assert "secret plan" not in await in_thread(lambda: browser.page_source)


async def test_a_server_restart_in_the_middle_of_a_job_ends_with_the_whole_job_shown_once(
    browser: webdriver.Chrome, serve: HelixServe, gate: Path
) -> None:
    token = await login_token(serve, "admin", PASSWORD)
    project = await api(
        serve, "POST", "/projects", {"name": "restart", "phases": gated_phases(gate)}, token
    )
    await api(serve, "POST", f"/projects/{project['id']}/ready", None, token)
    run = await api(serve, "POST", f"/projects/{project['id']}/execute", {}, token)

    await sign_in(browser, serve, "admin")
    await in_thread(browser.get, f"{serve.url}/#/jobs/{run['job_id']}")
    await until(browser, lambda: "started" in " ".join(output_lines(browser)), "live output")

    await serve.stop()  # the worker hands the job back; the page loses its stream
    await until(
        browser, lambda: "reconnecting" in text_of(browser, "#stream-state"), "the reconnect"
    )
    await serve.start()
    await until(browser, lambda: len(output_lines(browser)) >= 2, "the second attempt's output")
    await in_thread(gate.touch)
    await until(browser, lambda: job_status(browser) == "completed", "the completed job")
    await until(
        browser, lambda: text_of(browser, "#stream-state") == "· finished", "the stream's end"
    )

    token = await login_token(serve, "admin", PASSWORD)
    shown = await in_thread(shown_events, browser)
    assert shown == await log_positions(serve, token, run["job_id"])  # each event, once
    lines = await in_thread(output_lines, browser)
    assert [line.split("] ", 1)[1] for line in lines][-3:] == ["released", "two", "three"]
    # The first attempt's line, then the second attempt's (its lines numbered on from the first's).
    assert lines[0] == "[build#1 1] started"
    assert [line.split(" ", 1)[0] for line in lines[1:]] == [
        "[build#2",
        "[build#2",
        "[test#2",
        "[ship#2",
    ]
    # The browser notes the connections refused while the server was down; nothing else.
    errors = await in_thread(severe, browser)
    assert [e for e in errors if "ERR_CONNECTION_REFUSED" not in e] == []


async def test_the_dashboard_works_at_phone_width_with_a_keyboard(serve: HelixServe) -> None:
    phone = await in_thread(chrome, 390, 844, True)
    try:
        await in_thread(phone.get, f"{serve.url}/")
        await until(phone, lambda: phone.find_elements(By.ID, "login"), "the sign-in form")
        labels = await in_thread(
            phone.execute_script,
            "return [...document.querySelectorAll('input, select, textarea')]"
            ".filter(i => !i.closest('label')).length",
        )
        assert labels == 0  # every field has its label
        assert await in_thread(phone.execute_script, "return window.innerWidth") == 390
        width = await in_thread(phone.execute_script, "return document.body.scrollWidth")
        assert width <= 390  # nothing wider than the phone

        def type_in() -> None:
            from selenium.webdriver.common.keys import Keys

            field = phone.find_element(By.CSS_SELECTOR, "#login [name=username]")
            field.send_keys("admin", Keys.TAB, PASSWORD, Keys.ENTER)

        await in_thread(type_in)
        await until(phone, lambda: phone.find_elements(By.ID, "new-project"), "the projects page")
        width = await in_thread(phone.execute_script, "return document.body.scrollWidth")
        assert width <= 390
        await screenshot(phone, "projects-phone")
        assert await in_thread(severe, phone) == []
    finally:
        await in_thread(phone.quit)


async def test_the_dashboard_is_served_with_a_strict_policy_and_no_data(serve: HelixServe) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{serve.url}/") as resp:
            page = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
            policy = resp.headers["Content-Security-Policy"]
            etag = resp.headers["ETag"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "<script" in page and "inline" not in policy
        async with session.get(f"{serve.url}/", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
        async with session.get(f"{serve.url}/ui/app.js") as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        for missing in ("/ui/nothing.js", "/ui/..%2Fapp.py", "/ui/index.html"):
            async with session.get(f"{serve.url}{missing}") as resp:
                assert resp.status == 404, missing
                assert (await resp.json())["error"]["code"] == "NOT_FOUND"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A webhook receiver on loopback that answers 200 and keeps each request's headers."""
    seen: list[dict[str, str]] = []

    async def receive(request: aiohttp.web.Request) -> aiohttp.web.Response:
        await request.read()
        seen.append(dict(request.headers))
        return aiohttp.web.Response(text="ok")

    app = aiohttp.web.Application()
    app.router.add_post("/hook", receive)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", seen
    finally:
        await runner.cleanup()


async def test_an_operator_signs_in_with_a_key_and_manages_a_webhook_endpoint(
    browser: webdriver.Chrome, serve: HelixServe, receiver: tuple[str, list[dict[str, str]]]
) -> None:
    hook, seen = receiver
    admin = await login_token(serve, "admin", PASSWORD)
    key = (await api(serve, "POST", "/auth/api-keys", {"name": "dashboard"}, admin))["key"]

    await in_thread(browser.get, f"{serve.url}/")
    await until(browser, lambda: browser.find_elements(By.ID, "key-login"), "the key form")

    await in_thread(lambda: submit(browser, "key-login", api_key=key))
    await until(browser, lambda: browser.find_elements(By.ID, "new-project"), "the projects page")
    stored = await in_thread(browser.execute_script, "return JSON.stringify(sessionStorage)")
    assert key not in stored and key not in await in_thread(lambda: browser.current_url)

    await in_thread(lambda: browser.find_element(By.LINK_TEXT, "Webhooks").click())
    await until(browser, lambda: browser.find_elements(By.ID, "new-webhook"), "the webhooks page")

    await in_thread(lambda: submit(browser, "new-webhook", url=hook))
    secret = await until(browser, lambda: text_of(browser, "#secret"), "the new secret")
    assert "whsec_" in secret
    link = await until(browser, lambda: browser.find_elements(By.LINK_TEXT, hook), "the endpoint")
    await in_thread(link[0].click)
    await until(browser, lambda: "Send a test" in browser.page_source, "the endpoint's page")
    await in_thread(lambda: browser.find_element(By.XPATH, "//button[.='Send a test']").click())

    def delivered() -> bool:
        browser.find_element(By.ID, "refresh-deliveries").click()
        rows = text_of(browser, "#deliveries").splitlines()
        return any(row.startswith("webhook.ping") and "succeeded" in row for row in rows)

    await until(browser, delivered, "a delivered ping")
    assert seen and "webhook-signature" in {name.lower() for name in seen[0]}
    await in_thread(lambda: browser.find_element(By.XPATH, "//button[.='Attempts']").click())
    attempts = await until(browser, lambda: text_of(browser, "#attempts"), "the attempts")
    assert "200" in attempts
    await screenshot(browser, "webhook")
    assert await in_thread(severe, browser) == []
