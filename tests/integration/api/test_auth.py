"""Authentication: login, JWTs, API keys, roles, users, and their events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode


async def test_login_with_the_right_password_returns_a_jwt_that_authenticates(
    client: TestClient[Any, Any], make_caller: Any
) -> None:
    await make_caller("user", username="carol", password="correct horse")

    resp = await client.post(
        "/api/v1/auth/login", json={"username": "carol", "password": "correct horse"}
    )

    assert resp.status == 200
    body = await resp.json()
    assert body["token_type"] == "Bearer"
    assert datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC)
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["iss"] == "helix" and claims["aud"] == "helix"
    assert claims["sub"] == body["user"]["id"] and claims["role"] == "user"
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status == 200
    assert (await me.json())["username"] == "carol"


async def events_of(node: LogNode, stream_id: str) -> list[Any]:
    return await node.store.read_stream(stream_id)


async def test_a_wrong_password_is_401_and_recorded_as_a_failed_login(
    client: TestClient[Any, Any], make_caller: Any, node: LogNode
) -> None:
    carol = await make_caller("user", username="carol", password="correct horse")

    resp = await client.post("/api/v1/auth/login", json={"username": "carol", "password": "nope"})

    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "UNAUTHORIZED"
    events = await events_of(node, f"user-{carol.user_id}")
    failed = [e for e in events if e.type == "auth.login_failed"]
    assert len(failed) == 1
    assert failed[0].data["reason"] == "wrong_password"
    assert failed[0].metadata["source"] == "127.0.0.1"
    assert failed[0].metadata["actor"] == "anonymous"


async def test_a_refused_login_with_an_idempotency_key_is_recorded_each_time_it_is_tried(
    client: TestClient[Any, Any], make_caller: Any, node: LogNode
) -> None:
    carol = await make_caller("user", username="carol", password="correct horse")
    headers = {"Idempotency-Key": "login-1"}
    wrong = {"username": "carol", "password": "nope"}

    answers = [await client.post("/api/v1/auth/login", json=wrong, headers=headers) for _ in "ab"]
    right = {"username": "carol", "password": "correct horse"}
    signed_in = await client.post(
        "/api/v1/auth/login", json=right, headers={"Idempotency-Key": "2"}
    )

    assert [a.status for a in answers] == [401, 401]  # errors are not stored: each one ran
    assert signed_in.status == 200
    types = [e.type for e in await events_of(node, f"user-{carol.user_id}")]
    assert types.count("auth.login_failed") == 2 and types.count("auth.login_succeeded") == 1


async def test_a_login_for_an_unknown_username_is_recorded_on_the_days_failure_stream(
    client: TestClient[Any, Any], node: LogNode
) -> None:
    resp = await client.post("/api/v1/auth/login", json={"username": "ghost", "password": "x" * 9})

    assert resp.status == 401
    day = datetime.now(UTC).date().isoformat()
    events = await events_of(node, f"auth-failures-{day}")
    assert [(e.type, e.data["username"], e.data["reason"]) for e in events] == [
        ("auth.login_failed", "ghost", "unknown_user")
    ]


async def test_a_successful_login_is_an_event_on_the_users_stream(
    client: TestClient[Any, Any], make_caller: Any, node: LogNode
) -> None:
    carol = await make_caller("user", username="carol", password="correct horse")

    await client.post("/api/v1/auth/login", json={"username": "carol", "password": "correct horse"})

    types = [e.type for e in await events_of(node, f"user-{carol.user_id}")]
    assert types == ["user.created", "api_key.created", "auth.login_succeeded"]
    me = await (await client.get("/api/v1/users/me", headers=carol.headers)).json()
    assert me["last_login_at"] is not None


async def test_a_disabled_user_can_neither_log_in_nor_use_keys_or_tokens(
    client: TestClient[Any, Any], admin: Any, make_caller: Any, token_for: Any
) -> None:
    carol = await make_caller("user", username="carol", password="correct horse")
    token_headers = token_for(carol)

    resp = await client.patch(
        f"/api/v1/users/{carol.user_id}", json={"disabled": True}, headers=admin.headers
    )
    assert resp.status == 200 and (await resp.json())["disabled"] is True

    login = await client.post(
        "/api/v1/auth/login", json={"username": "carol", "password": "correct horse"}
    )
    assert login.status == 401
    assert (await client.get("/api/v1/users/me", headers=carol.headers)).status == 401
    assert (await client.get("/api/v1/users/me", headers=token_headers)).status == 401


async def test_requests_without_credentials_are_401_in_the_envelope(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.get("/api/v1/users/me")

    assert resp.status == 401
    body = await resp.json()
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert body["request_id"] == resp.headers["X-Request-ID"]


async def test_a_token_that_fails_validation_is_401_even_on_a_public_route(
    client: TestClient[Any, Any], make_caller: Any
) -> None:
    await make_caller("user", username="carol", password="correct horse")
    bad = {"Authorization": "Bearer not.a.jwt"}

    resp = await client.post(
        "/api/v1/auth/login", json={"username": "carol", "password": "correct horse"}, headers=bad
    )

    assert resp.status == 401


async def test_jwts_with_a_wrong_signature_issuer_audience_or_expiry_are_refused(
    client: TestClient[Any, Any], app: Any, user: Any
) -> None:
    from helix.appkeys import VERIFIER

    secret = app[VERIFIER].own_secret
    now = datetime.now(UTC)
    good = {"sub": user.user_id, "iss": "helix", "aud": "helix", "exp": now + timedelta(hours=1)}
    variants = {
        "signature": jwt.encode(good, "another secret that is long enough", algorithm="HS256"),
        "issuer": jwt.encode({**good, "iss": "evil"}, secret, algorithm="HS256"),
        "audience": jwt.encode({**good, "aud": "other"}, secret, algorithm="HS256"),
        "expiry": jwt.encode({**good, "exp": now - timedelta(hours=1)}, secret, algorithm="HS256"),
        "algorithm none": jwt.encode(good, None, algorithm="none"),
    }
    ok = await client.get(
        "/api/v1/users/me",
        headers={"Authorization": f"Bearer {jwt.encode(good, secret, algorithm='HS256')}"},
    )
    assert ok.status == 200
    for name, token in variants.items():
        resp = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 401, name


async def test_an_api_key_is_shown_once_listed_by_prefix_and_works_until_revoked(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    created = await client.post(
        "/api/v1/auth/api-keys", json={"name": "laptop"}, headers=user.headers
    )
    assert created.status == 201
    body = await created.json()
    key = body["key"]
    assert key.startswith("hx_") and body["prefix"] == key[:12] and body["name"] == "laptop"

    used = await client.get("/api/v1/users/me", headers={"X-API-Key": key})
    assert used.status == 200 and (await used.json())["authenticated_with"] == "api_key"

    listing = await (await client.get("/api/v1/auth/api-keys", headers=user.headers)).json()
    mine = {k["id"]: k for k in listing["items"]}
    assert set(mine) >= {body["id"]}
    assert mine[body["id"]]["prefix"] == body["prefix"]
    assert mine[body["id"]]["last_used_at"] is not None
    assert all("key" not in k and "key_sha256" not in k for k in listing["items"])

    revoked = await client.delete(f"/api/v1/auth/api-keys/{body['id']}", headers=user.headers)
    assert revoked.status == 200 and (await revoked.json())["revoked_at"] is not None
    assert (await client.get("/api/v1/users/me", headers={"X-API-Key": key})).status == 401
    types = [e.type for e in await node.store.read_stream(f"user-{user.user_id}")]
    assert types[-2:] == ["api_key.created", "api_key.revoked"]


async def test_keys_are_stored_hashed(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    assert node.pool is not None
    rows = await node.pool.fetch("SELECT prefix, key_sha256 FROM api_keys")
    assert rows and all(user.key not in (r["prefix"], r["key_sha256"]) for r in rows)
    events = await node.store.read_stream(f"user-{user.user_id}")
    assert user.key not in str([e.data for e in events])


async def test_another_users_key_cannot_be_revoked_and_looks_absent(
    client: TestClient[Any, Any], user: Any, other_user: Any
) -> None:
    theirs = await (await client.get("/api/v1/auth/api-keys", headers=other_user.headers)).json()
    key_id = theirs["items"][0]["id"]

    resp = await client.delete(f"/api/v1/auth/api-keys/{key_id}", headers=user.headers)

    assert resp.status == 404
    assert (await client.get("/api/v1/users/me", headers=other_user.headers)).status == 200


async def test_an_unknown_or_malformed_api_key_is_401(
    client: TestClient[Any, Any], user: Any
) -> None:
    forged = user.key[:12] + "A" * (len(user.key) - 12)
    for key in (forged, "hx_short", "hx_" + "B" * 43):
        resp = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {key}"})
        assert resp.status == 401, key


async def test_only_admins_list_create_and_change_users(
    client: TestClient[Any, Any], admin: Any, user: Any, worker: Any, auditor: Any
) -> None:
    for caller in (user, worker, auditor):
        assert (await client.get("/api/v1/users", headers=caller.headers)).status == 403
        resp = await client.post(
            "/api/v1/users", json={"username": "x", "role": "admin"}, headers=caller.headers
        )
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "FORBIDDEN"

    listing = await (await client.get("/api/v1/users", headers=admin.headers)).json()
    assert {u["username"] for u in listing["items"]} == {"root", "alice", "worker1", "auditor1"}
    assert (listing["has_more"], listing["next"]) == (False, None)


async def test_an_admin_creates_a_user_who_can_then_log_in(
    client: TestClient[Any, Any], admin: Any, node: LogNode
) -> None:
    resp = await client.post(
        "/api/v1/users",
        json={"username": "dave", "password": "s3cret-passphrase", "role": "worker"},
        headers=admin.headers,
    )
    assert resp.status == 201
    dave = await resp.json()
    assert dave["role"] == "worker"

    login = await client.post(
        "/api/v1/auth/login", json={"username": "dave", "password": "s3cret-passphrase"}
    )
    assert login.status == 200
    created = (await node.store.read_stream(f"user-{dave['id']}"))[0]
    assert created.type == "user.created"
    assert created.metadata["actor"].startswith("key:")
    assert created.metadata["request_id"] and created.metadata["source"] == "127.0.0.1"
    assert "s3cret-passphrase" not in str(created.data)


async def test_a_taken_username_is_a_conflict(client: TestClient[Any, Any], admin: Any) -> None:
    resp = await client.post("/api/v1/users", json={"username": "root"}, headers=admin.headers)

    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "CONFLICT"


async def test_bad_user_input_is_refused_with_the_field_named(
    client: TestClient[Any, Any], admin: Any
) -> None:
    cases = [
        ({"username": "ok", "role": "emperor"}, "role"),
        ({"username": "no spaces"}, "username"),
        ({"username": "ok", "password": "short"}, "password"),
        ({"password": "longenough"}, "username"),
    ]
    for body, name in cases:
        resp = await client.post("/api/v1/users", json=body, headers=admin.headers)
        assert resp.status == 422, body
        assert (await resp.json())["error"]["details"]["field"] == name


async def test_a_role_change_takes_effect_at_once_and_is_an_event(
    client: TestClient[Any, Any], admin: Any, user: Any, node: LogNode
) -> None:
    assert (await client.get("/api/v1/users", headers=user.headers)).status == 403

    resp = await client.patch(
        f"/api/v1/users/{user.user_id}", json={"role": "admin"}, headers=admin.headers
    )

    assert resp.status == 200 and (await resp.json())["role"] == "admin"
    assert (await client.get("/api/v1/users", headers=user.headers)).status == 200
    changed = (await node.store.read_stream(f"user-{user.user_id}"))[-1]
    assert changed.type == "user.role_changed"
    assert (changed.data["from_role"], changed.data["to_role"]) == ("user", "admin")


async def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(
    client: TestClient[Any, Any], admin: Any
) -> None:
    for change in ({"role": "user"}, {"disabled": True}):
        resp = await client.patch(
            f"/api/v1/users/{admin.user_id}", json=change, headers=admin.headers
        )
        assert resp.status == 409, change


async def test_an_admin_may_create_a_key_for_another_user_but_a_user_may_not(
    client: TestClient[Any, Any], admin: Any, user: Any, worker: Any
) -> None:
    denied = await client.post(
        "/api/v1/auth/api-keys", json={"user_id": worker.user_id}, headers=user.headers
    )
    assert denied.status == 403

    made = await client.post(
        "/api/v1/auth/api-keys", json={"user_id": worker.user_id}, headers=admin.headers
    )
    assert made.status == 201
    key = (await made.json())["key"]
    me = await (await client.get("/api/v1/users/me", headers={"X-API-Key": key})).json()
    assert me["username"] == "worker1"


async def test_external_issuer_tokens_map_to_an_auto_provisioned_user(
    make_client: Any, node: LogNode
) -> None:
    client = await make_client(
        external_jwt_secret="chat-front-end-shared-secret-0123456789",
        external_jwt_issuer="https://chat.example",
        external_jwt_audience="helix-api",
    )
    claims = {
        "sub": "slack|U123",
        "iss": "https://chat.example",
        "aud": "helix-api",
        "exp": datetime.now(UTC) + timedelta(minutes=5),
    }
    token = jwt.encode(claims, "chat-front-end-shared-secret-0123456789", algorithm="HS256")
    headers = {"Authorization": f"Bearer {token}"}

    first = await (await client.get("/api/v1/users/me", headers=headers)).json()
    second = await (await client.get("/api/v1/users/me", headers=headers)).json()

    assert first["id"] == second["id"]
    assert first["role"] == "user" and first["external"] is True
    assert first["username"] == "slack_U123"
    wrong_aud = jwt.encode({**claims, "aud": "other"}, "chat-front-end-shared-secret-0123456789")
    resp = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {wrong_aud}"})
    assert resp.status == 401


async def test_an_external_subject_never_maps_to_a_local_user_of_that_name(
    make_client: Any, admin: Any
) -> None:
    secret = "chat-front-end-shared-secret-0123456789"
    client = await make_client(
        external_jwt_secret=secret,
        external_jwt_issuer="chat",
        external_jwt_audience="helix",
    )
    token = jwt.encode(
        {
            "sub": "root",
            "iss": "chat",
            "aud": "helix",
            "exp": datetime.now(UTC) + timedelta(minutes=5),
        },
        secret,
    )

    me = await (
        await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    ).json()

    assert me["role"] == "user" and me["username"] != "root"


async def test_the_jwt_secret_is_generated_once_and_shared_through_the_database(
    make_client: Any, user: Any, token_for: Any, client: TestClient[Any, Any]
) -> None:
    other_node_client = await make_client()

    resp = await other_node_client.get("/api/v1/users/me", headers=token_for(user))

    assert resp.status == 200


async def test_external_issuer_tokens_signed_with_a_private_key_verify_with_its_public_key(
    make_client: Any,
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    client = await make_client(
        external_jwt_public_key=public_pem,
        external_jwt_issuer="https://chat.example",
        external_jwt_audience="helix-api",
    )
    claims = {
        "sub": "chat|42",
        "iss": "https://chat.example",
        "aud": "helix-api",
        "exp": datetime.now(UTC) + timedelta(minutes=5),
    }
    token = jwt.encode(claims, private, algorithm="RS256")
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 200
    assert (await me.json())["external"] is True

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256")
    resp = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status == 401


OPEN_WEBUI_SECRET = "open-webui-style-signing-secret-0123456789"


def open_webui_token(claims: dict[str, Any], secret: str = OPEN_WEBUI_SECRET) -> str:
    """A token as a chat front end like Open WebUI signs it: its user in `id`, no iss, no aud."""
    return jwt.encode(
        {"exp": datetime.now(UTC) + timedelta(minutes=5), **claims}, secret, algorithm="HS256"
    )


async def test_a_chat_front_ends_own_tokens_name_their_user_in_the_configured_claim(
    make_client: Any,
) -> None:
    client = await make_client(
        external_jwt_secret=OPEN_WEBUI_SECRET, external_jwt_subject_claim="id"
    )
    token = open_webui_token({"id": "8d1b7c2e-front-end-user"})
    headers = {"Authorization": f"Bearer {token}"}

    me = await client.get("/api/v1/users/me", headers=headers)
    assert me.status == 200, await me.text()
    first = await me.json()
    again = await (await client.get("/api/v1/users/me", headers=headers)).json()

    assert first["external"] is True and first["role"] == "user"
    assert first["username"] == "8d1b7c2e-front-end-user" and again["id"] == first["id"]
    made = await client.post("/api/v1/projects", json={"name": "from chat"}, headers=headers)
    assert made.status == 201, await made.text()


async def test_a_chat_front_ends_token_without_a_usable_subject_or_expired_is_401(
    make_client: Any, admin: Any
) -> None:
    client = await make_client(
        external_jwt_secret=OPEN_WEBUI_SECRET, external_jwt_subject_claim="id"
    )
    refused = {
        "a number in the subject claim": open_webui_token({"id": 1234}),
        "an object in the subject claim": open_webui_token({"id": {"user": "x"}}),
        "no subject claim": open_webui_token({"sub": "x", "email": "x@example.org"}),
        "expired": open_webui_token({"id": "u1", "exp": datetime.now(UTC) - timedelta(minutes=5)}),
        "no exp": jwt.encode({"id": "u1"}, OPEN_WEBUI_SECRET, algorithm="HS256"),
        "another service's audience": open_webui_token({"id": "u1", "aud": "elsewhere"}),
        "another key": open_webui_token({"id": "u1"}, secret="not-the-front-ends-secret-0123456"),
    }
    for what, token in refused.items():
        resp = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 401, what
        body = await resp.json()
        assert body["error"]["code"] == "UNAUTHORIZED", what
        assert body["request_id"] == resp.headers["X-Request-ID"], what
    users = await (await client.get("/api/v1/users", headers=admin.headers)).json()
    assert users["items"] and not [u for u in users["items"] if u["external"]]
