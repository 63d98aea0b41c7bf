"""Artifacts against the real server: a `helix worker` process uploads the files its phases
produced; they are listed and downloaded byte for byte; limits, escapes, stale tokens, sha256
mismatches and other users are refused; uploads stream in chunks."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from helix.appkeys import POOL
from helix.services import Services
from helix.services.artifacts import ABANDONED_AFTER, CHUNK_BYTES
from helix.worker import job as worker_job
from helix.worker.protocol import Client as WorkerClient
from helix.worker.protocol import ProtocolError
from helix.worker.workspace import open_for_upload
from tests.integration.api.test_worker_e2e import (  # noqa: F401  (fixtures)
    FAST,
    Workers,
    events_of,
    execute,
    finished,
    ok,
    reaper,
    until,
    workers,
)
from tests.integration.api.test_workers_api import claim, register, report

Client = TestClient[Any, Any]
MAX_BYTES = 4 * 1024 * 1024
# Just over three chunks, and a file over the limit per file.
BIG = b"0123456789abcdef" * (3 * CHUNK_BYTES // 16) + b"tail"
HUGE_BYTES = MAX_BYTES + 1
PHASE = f"""
import os
os.makedirs("out", exist_ok=True)
open("out/report one.txt", "w").write("all good\\n")
open("big.bin", "wb").write({BIG[:16]!r} * {3 * CHUNK_BYTES // 16} + b"tail")
open("huge.bin", "wb").write(b"x" * {HUGE_BYTES})
os.symlink("/etc/shadow", "shadow-link")
for name in ("shadow-link", "../../../../etc/shadow", "/etc/passwd", "out/../../x"):
    print("::helix file " + name)
print("done")
"""


@pytest.fixture
async def client(make_client: Callable[..., Awaitable[Client]]) -> Client:
    return await make_client(**FAST, artifact_max_bytes=MAX_BYTES)


async def files_of(client: Client, who: Any, job_id: str) -> list[dict[str, Any]]:
    body = await ok(await client.get(f"/api/v1/jobs/{job_id}/files", headers=who.headers))
    assert set(body) == {"items", "next", "has_more"}
    return list(body["items"])


async def stored_contents(client: Client) -> list[Any]:
    async with client.server.app[POOL].acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT c.sha256, c.size, c.chunks, count(k.seq) AS rows,"
                " max(length(k.data)) AS largest FROM artifact_contents c"
                " JOIN artifact_chunks k USING (blob_id) GROUP BY 1, 2, 3 ORDER BY 2"
            )
        )


async def blob_count(client: Client) -> int:
    async with client.server.app[POOL].acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM artifact_blobs")
        return count


async def test_a_phases_files_are_listed_and_downloaded_byte_identical_within_the_limits(
    client: Client,
    workers: Workers,  # noqa: F811
    user: Any,
    other_user: Any,
    admin: Any,
    phase_python: str,
    request: pytest.FixtureRequest,
) -> None:
    _, job_id = await execute(
        client, user, [{"name": "make", "command": [phase_python, "-c", PHASE]}]
    )
    # As root, phases run as a user of the test's own, which no other worker on the machine has.
    spare = {}
    if os.geteuid() == 0:
        spare["HELIX_PHASE_USER"] = request.getfixturevalue("spare_phase_user").name
    await workers.start(**spare)
    shown = await finished(client, user, job_id)
    assert shown["status"] == "completed", shown

    listed = await files_of(client, user, job_id)
    # The link and the paths out of the workspace are never read, let alone stored.
    assert [f["path"] for f in listed] == ["big.bin", "huge.bin", "out/report one.txt"]
    big, huge, report_file = listed
    assert big | {"created_at": None, "updated_at": None} == {
        "path": "big.bin",
        "phase": "make",
        "attempt": 1,
        "size": len(BIG),
        "sha256": hashlib.sha256(BIG).hexdigest(),
        "change": "created",
        "stored": True,
        "reason": None,
        "download_url": f"/api/v1/jobs/{job_id}/files/big.bin",
        "created_at": None,
        "updated_at": None,
    }
    assert (huge["stored"], huge["download_url"], huge["size"]) == (False, None, HUGE_BYTES)
    assert "HELIX_ARTIFACT_MAX_BYTES" in huge["reason"]
    assert report_file["download_url"] == f"/api/v1/jobs/{job_id}/files/out/report%20one.txt"

    resp = await client.get(big["download_url"], headers=user.headers)
    assert resp.status == 200
    assert await resp.read() == BIG
    assert resp.headers["ETag"] == f'"{big["sha256"]}"'
    assert resp.headers["Content-Length"] == str(len(BIG))
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="big.bin"')
    resp = await client.get(report_file["download_url"], headers=user.headers)
    assert await resp.read() == b"all good\n"
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.headers["Content-Disposition"] == (
        "attachment; filename=\"report_one.txt\"; filename*=UTF-8''report%20one.txt"
    )
    resp = await client.head(big["download_url"], headers=user.headers)
    assert (resp.status, resp.headers["Content-Length"]) == (200, str(len(BIG)))
    again = {"If-None-Match": f'"{big["sha256"]}"', **user.headers}
    assert (await client.get(big["download_url"], headers=again)).status == 304

    # Stored in chunks of at most CHUNK_BYTES, and nothing but these two files' bytes.
    rows = await stored_contents(client)
    assert [(r["sha256"], r["rows"]) for r in rows] == [
        (report_file["sha256"], 1),
        (big["sha256"], math.ceil(len(BIG) / CHUNK_BYTES)),
    ]
    assert rows[1]["rows"] == 4 and rows[1]["largest"] == CHUNK_BYTES
    assert await blob_count(client) == 2

    history = await events_of(client, admin, job_id)
    stored = [e["data"] for e in history if e["type"] == "job.artifact_stored"]
    assert sorted((d["path"], d["attempt"], d["size"]) for d in stored) == [
        ("big.bin", 1, len(BIG)),
        ("out/report one.txt", 1, 9),
    ]
    [refused] = [e["data"] for e in history if e["type"] == "job.artifact_not_stored"]
    assert (refused["path"], refused["size"]) == ("huge.bin", HUGE_BYTES)

    # Not stored, never reported, or another user's: all 404.
    for path in ("huge.bin", "shadow-link", "nothing/here", "out"):
        resp = await client.get(f"/api/v1/jobs/{job_id}/files/{path}", headers=user.headers)
        assert resp.status == 404, path
    for url in (f"/api/v1/jobs/{job_id}/files", big["download_url"]):
        resp = await client.get(url, headers=other_user.headers)
        assert resp.status == 404, url
        assert (await resp.json())["error"]["code"] == "NOT_FOUND"
    assert (await client.get("/api/v1/jobs/nope/files", headers=user.headers)).status == 404
    assert (await client.get(big["download_url"], headers=admin.headers)).status == 200


async def lease(client: Client, user: Any, worker: Any) -> dict[str, Any]:
    """A job claimed over the protocol by the `worker` user, its phase `build` started."""
    _, job_id = await execute(client, user, [{"name": "build", "command": ["make"]}])
    worker_id = await register(client, worker)
    claimed = await claim(client, worker, worker_id)
    token = claimed["lease"]["fencing_token"]
    await ok(
        await report(client, worker, job_id, token, {"type": "phase_started", "phase": "build"})
    )
    return {"job_id": job_id, "token": token, "worker_id": worker_id, "claim": claimed}


def upload_url(job_id: str, path: str, token: int, data: bytes, **extra: str) -> URL:
    """The upload of `path`, declaring the size and sha256 of `data`."""
    query = {
        "fencing_token": str(token),
        "phase": "build",
        "size": str(len(data)),
        "sha256": hashlib.sha256(data).hexdigest(),
        **extra,
    }
    return URL(f"/api/v1/jobs/{job_id}/files/{path}", encoded=True).with_query(query)


async def test_uploads_with_a_stale_token_a_wrong_sha256_or_size_or_an_escaping_path_keep_nothing(
    client: Client, worker: Any, user: Any
) -> None:
    leased = await lease(client, user, worker)
    job_id, token = leased["job_id"], leased["token"]
    assert leased["claim"]["artifacts"] == {"max_bytes": MAX_BYTES, "job_max_bytes": 100 * 2**20}
    data = b"hello artifacts\n"

    async def put(url: URL, body: bytes = data) -> Any:
        return await client.put(url, data=body, headers=worker.headers)

    refusals = [
        (upload_url(job_id, "a.txt", token + 1, data), 409, "stale_fencing_token"),
        (upload_url(job_id, "a.txt", token - 1, data), 409, "stale_fencing_token"),
        (upload_url(job_id, "a.txt", token, b"x" * len(data)), 422, None),
        (upload_url(job_id, "a.txt", token, data + b"more"), 400, None),
        (upload_url(job_id, "a.txt", token, data[:-1]), 400, None),
        (upload_url(job_id, "%2E%2E/etc/shadow", token, data), 422, None),
        (upload_url(job_id, "out/%2E%2E/%2E%2E/x", token, data), 422, None),
        (upload_url(job_id, "a//b", token, data), 422, None),
        (upload_url(job_id, "a.txt", token, data, phase="test"), 422, None),
        (upload_url(job_id, "a.txt", token, data, size=str(MAX_BYTES + 1)), 413, None),
    ]
    for url, status, reason in refusals:
        resp = await put(url)
        assert resp.status == status, (url, await resp.text())
        error = (await resp.json())["error"]
        assert reason is None or error["details"]["reason"] == reason, error
    # A user may not upload, even to their own job.
    resp = await client.put(
        upload_url(job_id, "a.txt", token, data), data=data, headers=user.headers
    )
    assert resp.status == 403
    assert await files_of(client, user, job_id) == []
    assert await blob_count(client) == 0

    stored = await ok(
        await put(upload_url(job_id, "dir/a.txt", token, data, change="created")), 201
    )
    assert (stored["path"], stored["stored"], stored["change"]) == ("dir/a.txt", True, "created")
    # The same path again replaces the current version; the same bytes are stored once.
    newer = b"hello again, artifacts\n"
    await ok(await put(upload_url(job_id, "dir/a.txt", token, newer), newer), 201)
    await ok(await put(upload_url(job_id, "dir/copy.txt", token, newer), newer), 201)
    listed = await files_of(client, user, job_id)
    assert [(f["path"], f["size"]) for f in listed] == [("dir/a.txt", 23), ("dir/copy.txt", 23)]
    resp = await client.get(listed[0]["download_url"], headers=user.headers)
    assert await resp.read() == newer
    assert [r["sha256"] for r in await stored_contents(client)] == [
        hashlib.sha256(data).hexdigest(),
        hashlib.sha256(newer).hexdigest(),
    ]
    assert await blob_count(client) == 2


async def test_the_job_limit_counts_the_current_versions_and_refuses_past_it(
    make_client: Callable[..., Awaitable[Client]], user: Any, worker: Any
) -> None:
    client = await make_client(**FAST, job_artifacts_max_bytes=30)
    _, job_id = await execute(client, user, [{"name": "build", "command": ["make"]}])
    claimed = await claim(client, worker, await register(client, worker))
    token = claimed["lease"]["fencing_token"]
    await ok(
        await report(client, worker, job_id, token, {"type": "phase_started", "phase": "build"})
    )
    twenty = b"x" * 20

    async def put(path: str, data: bytes) -> Any:
        url = upload_url(job_id, path, token, data)
        return await client.put(url, data=data, headers=worker.headers)

    await ok(await put("a", twenty), 201)
    await ok(await put("a", twenty + b"y"), 201)  # replaces a: 21 bytes in all
    resp = await put("b", b"z" * 10)
    assert resp.status == 413, await resp.text()
    assert (await resp.json())["error"]["details"]["stored_bytes"] == 21
    await ok(await put("b", b"z" * 9), 201)


async def test_the_worker_streams_a_large_file_a_chunk_at_a_time(
    make_client: Callable[..., Awaitable[Client]], worker: Any, user: Any, tmp_path: Path
) -> None:
    client = await make_client(**FAST, artifact_max_bytes=32 * CHUNK_BYTES)
    leased = await lease(client, user, worker)
    size = 24 * CHUNK_BYTES + 123
    piece = hashlib.sha256(b"seed").digest() * (CHUNK_BYTES // 32)
    path = tmp_path / "large.bin"
    with path.open("wb") as f:
        for _ in range(24):
            f.write(piece)
        f.write(piece[:123])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    read: list[int] = []

    async def counted(fd: int) -> AsyncIterator[bytes]:
        async for chunk in worker_job.read_chunks(fd):
            read.append(len(chunk))
            yield chunk

    base = str(client.make_url("/"))
    async with aiohttp.ClientSession() as session:
        protocol = WorkerClient(base, worker.key, session)
        # Refused before the body is read: the worker hears why, rather than a broken pipe.
        with pytest.raises(ProtocolError) as refused:
            await protocol.upload(
                leased["job_id"],
                leased["token"] + 1,
                phase="build",
                path="large.bin",
                size=size,
                sha256=digest,
                change="created",
                body=worker_job.read_chunks(open_for_upload(tmp_path, "large.bin")),
            )
        assert refused.value.lease_lost
        tracemalloc.start()
        try:
            await protocol.upload(
                leased["job_id"],
                leased["token"],
                phase="build",
                path="large.bin",
                size=size,
                sha256=digest,
                change="created",
                body=counted(open_for_upload(tmp_path, "large.bin")),
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # The worker read the file a chunk at a time, and neither it nor the server (in this
    # process too) held anything near the whole file.
    assert read == [CHUNK_BYTES] * 24 + [123]
    print(f"peak traced memory {peak} bytes for a {size}-byte upload")
    assert peak < size / 2, peak
    [listed] = await files_of(client, user, leased["job_id"])
    assert (listed["size"], listed["sha256"]) == (size, digest)
    [row] = await stored_contents(client)
    assert (row["rows"], row["largest"]) == (25, CHUNK_BYTES)


def test_only_a_plain_file_inside_the_workspace_is_opened_for_upload(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "ok.txt").write_text("ok")
    (tmp_path / "secret").write_text("secret")
    (root / "link").symlink_to(tmp_path / "secret")
    (root / "inner-link").symlink_to(root / "dir" / "ok.txt")
    (root / "dirlink").symlink_to(root / "dir")
    (root / "hard").hardlink_to(tmp_path / "secret")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("x")
    fd = open_for_upload(root, "dir/ok.txt")
    try:
        assert Path(f"/proc/self/fd/{fd}").resolve() == (root / "dir" / "ok.txt").resolve()
    finally:
        os.close(fd)
    for name in ("link", "inner-link", "dirlink/ok.txt", "hard", "../secret", ".git/config",
                 str(tmp_path / "secret"), "dir", "missing"):  # fmt: skip
        with pytest.raises(OSError):
            open_for_upload(root, name)


async def test_a_rerun_attempt_replaces_the_file_for_downloads_and_the_old_lease_uploads_nothing(
    client: Client, worker: Any, user: Any
) -> None:
    leased = await lease(client, user, worker)
    job_id, first = leased["job_id"], leased["token"]
    old, new = b"attempt one\n", b"attempt two, longer\n"
    url = upload_url(job_id, "result.txt", first, old)
    await ok(await client.put(url, data=old, headers=worker.headers), 201)
    release = {"fencing_token": first}
    await ok(
        await client.post(f"/api/v1/jobs/{job_id}/release", json=release, headers=worker.headers)
    )
    again = await claim(client, worker, leased["worker_id"], wait=5)
    second = again["lease"]["fencing_token"]
    assert (again["job"]["attempt"], second) == (2, first + 1)
    started = {"type": "phase_started", "phase": "build"}
    await ok(await report(client, worker, job_id, second, started))

    url = upload_url(job_id, "result.txt", first, new)
    resp = await client.put(url, data=new, headers=worker.headers)
    assert resp.status == 409
    assert (await resp.json())["error"]["details"]["reason"] == "stale_fencing_token"
    [listed] = await files_of(client, user, job_id)
    assert (listed["attempt"], listed["size"]) == (1, len(old))

    url = upload_url(job_id, "result.txt", second, new)
    await ok(await client.put(url, data=new, headers=worker.headers), 201)
    [listed] = await files_of(client, user, job_id)
    assert (listed["attempt"], listed["size"], listed["stored"]) == (2, len(new), True)
    resp = await client.get(listed["download_url"], headers=user.headers)
    assert await resp.read() == new
    assert await blob_count(client) == 2  # the first attempt's bytes are kept, not served


async def test_a_cut_or_malformed_upload_keeps_nothing_and_is_no_server_error(
    client: Client, worker: Any, user: Any
) -> None:
    leased = await lease(client, user, worker)
    data = b"0123456789" * 100
    url = upload_url(leased["job_id"], "cut.bin", leased["token"], data)
    auth = "".join(f"{k}: {v}\r\n" for k, v in worker.headers.items())
    host, port = client.server.host, client.server.port

    async def raw(head: str, body: bytes, *, close: bool) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"PUT {url} HTTP/1.1\r\nHost: x\r\n{auth}{head}\r\n".encode() + body)
        await writer.drain()
        if close:
            writer.close()
            await writer.wait_closed()
            return b""
        answer = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        return answer

    await raw(f"Content-Length: {len(data)}\r\n", data[:10], close=True)
    answer = await raw("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\nzz\r\n", close=False)
    # The HTTP parser's own refusal, before any handler could answer.
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer

    async def nothing_kept() -> bool:
        return await blob_count(client) == 0

    await until(nothing_kept, timeout=10)
    assert await files_of(client, user, leased["job_id"]) == []
    resp = await client.put(url, data=data, headers=worker.headers)
    assert resp.status == 201, await resp.text()


async def test_an_upload_the_server_abandoned_is_dropped_and_a_stored_one_kept(
    client: Client, worker: Any, user: Any, services: Services
) -> None:
    leased = await lease(client, user, worker)
    data = b"kept\n"
    url = upload_url(leased["job_id"], "kept.txt", leased["token"], data)
    await ok(await client.put(url, data=data, headers=worker.headers), 201)
    orphan = uuid.uuid4()
    async with client.server.app[POOL].acquire() as conn:
        await conn.execute(
            "INSERT INTO artifact_blobs (blob_id, job_id) VALUES ($1, $2)", orphan, uuid.uuid4()
        )
        await conn.execute(
            "INSERT INTO artifact_chunks (blob_id, seq, data) VALUES ($1, 0, 'half')", orphan
        )
    now = datetime.now(UTC)
    assert await services.artifacts.drop_abandoned(now) == 0  # too recent to be abandoned
    assert await services.artifacts.drop_abandoned(now + ABANDONED_AFTER * 2) == 1
    assert await blob_count(client) == 1
    [listed] = await files_of(client, user, leased["job_id"])
    resp = await client.get(listed["download_url"], headers=user.headers)
    assert await resp.read() == data


async def test_a_secret_in_a_files_name_is_masked_in_what_is_recorded(
    client: Client, worker: Any, user: Any
) -> None:
    secret = "s3cr3t-value-42"
    plan = [{"name": "build", "command": ["make"], "env": {"TOKEN": {"secret": secret}}}]
    _, job_id = await execute(client, user, plan)
    claimed = await claim(client, worker, await register(client, worker))
    token = claimed["lease"]["fencing_token"]
    await ok(
        await report(client, worker, job_id, token, {"type": "phase_started", "phase": "build"})
    )
    data = b"named after the secret\n"
    url = upload_url(job_id, f"out/{secret}.txt", token, data)
    stored = await ok(await client.put(url, data=data, headers=worker.headers), 201)
    assert stored["path"] == "out/***.txt"
    [listed] = await files_of(client, user, job_id)
    resp = await client.get(listed["download_url"], headers=user.headers)
    assert await resp.read() == data
    refused = {"type": "artifact_not_stored", "phase": "build", "path": f"{secret}.bin",
               "size": 1, "sha256": "ab" * 32, "reason": f"too big for {secret}"}  # fmt: skip
    await ok(await report(client, worker, job_id, token, refused))
    listed = await files_of(client, user, job_id)
    assert secret not in str(listed)
    assert [(f["path"], f["reason"]) for f in listed] == [
        ("***.bin", "too big for ***"),
        ("out/***.txt", None),
    ]
