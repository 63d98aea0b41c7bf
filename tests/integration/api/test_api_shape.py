"""One API shape: ids, methods, the list envelope, query parameters, positions and aliases,
the same on every route."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support import error_of

Client = TestClient[Any, Any]
NOT_A_UUID = "0000-not-a-uuid"


# --- ids and methods --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/v1/users/{NOT_A_UUID}"),
        ("PATCH", f"/api/v1/users/{NOT_A_UUID}"),
        ("DELETE", f"/api/v1/auth/api-keys/{NOT_A_UUID}"),
        ("GET", f"/api/v1/projects/{NOT_A_UUID}"),
        ("GET", f"/api/v1/jobs/{NOT_A_UUID}/output"),
        ("GET", f"/api/v1/webhooks/{NOT_A_UUID}"),
        ("GET", f"/api/v1/workers/{NOT_A_UUID}"),
        ("POST", f"/api/v1/jobs/{NOT_A_UUID}/cancel"),
    ],
)
async def test_an_id_that_is_not_a_uuid_names_no_resource(
    client: Client, admin: Any, method: str, path: str
) -> None:
    resp = await client.request(method, path, json={}, headers=admin.headers)

    assert (await error_of(resp, 404))["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/users/me", "GET,HEAD"),
        ("GET", "/api/v1/workers/register", "POST"),
        ("GET", "/api/v1/workers/heartbeat", "POST"),
        ("DELETE", "/api/v1/projects", "GET,HEAD,POST"),
    ],
)
async def test_a_wrong_method_is_405_method_not_allowed_with_the_paths_own_methods(
    client: Client, admin: Any, method: str, path: str, allow: str
) -> None:
    resp = await client.request(method, path, headers=admin.headers)

    error = await error_of(resp, 405)
    assert error["code"] == "METHOD_NOT_ALLOWED"
    assert resp.headers["Allow"] == allow
    assert error["details"]["allowed_methods"] == allow.split(",")
