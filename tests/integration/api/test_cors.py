"""Browser pages on the origins in HELIX_CORS_ORIGINS may call the API: preflights are answered
for every route before authentication and rate limiting, and every answer to an allowed origin,
errors included, is readable by the page. Any other origin gets no `Access-Control-*` header."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from helix.api.app import create_app
from helix.api.requests import public
from helix.bootstrap import LogNode
from helix.config import Settings

Client = TestClient[Any, Any]
PAGE = "http://127.0.0.1:8765"
STRANGER = "http://evil.example"
SENT_BY_PAGES = {"authorization", "x-api-key", "idempotency-key", "last-event-id", "content-type"}


def preflight(
    method: str, origin: str = PAGE, headers: str = "authorization,content-type"
) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


def cors_headers(resp: Any) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}


def listed(value: str) -> list[str]:
    return [x.strip().lower() for x in value.split(",")]


@pytest.fixture
def browser_settings(settings: Settings) -> Settings:
    return attrs.evolve(settings, cors_origins=(PAGE,))


@pytest.fixture
async def browser_client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    node: LogNode,
    browser_settings: Settings,
) -> Client:
    app = create_app(node, browser_settings)

    @public
    async def lose_the_database(request: web.Request) -> web.Response:
        raise RuntimeError("the query failed") from asyncpg.PostgresConnectionError("gone")

    app.router.add_get("/lose-the-database", lose_the_database)
    return await aiohttp_client(app)


@pytest.mark.parametrize(
    ("path", "method", "allowed"),
    [
        ("/api/v1/projects", "POST", ["GET", "POST"]),
        (f"/api/v1/projects/{uuid.uuid4()}/execute", "POST", ["POST"]),
        (f"/api/v1/stream/{uuid.uuid4()}", "GET", ["GET"]),
        ("/api/v1/stream-tokens", "POST", ["POST"]),
        ("/no/such/path", "GET", ["DELETE", "GET", "PATCH", "POST", "PUT"]),
    ],
)
async def test_a_preflight_from_an_allowed_origin_is_answered_for_every_route_without_credentials(
    browser_client: Client, path: str, method: str, allowed: list[str]
) -> None:
    resp = await browser_client.options(path, headers=preflight(method))

    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    assert sorted(listed(resp.headers["Access-Control-Allow-Methods"])) == [
        m.lower() for m in allowed
    ]
    assert set(listed(resp.headers["Access-Control-Allow-Headers"])) >= SENT_BY_PAGES
    assert resp.headers["Access-Control-Max-Age"] == "600"
    assert "origin" in listed(resp.headers["Vary"])
    assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_preflights_are_never_rate_limited_and_do_not_spend_the_callers_budget(
    make_client: Callable[..., Awaitable[Client]], user: Any
) -> None:
    client = await make_client(
        cors_origins=(PAGE,), rate_limit_anonymous_per_minute=1, rate_limit_per_minute=2
    )

    answers = [
        (await client.options("/api/v1/projects", headers=preflight("POST"))).status
        for _ in range(5)
    ]
    first = await client.get("/api/v1/projects", headers={"Origin": PAGE, **user.headers})

    assert answers == [204] * 5
    assert first.status == 200
    assert first.headers["X-RateLimit-Remaining"] == "1"


async def test_a_cross_origin_create_is_readable_with_the_headers_the_page_needs(
    browser_client: Client, user: Any
) -> None:
    resp = await browser_client.post(
        "/api/v1/projects", json={"name": "from a page"}, headers={"Origin": PAGE, **user.headers}
    )

    assert resp.status == 201, await resp.text()
    assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    exposed = listed(resp.headers["Access-Control-Expose-Headers"])
    for name in ("X-Request-ID", "Location", "X-RateLimit-Limit", "X-RateLimit-Remaining"):
        assert name in resp.headers
        assert name.lower() in exposed
    assert {"x-helix-position", "x-ratelimit-reset", "retry-after", "location"} <= set(exposed)
    assert "origin" in listed(resp.headers["Vary"])


async def test_an_event_stream_answers_an_allowed_origin(browser_client: Client, user: Any) -> None:
    token = await browser_client.post("/api/v1/stream-tokens", headers=user.headers)
    stream = await browser_client.get(
        f"/api/v1/events/stream?access_token={(await token.json())['token']}",
        headers={"Origin": PAGE},
    )
    stream.close()

    assert stream.status == 200
    assert stream.headers["Access-Control-Allow-Origin"] == PAGE


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/v1/projects", None, 401),
        ("GET", f"/api/v1/projects/{uuid.uuid4()}", None, 404),
        ("GET", "/no/such/path", None, 404),
        ("DELETE", "/api/v1/stream-tokens", None, 405),
        ("POST", "/api/v1/projects", {"name": 7}, 422),
        ("GET", "/lose-the-database", None, 503),
    ],
)
async def test_errors_to_an_allowed_origin_are_readable_by_the_page(
    browser_client: Client, user: Any, method: str, path: str, body: Any, status: int
) -> None:
    headers = {"Origin": PAGE, **({} if status == 401 else user.headers)}

    resp = await browser_client.request(method, path, json=body, headers=headers)

    assert resp.status == status
    assert (await resp.json())["request_id"] == resp.headers["X-Request-ID"]
    assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    assert "x-request-id" in listed(resp.headers["Access-Control-Expose-Headers"])


async def test_a_rate_limited_answer_is_readable_by_the_page_with_its_retry_after(
    make_client: Callable[..., Awaitable[Client]], user: Any
) -> None:
    client = await make_client(cors_origins=(PAGE,), rate_limit_per_minute=1)
    headers = {"Origin": PAGE, **user.headers}

    await client.get("/api/v1/projects", headers=headers)
    resp = await client.get("/api/v1/projects", headers=headers)

    assert resp.status == 429
    assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    assert "Retry-After" in resp.headers
    assert "retry-after" in listed(resp.headers["Access-Control-Expose-Headers"])


async def test_another_origin_gets_no_cors_headers_on_preflights_answers_or_errors(
    browser_client: Client, user: Any
) -> None:
    refused = await browser_client.options("/api/v1/projects", headers=preflight("POST", STRANGER))
    answered = await browser_client.get(
        "/api/v1/projects", headers={"Origin": STRANGER, **user.headers}
    )
    failed = await browser_client.get("/api/v1/projects", headers={"Origin": STRANGER})

    assert refused.status == 405  # as if CORS did not exist
    assert answered.status == 200
    assert failed.status == 401
    assert cors_headers(refused) == cors_headers(answered) == cors_headers(failed) == {}
    assert "origin" in listed(answered.headers["Vary"])


async def test_without_configured_origins_there_is_no_cors_at_all(
    client: Client, user: Any
) -> None:
    refused = await client.options("/api/v1/projects", headers=preflight("POST"))
    answered = await client.get("/api/v1/projects", headers={"Origin": PAGE, **user.headers})

    assert refused.status == 405
    assert (await refused.json())["error"]["details"]["allowed_methods"] == ["GET", "HEAD", "POST"]
    assert cors_headers(refused) == cors_headers(answered) == {}
    assert "Vary" not in answered.headers


async def test_any_origin_is_answered_with_a_star_and_credentials_name_the_origin(
    make_client: Callable[..., Awaitable[Client]], user: Any
) -> None:
    anyone = await make_client(cors_origins=("*",))
    credentialed = await make_client(cors_origins=(PAGE,), cors_allow_credentials=True)
    headers = {"Origin": STRANGER, **user.headers}

    star = await anyone.get("/api/v1/projects", headers=headers)
    star_preflight = await anyone.options("/api/v1/projects", headers=preflight("GET", STRANGER))
    named = await credentialed.get("/api/v1/projects", headers={**headers, "Origin": PAGE})
    named_preflight = await credentialed.options("/api/v1/projects", headers=preflight("GET"))

    assert star.headers["Access-Control-Allow-Origin"] == "*"
    assert star_preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in star.headers
    assert named.headers["Access-Control-Allow-Origin"] == PAGE
    assert named.headers["Access-Control-Allow-Credentials"] == "true"
    assert named_preflight.headers["Access-Control-Allow-Origin"] == PAGE
    assert named_preflight.headers["Access-Control-Allow-Credentials"] == "true"
