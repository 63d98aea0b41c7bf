"""Every error is the envelope, with a request id, whatever produced it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from helix.api.requests import public

CODES = {
    "UNAUTHORIZED",
    "FORBIDDEN",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "VALIDATION_ERROR",
    "CONFLICT",
    "RATE_LIMIT_EXCEEDED",
    "INTERNAL_ERROR",
    "SERVICE_UNAVAILABLE",
}


async def envelope(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] in CODES
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


async def test_an_unknown_path_is_a_404_in_the_envelope(
    client: TestClient[Any, Any], user: Any
) -> None:
    resp = await client.get("/api/v1/no-such-thing", headers=user.headers)

    assert resp.status == 404
    assert (await envelope(resp))["error"]["code"] == "NOT_FOUND"


async def test_an_unknown_path_is_a_404_even_without_credentials(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.get("/nowhere")

    assert resp.status == 404
    await envelope(resp)


async def test_a_wrong_method_is_a_405_naming_the_allowed_ones(
    client: TestClient[Any, Any], user: Any
) -> None:
    resp = await client.delete("/api/v1/users", headers=user.headers)

    assert resp.status == 405
    body = await envelope(resp)
    assert body["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert body["error"]["details"]["allowed_methods"] == ["GET", "HEAD", "POST"]
    assert body["error"]["details"]["method"] == "DELETE"
    assert resp.headers["Allow"] == "GET,HEAD,POST"


async def test_malformed_json_is_a_400(client: TestClient[Any, Any], admin: Any) -> None:
    resp = await client.post(
        "/api/v1/users",
        data=b'{"username": ',
        headers={**admin.headers, "Content-Type": "application/json"},
    )

    assert resp.status == 400
    assert (await envelope(resp))["error"]["code"] == "VALIDATION_ERROR"


async def test_a_json_body_that_is_not_an_object_is_a_422(
    client: TestClient[Any, Any], admin: Any
) -> None:
    resp = await client.post("/api/v1/users", json=["root"], headers=admin.headers)

    assert resp.status == 422
    await envelope(resp)


async def test_an_oversized_body_is_a_413_in_the_envelope(make_client: Any, admin: Any) -> None:
    client = await make_client(max_body_bytes=100)

    declared = await client.post(
        "/api/v1/users", json={"username": "x" * 200}, headers=admin.headers
    )

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 50

    streamed = await client.post("/api/v1/users", data=chunks(), headers=admin.headers)
    for resp in (declared, streamed):
        assert resp.status == 413
        body = await envelope(resp)
        assert body["error"]["code"] == "VALIDATION_ERROR"
        assert body["error"]["details"]["max_bytes"] == 100


async def test_an_unexpected_exception_is_a_500_without_a_stack_trace(
    app: web.Application, aiohttp_client: Any, caplog: Any
) -> None:
    @public
    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/explode", explode)
    client = await aiohttp_client(app)

    resp = await client.get("/explode")

    assert resp.status == 500
    body = await envelope(resp)
    assert body["error"]["code"] == "INTERNAL_ERROR"
    assert "secret internals" not in await resp.text()
    assert "Traceback" not in await resp.text()
    assert "secret internals" in caplog.text


async def test_a_sane_incoming_request_id_is_kept_and_a_bad_one_replaced(
    client: TestClient[Any, Any], user: Any
) -> None:
    kept = await client.get(
        "/api/v1/users/me", headers={**user.headers, "X-Request-ID": "trace-42.a"}
    )
    replaced = await client.get(
        "/api/v1/users/me", headers={**user.headers, "X-Request-ID": "bad id\twith junk"}
    )

    assert kept.headers["X-Request-ID"] == "trace-42.a"
    assert replaced.headers["X-Request-ID"].startswith("req_")


async def test_every_response_carries_a_request_id_and_rate_limit_headers(
    client: TestClient[Any, Any], user: Any
) -> None:
    responses = [
        await client.get("/api/v1/users/me", headers=user.headers),
        await client.get("/api/v1/users/me"),
        await client.get("/nowhere"),
        await client.get("/healthz"),
    ]
    for resp in responses:
        assert resp.headers["X-Request-ID"]
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
            assert resp.headers[name].isdigit(), (resp.url, name)
