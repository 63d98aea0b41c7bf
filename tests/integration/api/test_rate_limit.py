"""The per-caller token buckets: authenticated callers by principal, anonymous ones by client
address, probes exempt, and the client address taken from X-Forwarded-For only behind a trusted
proxy (the test client's peer is 127.0.0.1)."""

from __future__ import annotations

from typing import Any

from helix.bootstrap import LogNode


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
    assert resp.headers["Retry-After"] == "20"  # one token every 20 s at 3 a minute
    # Another caller has a bucket of their own.
    assert (await client.get("/api/v1/users/me", headers=other_user.headers)).status == 200


async def test_anonymous_callers_are_limited_by_address_even_with_bad_credentials(
    make_client: Any,
) -> None:
    client = await make_client(rate_limit_anonymous_per_minute=60, rate_limit_anonymous_burst=2)
    bad = {"Authorization": "Bearer hx_" + "x" * 43}

    responses = [await client.get("/api/v1/users/me", headers=bad) for _ in range(3)]

    assert [r.status for r in responses] == [401, 401, 429]
    assert responses[-1].headers["Retry-After"] == "1"
    assert (await client.get("/api/v1/openapi.json")).status == 429  # the same address


async def test_anonymous_and_authenticated_callers_have_separate_limits(
    make_client: Any, user: Any
) -> None:
    client = await make_client(
        rate_limit_per_minute=5, rate_limit_anonymous_per_minute=60, rate_limit_anonymous_burst=1
    )

    anonymous = [await client.get("/api/v1/openapi.json") for _ in range(2)]
    authenticated = [await client.get("/api/v1/users/me", headers=user.headers) for _ in range(2)]

    assert [r.status for r in anonymous] == [200, 429]
    assert anonymous[0].headers["X-RateLimit-Limit"] == "1"
    # The same address, authenticated: charged to the principal's bucket and its own limit.
    assert [r.status for r in authenticated] == [200, 200]
    assert authenticated[1].headers["X-RateLimit-Limit"] == "5"
    assert authenticated[1].headers["X-RateLimit-Remaining"] == "3"


async def test_probes_are_never_rate_limited_with_or_without_credentials(
    make_client: Any, user: Any
) -> None:
    client = await make_client(
        rate_limit_per_minute=1,
        rate_limit_burst=1,
        rate_limit_anonymous_per_minute=1,
        rate_limit_anonymous_burst=1,
    )
    assert (await client.get("/api/v1/openapi.json")).status == 200
    assert (await client.get("/api/v1/openapi.json")).status == 429  # the address is spent

    statuses = {
        (path, (await client.get(path, headers=headers)).status)
        for path in ("/healthz", "/readyz", "/metrics")
        for headers in ({}, user.headers)
        for _ in range(3)
    }

    assert not {status for _, status in statuses} & {429}, statuses
    assert ("/healthz", 200) in statuses and ("/metrics", 200) in statuses
    resp = await client.get("/healthz")
    assert resp.headers["X-RateLimit-Limit"] == "1"  # reported, not charged
    assert resp.headers["X-RateLimit-Remaining"] == "0"


async def test_a_zero_limit_disables_rate_limiting(make_client: Any, user: Any) -> None:
    client = await make_client(rate_limit_per_minute=0, rate_limit_anonymous_per_minute=0)

    statuses = {(await client.get("/api/v1/openapi.json")).status for _ in range(20)}

    assert statuses == {200}


async def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(
    make_client: Any, user: Any, node: LogNode
) -> None:
    client = await make_client(
        trusted_proxies=("10.0.0.0/8",),
        rate_limit_anonymous_per_minute=60,
        rate_limit_anonymous_burst=1,
    )

    # Each request claims another address; all are the peer's, so they share one bucket.
    first = await client.get("/api/v1/openapi.json", headers={"X-Forwarded-For": "198.51.100.1"})
    second = await client.get("/api/v1/openapi.json", headers={"X-Forwarded-For": "198.51.100.2"})
    created = await client.post(
        "/api/v1/projects",
        json={"name": "spoofed"},
        headers={**user.headers, "X-Forwarded-For": "198.51.100.3"},
    )

    assert (first.status, second.status) == (200, 429)
    assert created.status == 201
    [event, *_] = await node.store.read_stream(f"project-{(await created.json())['id']}")
    assert event.metadata["source"] == "127.0.0.1"


async def test_a_trusted_proxy_names_the_client_by_the_rightmost_untrusted_address(
    make_client: Any, user: Any, node: LogNode
) -> None:
    client = await make_client(
        trusted_proxies=("127.0.0.0/8", "192.0.2.0/24"),
        rate_limit_anonymous_per_minute=60,
        rate_limit_anonymous_burst=1,
    )

    def via(chain: str) -> dict[str, str]:
        return {"X-Forwarded-For": chain}

    # The client forged the leftmost entry; the trusted hops are 192.0.2.9 and the peer.
    first = await client.get("/api/v1/openapi.json", headers=via("6.6.6.6, 203.0.113.7, 192.0.2.9"))
    same_client = await client.get("/api/v1/openapi.json", headers=via("7.7.7.7, 203.0.113.7"))
    other_client = await client.get("/api/v1/openapi.json", headers=via("203.0.113.8"))
    created = await client.post(
        "/api/v1/projects",
        json={"name": "forwarded"},
        headers={**user.headers, **via("6.6.6.6, 203.0.113.7, 192.0.2.9")},
    )

    assert (first.status, same_client.status, other_client.status) == (200, 429, 200)
    assert created.status == 201
    [event, *_] = await node.store.read_stream(f"project-{(await created.json())['id']}")
    assert event.metadata["source"] == "203.0.113.7"
