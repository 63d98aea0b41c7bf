"""`helix.client` against a real `helix serve`: every resource group round trip, blocking and
async, errors as exceptions carrying the envelope, Idempotency-Key replays, streams that
resume after dropped connections, and waiting for a job."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from helix.client import (
    ApiError,
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
)
from helix.client import types as t
from tests.e2e.cutting_proxy import CuttingProxy
from tests.e2e.processes import free_port
from tests.e2e.served import ANONYMOUS_PER_MINUTE, Served, served

__all__ = ["served"]

HELLO = [{"name": "hello", "command": ["sh", "-c", "echo hello; echo world"]}]
# Output in many small batches, so a job stream has many events to cut between.
CHATTY = [
    {"name": "count", "command": ["sh", "-c", "for i in $(seq 12); do echo $i; sleep 0.1; done"]},
    {"name": "after", "command": ["sh", "-c", "echo done counting"]},
]  # fmt: skip


def fits(value: Any, view: Any) -> bool:
    """`value` has every field the TypedDict `view` requires and none it does not name (the
    client's types are the API's JSON, with nothing invented and nothing missing)."""
    keys = set(value)
    required, optional = set(view.__required_keys__), set(view.__optional_keys__)
    assert required <= keys, (view.__name__, required - keys)
    assert keys <= required | optional, (view.__name__, keys - required - optional)
    return True


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


async def test_async_client_drives_a_project_from_creation_to_its_completed_job(
    served: Served,
) -> None:
    async with AsyncClient(served.url, api_key=served.admin_key) as helix:
        me = await helix.me()
        assert me["role"] == "admin" and me["authenticated_with"] == "api_key"
        made = [await helix.create_project(f"p{i}", phases=HELLO) for i in range(3)]
        assert all(p["status"] == "draft" for p in made)
        assert fits(me, t.User) and fits(made[0], t.Project)
        assert fits(made[0]["phases"][0], t.PhasePlan)

        # Pages of two, followed through `next`: every project once, newest first.
        listed = [p["id"] async for p in helix.list_projects(page_size=2)]
        assert listed == [p["id"] for p in reversed(made)]
        project = made[0]
        renamed = await helix.update_project(project["id"], description="says hello")
        assert renamed["description"] == "says hello" and renamed["name"] == "p0"
        talk = await helix.discuss("make it loud", project_id=project["id"])
        assert talk["project_id"] == project["id"]
        assert [m["content"] for m in talk["messages"]] == ["make it loud"]
        assert fits(talk, t.Discussion) and fits(talk["messages"][0], t.Message)
        posted = await helix.post_message(project["id"], "and short", role="assistant")
        assert (
            posted["seq"] == 2 and posted["role"] == "assistant" and fits(posted, t.PostedMessage)
        )
        thread = [m["content"] async for m in helix.list_messages(project["id"], page_size=1)]
        assert thread == ["make it loud", "and short"]

        assert (await helix.ready(project["id"]))["status"] == "ready"
        run = await helix.execute(project["id"])
        assert run["status"] == "queued" and run["stream_url"].endswith(run["job_id"])
        assert fits(run, t.Run)
        job = await helix.wait_job(run["job_id"], timeout=60)
        assert job["status"] == "completed" and job["progress"] == 100
        assert [p["status"] for p in job["phases"]] == ["completed"]
        assert fits(job, t.Job) and fits(job["phases"][0], t.Phase)
        assert fits(job["output_tail"][0], t.OutputLine) and fits(job["cost"], t.Cost)
        lines = [line["line"] async for line in helix.output(run["job_id"], page_size=1)]
        assert lines == ["hello", "world"]
        assert [j["id"] async for j in helix.list_jobs(project_id=project["id"])] == [job["id"]]
        status = await helix.project_status(project["id"])
        assert status["status"] == "completed" and status["latest_job"] is not None
        assert status["latest_job"]["id"] == job["id"]
        assert fits(status, t.ProjectStatus) and fits(status["latest_job"], t.JobSummary)
        shown = await helix.get_project(project["id"])
        assert fits(shown, t.Project) and shown["latest_job"] is not None
        assert fits(shown["latest_job"], t.Job)

        # The stream ends once the job's end is in the log: every read after it sees it all.
        streamed = [e async for e in helix.stream(job["id"])]
        assert streamed[-1]["type"] == "job.completed"
        ended = streamed[-1]["data"]
        assert ended["duration_s"] >= 0 and ended["result"] == {
            "phases_completed": 1, "phases": 1, "files": 0, "cost_tokens": 0, "cost_usd": 0.0,
        }  # fmt: skip
        history = [e async for e in helix.project_history(project["id"], page_size=3)]
        types = [e["type"] for e in history]
        assert types[0] == "project.created" and "job.completed" in types
        positions = [e["position"] for e in history]
        assert positions == sorted(set(positions)) and all(fits(e, t.Event) for e in history)
        logged = [
            e["type"] async for e in helix.list_events(project_id=project["id"], types=["job.*"])
        ]
        assert logged == [t for t in types if t.startswith("job.")]
        assert (await helix.get_event(positions[0]))["type"] == "project.created"
        assert [e["type"] for e in streamed] == [t for t in types if t.startswith("job.")]

        archived = await helix.archive_project(project["id"])
        assert archived["archived"] is True
        assert project["id"] not in [p["id"] async for p in helix.list_projects()]
        assert project["id"] in [p["id"] async for p in helix.list_projects(archived=True)]
        unarchived = await helix.unarchive_project(project["id"])
        assert unarchived["archived"] is False
        assert project["id"] in [p["id"] async for p in helix.list_projects()]

        quick = await helix.quick_action("say hi", phases=HELLO)
        assert (await helix.wait_job(quick["job_id"], timeout=60))["status"] == "completed"
        workers = [w async for w in helix.list_workers()]
        assert len(workers) == 1 and workers[0]["capabilities"] == ["shell"]
        assert fits(workers[0], t.Worker)
        assert (await helix.get_worker(workers[0]["id"]))["name"] == workers[0]["name"]
        token = await helix.create_stream_token()
        assert token["token_type"] == "stream" and token["expires_in"] > 0
        assert fits(token, t.StreamToken)


def test_blocking_client_manages_keys_users_and_webhooks(served: Served) -> None:
    with Client(served.url, api_key=served.admin_key) as admin:
        alice = admin.create_user("alice", password="a long password", role="user")
        assert "alice" in [u["username"] for u in admin.list_users(role="user")]
        key = admin.create_key(name="for alice", user_id=alice["id"])
        assert key["key"].startswith(key["prefix"]) and fits(key, t.ApiKey)

        with Client(served.url, api_key=key["key"]) as as_alice:
            assert as_alice.me()["username"] == "alice"
            own = as_alice.create_key(name="second", scopes=["projects:read", "account"])
            assert sorted(own["scopes"]) == ["account", "projects:read"]
            listed = {k["id"]: k for k in as_alice.list_keys()}
            assert set(listed) == {key["id"], own["id"]}
            assert "key" not in listed[own["id"]]
            revoked = as_alice.revoke_key(own["id"])
            assert revoked["revoked_at"] is not None
            assert [k["id"] for k in as_alice.list_keys()] == [key["id"]]
            assert len(list(as_alice.list_keys(include_revoked=True))) == 2
            with pytest.raises(Forbidden) as refused:
                next(as_alice.list_users())
            assert refused.value.code == "FORBIDDEN" and refused.value.status == 403

        hook = admin.create_webhook(
            "https://hooks.example.com/helix", event_types=["job.*"], description="ci"
        )
        assert hook["secret"].startswith("whsec_") and fits(hook, t.Webhook)
        assert admin.get_webhook(hook["id"])["event_types"] == ["job.*"]
        assert "secret" not in admin.get_webhook(hook["id"])
        changed = admin.update_webhook(hook["id"], enabled=False, event_types=["project.*"])
        assert changed["enabled"] is False and changed["event_types"] == ["project.*"]
        rotated = admin.rotate_webhook_secret(hook["id"])
        assert rotated["secret"] != hook["secret"]
        ping = admin.test_webhook(hook["id"])
        assert ping["kind"] == "ping" and ping["endpoint_id"] == hook["id"]
        assert fits(ping, t.Delivery)
        deliveries = list(admin.list_deliveries(hook["id"]))
        assert [d["id"] for d in deliveries] == [ping["id"]]
        shown = admin.get_delivery(hook["id"], ping["id"])
        assert shown["id"] == ping["id"] and isinstance(shown["attempt_log"], list)
        assert fits(shown, t.Delivery)
        admin.create_project("hooked", phases=HELLO)
        # Replay covers the sequenced log: wait until the new project's event is in it.
        for _ in range(200):
            if list(admin.list_events(types=["project.created"])):
                break
            time.sleep(0.05)
        replayed = admin.replay_webhook(hook["id"], since_position=1)
        assert replayed["deliveries"] >= 1  # project.created, at least
        assert fits(replayed, t.Replayed)
        assert [h["id"] for h in admin.list_webhooks()] == [hook["id"]]
        admin.delete_webhook(hook["id"])
        with pytest.raises(NotFound):
            admin.get_webhook(hook["id"])


def test_errors_carry_the_envelope_code_message_details_and_request_id(served: Served) -> None:
    with Client(served.url, api_key=served.admin_key) as helix:
        missing = uuid.uuid4()
        with pytest.raises(NotFound) as nf:
            helix.get_project(missing)
        assert nf.value.status == 404 and nf.value.code == "NOT_FOUND"
        assert nf.value.details == {"project_id": str(missing)}
        assert nf.value.request_id is not None and nf.value.request_id.startswith("req_")
        with pytest.raises(ValidationFailed) as bad:
            helix.create_project("")
        assert bad.value.status == 422 and bad.value.code == "VALIDATION_ERROR"
        assert "name" in str(bad.value.details)
        draft = helix.create_project("draft", phases=HELLO)
        with pytest.raises(Conflict) as conflict:
            helix.execute(draft["id"])
        assert conflict.value.status == 409 and conflict.value.details["current_state"]
        with pytest.raises(ValueError, match="UUID"):
            helix.get_job("../users")
        # Nothing the refused calls tried was made.
        assert [p["name"] for p in helix.list_projects()] == ["draft"]

    with Client(served.url, api_key="hx_not_a_key") as stranger:
        for _ in range(ANONYMOUS_PER_MINUTE):
            with pytest.raises(Unauthorized) as denied:
                stranger.me()
            assert denied.value.code == "UNAUTHORIZED" and denied.value.message
        with pytest.raises(RateLimited) as limited:
            stranger.me()
    assert limited.value.code == "RATE_LIMIT_EXCEEDED" and limited.value.status == 429
    assert limited.value.retry_after is not None and limited.value.retry_after >= 1
    assert isinstance(limited.value, ApiError)

    nowhere = f"http://127.0.0.1:{free_port()}"
    with (
        Client(nowhere, api_key="k", retries=1, backoff=0.01) as gone,
        pytest.raises(ConnectionFailed),
    ):
        gone.me()


def test_an_idempotency_key_makes_a_repeated_post_one_project(served: Served) -> None:
    with Client(served.url, api_key=served.admin_key) as helix:
        first = helix.create_project("once", phases=HELLO, idempotency_key="create-once")
        again = helix.create_project("once", phases=HELLO, idempotency_key="create-once")
        assert again == first
        with pytest.raises(Conflict):
            helix.create_project("other", phases=HELLO, idempotency_key="create-once")
        # Without a key of the caller's, each call gets its own: two calls, two projects.
        helix.create_project("twice", phases=HELLO)
        helix.create_project("twice", phases=HELLO)
        names = sorted(p["name"] for p in helix.list_projects())
    assert names == ["once", "twice", "twice"]


async def test_a_post_whose_answer_is_lost_is_retried_with_its_key_and_done_once(
    served: Served,
) -> None:
    # The first connection carries the request to the server, which commits and answers; the
    # answer never arrives. The retry, with the same key, gets the stored answer.
    async with CuttingProxy(_port(served.url), lambda n: 0 if n == 0 else None) as proxy:
        async with AsyncClient(proxy.url, api_key=served.admin_key, backoff=0.01) as helix:
            made = await helix.create_project("lost answer", phases=HELLO)
        assert proxy.cut == 1 and proxy.connections == 2
    async with AsyncClient(served.url, api_key=served.admin_key) as helix:
        found = [p async for p in helix.list_projects()]
    assert [p["id"] for p in found] == [made["id"]]


async def test_a_job_stream_cut_again_and_again_resumes_missing_nothing_and_repeating_nothing(
    served: Served,
) -> None:
    async with AsyncClient(served.url, api_key=served.admin_key) as direct:
        run = await direct.quick_action("count", phases=CHATTY)
        # Every connection is cut after 3 kB: mid-event, several times over the job.
        async with CuttingProxy(_port(served.url), lambda n: 3000) as proxy:
            async with AsyncClient(
                proxy.url, api_key=served.admin_key, backoff=0.01, stream_retries=50
            ) as cut:
                received = [e async for e in cut.stream(run["job_id"])]
            assert proxy.cut >= 3, proxy.cut
        whole = [e async for e in direct.stream(run["job_id"])]
    assert [e["position"] for e in received] == [e["position"] for e in whole]
    assert received == whole
    assert len({e["event_id"] for e in received}) == len(received)
    assert received[-1]["type"] == "job.completed"
    output = [
        line for e in received if e["type"] == "job.phase_output" for line in e["data"]["lines"]
    ]
    assert output == [str(i) for i in range(1, 13)] + ["done counting"]


async def test_a_stream_resumed_after_the_jobs_end_is_over_at_once(served: Served) -> None:
    async with AsyncClient(served.url, api_key=served.admin_key) as helix:
        run = await helix.quick_action("hello", phases=HELLO)
        job = await helix.wait_job(run["job_id"], timeout=60)
        events = [e async for e in helix.stream(job["id"])]
        last = events[-1]["position"]
        assert [e async for e in helix.stream(job["id"], after=last)] == []
        assert [
            e["position"] async for e in helix.stream(job["id"], after=events[-3]["position"])
        ] == [e["position"] for e in events[-2:]]
        only = [e["type"] async for e in helix.stream(job["id"], types=["job.phase_*"])]
        # Resource reports come at heartbeats while the phase runs, and with its end.
        assert only[-2:] == ["job.phase_resources", "job.phase_completed"]
        assert [kind for kind in only if kind != "job.phase_resources"] == [
            "job.phase_started", "job.phase_output", "job.phase_completed",
        ]  # fmt: skip


def test_wait_job_gives_up_at_its_timeout_and_returns_the_terminal_job(served: Served) -> None:
    slow = [{"name": "nap", "command": ["sh", "-c", "sleep 2; echo awake"]}]
    with Client(served.url, api_key=served.admin_key) as helix:
        run = helix.quick_action("nap", phases=slow)
        with pytest.raises(WaitTimeout) as timed_out:
            helix.wait_job(run["job_id"], timeout=0.5)
        assert timed_out.value.job["status"] in ("queued", "running")
        job = helix.wait_job(run["job_id"], timeout=60, poll=1)
        assert job["status"] == "completed" and job["waited_seconds"] >= 0
        # A loop left early closes its stream; the client goes on working.
        for event in helix.stream(run["job_id"]):
            assert event["type"] == "job.queued"
            break
        assert helix.get_job(run["job_id"])["status"] == "completed"
        cancelled = helix.quick_action("nap again", phases=slow)
        helix.cancel_job(cancelled["job_id"], reason="enough")
        ended = helix.wait_job(cancelled["job_id"], timeout=60)
        assert ended["status"] == "cancelled"


async def test_a_stream_refused_or_revoked_for_its_credentials_raises_the_envelope(
    served: Served,
) -> None:
    slow = [{"name": "nap", "command": ["sh", "-c", "echo going; sleep 20"]}]
    async with AsyncClient(served.url, api_key=served.admin_key) as admin:
        run = await admin.quick_action("nap", phases=slow)
        key = await admin.create_key(name="short-lived")
        async with AsyncClient(served.url, token="not.a.jwt") as stranger:
            with pytest.raises(Unauthorized):
                await anext(stranger.stream(run["job_id"]))

        async with AsyncClient(served.url, api_key=key["key"]) as holder:
            events = holder.stream(run["job_id"])
            assert (await anext(events))["type"] == "job.queued"
            await admin.revoke_key(key["id"])
            # The server ends the stream saying why (a final `error` event, and a reconnect is
            # refused): raised as the envelope's exception, never resumed for ever.
            with pytest.raises(Unauthorized) as revoked:
                async for _ in events:
                    pass
        assert revoked.value.code == "UNAUTHORIZED" and revoked.value.message
        await admin.cancel_job(run["job_id"])


def test_a_jobs_files_are_listed_and_saved_byte_for_byte(served: Served, tmp_path: Any) -> None:
    body = "".join(f"line {i} ü\n" for i in range(5000))
    script = f"open('report.txt', 'w').write({body!r}); print('::helix file report.txt')"
    phases = [{"name": "write", "command": ["python3", "-c", script]}]
    saves = tmp_path / "saves"
    saves.mkdir()
    with Client(served.url, api_key=served.admin_key) as helix:
        run = helix.quick_action("write a report", phases=phases)
        assert helix.wait_job(run["job_id"], timeout=60)["status"] == "completed"
        (listed,) = list(helix.list_files(run["job_id"]))
        assert fits(listed, t.File) and listed["stored"] and listed["path"] == "report.txt"
        saved = helix.download_file(run["job_id"], "report.txt", saves / "copy.txt")
        assert saved.read_text() == body and listed["size"] == len(body.encode())
        assert [p.name for p in saves.iterdir()] == ["copy.txt"]
        with pytest.raises(NotFound):
            helix.download_file(run["job_id"], "missing.txt", saves / "none.txt")
        assert [p.name for p in saves.iterdir()] == ["copy.txt"]


def test_a_key_is_exchanged_for_a_token_that_logout_revokes(served: Served) -> None:
    with Client(served.url, api_key=served.admin_key) as helix:
        answer = helix.refresh_token()
        assert answer["token_type"].lower() == "bearer" and answer["expires_in"] > 0
        assert helix.me()["authenticated_with"] != "api_key"
        token = answer["token"]
        helix.logout()
    with Client(served.url, token=token) as revoked, pytest.raises(Unauthorized):
        revoked.me()
    with Client(served.url, api_key=served.admin_key) as keyed, pytest.raises(Forbidden):
        keyed.logout()


def test_a_failed_job_is_requeued_and_runs_again(served: Served) -> None:
    flaky = [{"name": "flaky", "command": ["sh", "-c", "echo trying; exit 3"]}]
    with Client(served.url, api_key=served.admin_key) as helix:
        run = helix.quick_action("try once", phases=flaky)
        first = helix.wait_job(run["job_id"], timeout=60)
        assert first["status"] == "failed"
        requeued = helix.requeue_job(run["job_id"])
        assert fits(requeued, t.Job) and requeued["status"] in ("queued", "running", "failed")
        again = helix.wait_job(run["job_id"], timeout=60)
        assert again["status"] == "failed" and again["attempt"] > first["attempt"]
        lines = [line["line"] for line in helix.output(run["job_id"])]
        assert lines == ["trying", "trying"]
        with pytest.raises(Conflict):
            helix.requeue_job(helix.quick_action("fine", phases=HELLO)["job_id"])
