"""The per-caller token bucket."""

from __future__ import annotations

from typing import Any


async def test_a_caller_over_the_limit_gets_429_with_the_headers(
    make_client: Any, user: Any, other_user: Any
) -> None:
    client = await make_client(rate_limit_per_minute=3)

    statuses = []
    for _ in range(4):
        resp = await client.get("/api/v1/users/me", headers=user.headers)
        statuses.append((resp.status, resp.headers["X-RateLimit-Remaining"]))

    assert statuses == [(200, "2"), (200, "1"), (200, "0"), (429, "0")]
    body = await resp.json()
    assert body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert resp.headers["X-RateLimit-Limit"] == "3"
    assert int(resp.headers["X-RateLimit-Reset"]) > 0
    # Another caller has a bucket of their own.
    assert (await client.get("/api/v1/users/me", headers=other_user.headers)).status == 200


async def test_anonymous_callers_are_limited_by_address_even_with_bad_credentials(
    make_client: Any,
) -> None:
    client = await make_client(rate_limit_per_minute=60, rate_limit_burst=2)
    bad = {"Authorization": "Bearer hx_" + "x" * 43}

    statuses = [(await client.get("/api/v1/users/me", headers=bad)).status for _ in range(3)]

    assert statuses == [401, 401, 429]
    assert (await client.get("/healthz")).status == 429


async def test_a_zero_limit_disables_rate_limiting(make_client: Any, user: Any) -> None:
    client = await make_client(rate_limit_per_minute=0)

    statuses = {(await client.get("/healthz")).status for _ in range(20)}

    assert statuses == {200}
