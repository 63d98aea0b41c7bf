"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from helix.api.openapi import served_routes
from helix.api.requests import query_rule
from helix.api.scopes import ROUTE_SCOPES
from helix.domain.user.scopes import SCOPES


def served(app: web.Application) -> set[tuple[str, str]]:
    return {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }


async def test_the_document_lists_exactly_the_routes_the_app_serves(
    client: TestClient[Any, Any], app: web.Application
) -> None:
    resp = await client.get("/api/v1/openapi.json")

    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m, path) for path, ops in doc["paths"].items() for m in ops}
    assert documented == served(app)
    assert ("post", "/api/v1/auth/login") in documented


async def test_operations_have_summaries_path_parameters_and_request_bodies(
    client: TestClient[Any, Any],
) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()

    patch = doc["paths"]["/api/v1/users/{user_id}"]["patch"]
    assert patch["summary"].startswith("Change a user's role")
    assert patch["parameters"] == [
        {
            "name": "user_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        }
    ]
    body = patch["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"role", "disabled"}
    assert all(op.get("summary") for ops in doc["paths"].values() for op in ops.values())
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


async def test_the_document_declares_bearer_and_api_key_security_and_public_routes(
    client: TestClient[Any, Any],
) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()

    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert {k: v for k, v in schemes["apiKey"].items() if k != "description"} == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert doc["paths"]["/api/v1/auth/login"]["post"]["security"] == []
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert doc["paths"]["/api/v1/users/me"]["get"]["security"] == [
        {"bearer": ["account"]},
        {"apiKey": ["account"]},
    ]


async def test_every_operation_names_the_scope_it_needs_and_the_schemes_list_every_scope(
    client: TestClient[Any, Any],
) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()

    for name in SCOPES:
        assert f"`{name}`" in doc["components"]["securitySchemes"]["bearer"]["description"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            needed = ROUTE_SCOPES[(method.upper(), path)]
            expected = [] if needed is None else [{"bearer": [needed]}, {"apiKey": [needed]}]
            assert operation["security"] == expected, (method, path)


async def test_every_operation_has_parameter_and_response_schemas_and_whole_summaries(
    client: TestClient[Any, Any], app: web.Application
) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()

    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            where = f"{method} {path}"
            assert operation["summary"].endswith("."), where
            for parameter in operation.get("parameters", []):
                assert parameter["schema"], where
            for status, response in operation["responses"].items():
                if "$ref" in response or status in ("204", "304"):  # no body
                    continue
                assert response.get("content"), where
                assert all(media["schema"] for media in response["content"].values()), where
    for method, path, handler in served_routes(app):
        declared = {
            p["name"]
            for p in doc["paths"][path][method.lower()].get("parameters", [])
            if p["in"] == "query"
        }
        assert declared == set(query_rule(handler).names), f"{method} {path}"
    stream = doc["paths"]["/api/v1/events/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["2XX"]["content"]
    assert {"name": "Last-Event-ID", "in": "header"}.items() <= next(
        p for p in stream["parameters"] if p["in"] == "header"
    ).items()
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["2XX"]["content"]
    assert "text/html" in doc["paths"]["/"]["get"]["responses"]["2XX"]["content"]
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in login["parameters"])


async def test_every_integer_query_parameter_s_range_is_the_one_the_server_enforces(
    client: TestClient[Any, Any], admin: Any
) -> None:
    """For each list route without path parameters: its documented bounds of `limit`,
    `offset` and `after` are accepted, one past either end is a 422 naming the parameter."""
    doc = await (await client.get("/api/v1/openapi.json")).json()
    checked = []
    for path, ops in doc["paths"].items():
        get = ops.get("get")
        if get is None or "{" in path or path.endswith("/stream"):
            continue
        for param in get.get("parameters", []):
            if param["in"] != "query" or param["name"] not in ("limit", "offset", "after"):
                continue
            schema = param["schema"]
            assert schema["type"] == "integer", (path, param)
            low, high = schema["minimum"], schema["maximum"]
            for value, status in ((low, 200), (high, 200), (low - 1, 422), (high + 1, 422)):
                resp = await client.get(
                    path, params={param["name"]: str(value)}, headers=admin.headers
                )
                assert resp.status == status, (path, param["name"], value, await resp.text())
                if status == 422:
                    body = await resp.json()
                    assert body["error"]["details"]["field"] == param["name"]
            checked.append((path, param["name"], high))
    # The routes whose pages differ from the default are among them, each with its own bound.
    assert ("/api/v1/users", "limit", 500) in checked
    assert ("/api/v1/events", "limit", 1000) in checked
    assert ("/api/v1/projects", "limit", 200) in checked
    assert len(checked) >= 10, checked


async def test_every_yes_or_no_query_parameter_takes_exactly_its_documented_values(
    client: TestClient[Any, Any], admin: Any
) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    checked = []
    for path, ops in doc["paths"].items():
        get = ops.get("get")
        if get is None or "{" in path:
            continue
        for param in get.get("parameters", []):
            if param["in"] != "query" or set(param["schema"].get("enum", ())) != {
                "true", "false", "1", "0",
            }:  # fmt: skip
                continue
            name = param["name"]
            answers = {}
            for value in param["schema"]["enum"]:
                resp = await client.get(path, params={name: value}, headers=admin.headers)
                assert resp.status == 200, (path, name, value, await resp.text())
                answers[value] = (await resp.json())["items"]
            assert answers["1"] == answers["true"] and answers["0"] == answers["false"], path
            resp = await client.get(path, params={name: "maybe"}, headers=admin.headers)
            assert resp.status == 422, (path, name)
            assert (await resp.json())["error"]["details"]["field"] == name
            checked.append((path, name))
    assert ("/api/v1/workers", "online") in checked
    assert ("/api/v1/auth/api-keys", "include_revoked") in checked
