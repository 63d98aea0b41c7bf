"""Webhook endpoints and their deliveries: register, change, rotate, test, replay, recover.

A user manages their own endpoints (another user's is 404); admins manage everyone's. The
secret is shown once, in the answer to the create (or rotate) that made it.

`X-Helix-Position`: endpoints are kept inline with their events, so an endpoint's answer carries
the head taken before the read. Deliveries are made by the dispatcher behind the log, so theirs
carries the dispatcher's checkpoint, also taken before the read: deliveries exist for every
matching event up to it (see `helix.webhooks.deliveries`).
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from aiohttp import web

from helix import globs
from helix.api.handlers import (
    PAGING,
    caller,
    documented,
    offset_listing,
    optional_body,
    paging,
    path_id,
    position,
    reply,
    strings,
    validated_body,
)
from helix.api.requests import choice_query, query_params
from helix.api.validation import object_body
from helix.appkeys import ENDPOINTS, POOL
from helix.domain import webhook
from helix.inputs import parse_time
from helix.webhooks.deliveries import delivery_page, delivery_with_attempts
from helix.webhooks.endpoints import Endpoints, endpoint_view
from helix.webhooks.replay import (
    delivery_view,
    ping,
    recover,
    replay,
    retry,
)
from helix.webhooks.signatures import SECRET_PATTERN
from helix.webhooks.ssrf import URL_PATTERN

routes = web.RouteTableDef()

BASE = "/api/v1/webhooks"
ONE = BASE + "/{endpoint_id}"
# The bounds and alphabet of `helix.globs`, which checks them again beside its other callers.
GLOBS: dict[str, Any] = {
    "type": "array",
    "items": {**strings(min_length=1, max_length=globs.MAX_LENGTH), "pattern": globs.PATTERN},
    "minItems": 1,
    "maxItems": globs.MAX_GLOBS,
}
# Only the edge bounds a time: it is parsed at once (helix.inputs.parse_time), never stored.
TIME = {**strings(min_length=1, max_length=64), "format": "date-time"}
ENDPOINT_FIELDS: dict[str, Any] = {
    "url": {
        **strings(min_length=1, max_length=webhook.MAX_URL_CHARS),
        "pattern": URL_PATTERN,
        "description": "an http(s) URL: a host name (labels of 1 to 63 letters, digits and"
        " hyphens), an IPv4 or a bracketed IPv6 address, an optional port, path and query,"
        " no user info, no fragment",
    },
    "event_types": GLOBS,
    "description": strings(max_length=webhook.MAX_DESCRIPTION_CHARS),
    "enabled": {"type": "boolean"},
}
# The HelixCode seed's name for `event_types` (one or the other).
SEED_NAMES = {"events": "event_types"}
# `whsec_…`, or a plain secret whose bytes become the signing key (`signing_secret`).
SECRET = {
    **strings(min_length=1, max_length=webhook.MAX_SECRET_CHARS),
    "pattern": SECRET_PATTERN,
    "description": "whsec_ and base64, or 24 to 64 printable ASCII characters used as the key",
}
CREATE = object_body({**ENDPOINT_FIELDS, "secret": SECRET}, required=["url"], aliases=SEED_NAMES)
UPDATE = object_body(ENDPOINT_FIELDS, aliases=SEED_NAMES)
REPLAY = object_body(
    {
        "since_position": {"type": "integer", "minimum": 1},
        "until_position": {"type": "integer", "minimum": 1},
        "since_time": TIME,
        "types": GLOBS,
    }
)
RECOVER = object_body({"since": TIME, "until": TIME}, required=["since"])
NOTHING = object_body({})


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


def _registry(request: web.Request) -> Endpoints:
    return request.app[ENDPOINTS]


async def _endpoint(request: web.Request, *, write: bool) -> uuid.UUID:
    """The endpoint of the path, if the caller may see it (404 otherwise)."""
    who = caller(request, write=write)
    endpoint_id = path_id(request, "endpoint_id", "webhook endpoint")
    await _registry(request).get(who, endpoint_id)
    return endpoint_id


@routes.post(BASE)
@documented(CREATE, _201="the endpoint, with its secret (shown only this once)")
async def create_endpoint(request: web.Request) -> web.Response:
    """Register an endpoint for event types (globs such as `job.*`; default every type)."""
    who = caller(request, write=True)
    body = await validated_body(request, CREATE)
    at = position(request)
    row, secret = await _registry(request).create(
        who,
        url=body["url"],
        event_types=body.get("event_types", ["*"]),
        description=body.get("description", ""),
        enabled=body.get("enabled", True),
        secret=body.get("secret"),
    )
    view = endpoint_view(row, secret=secret)
    return reply(view, status=201, at=at, location=f"{BASE}/{row['endpoint_id']}")


@routes.get(BASE)
@query_params(*PAGING)
@documented(_200="a page of endpoints: items, next, has_more")
async def list_endpoints(request: web.Request) -> web.Response:
    """List the caller's endpoints (an admin's: everyone's), newest first."""
    who = caller(request)
    limit, offset = paging(request)
    at = position(request)
    rows, total = await _registry(request).page(who, limit=limit, offset=offset)
    items = [endpoint_view(r) for r in rows]
    return reply(offset_listing(request, items, total, offset), at=at)


@routes.get(ONE)
@documented(_200="the endpoint (without its secret)")
async def get_endpoint(request: web.Request) -> web.Response:
    """Show an endpoint."""
    who = caller(request)
    endpoint_id = path_id(request, "endpoint_id", "webhook endpoint")
    at = position(request)
    row = await _registry(request).get(who, endpoint_id)
    return reply(endpoint_view(row), at=at)


@routes.patch(ONE)
@documented(UPDATE, _200="the updated endpoint")
async def update_endpoint(request: web.Request) -> web.Response:
    """Change an endpoint's URL, event types or description, or enable or disable it."""
    who = caller(request, write=True)
    endpoint_id = path_id(request, "endpoint_id", "webhook endpoint")
    body = await validated_body(request, UPDATE)
    registry = _registry(request)
    at = position(request)
    await registry.get(who, endpoint_id)
    row = await registry.update(
        who,
        endpoint_id,
        url=body.get("url"),
        event_types=body.get("event_types"),
        description=body.get("description"),
        enabled=body.get("enabled"),
    )
    return reply(endpoint_view(row), at=at)


@routes.delete(ONE)
@documented(_204="deleted: no more deliveries")
async def delete_endpoint(request: web.Request) -> web.Response:
    """Delete an endpoint; its pending deliveries are never sent."""
    who = caller(request, write=True)
    endpoint_id = path_id(request, "endpoint_id", "webhook endpoint")
    await _registry(request).delete(who, endpoint_id)
    return web.Response(status=204)


@routes.post(ONE + "/rotate-secret")
@documented(_200="the endpoint with its new secret (shown only this once)")
async def rotate_secret(request: web.Request) -> web.Response:
    """Replace the signing secret; the old one keeps signing beside it for the overlap."""
    who = caller(request, write=True)
    endpoint_id = path_id(request, "endpoint_id", "webhook endpoint")
    at = position(request)
    row, secret = await _registry(request).rotate_secret(who, endpoint_id)
    return reply(endpoint_view(row, secret=secret), at=at)


@routes.post(ONE + "/test")
@documented(_202="the queued `webhook.ping` delivery")
async def test_endpoint(request: web.Request) -> web.Response:
    """Send a `webhook.ping` to the endpoint."""
    endpoint_id = await _endpoint(request, write=True)
    row = await ping(request.app[POOL], endpoint_id)
    return reply(delivery_view(row), status=202)


@routes.post(ONE + "/replay")
@documented(REPLAY, _202="how many deliveries were queued, and the positions they cover")
async def replay_history(request: web.Request) -> web.Response:
    """Deliver again the matching events from `since_position` (inclusive) or `since_time`,
    optionally only `types`, as new deliveries marked replay."""
    endpoint_id = await _endpoint(request, write=True)
    body = await validated_body(request, REPLAY)
    since_time = body.get("since_time")
    result = await replay(
        request.app[POOL],
        endpoint_id,
        since_position=body.get("since_position"),
        since_time=parse_time(since_time, "since_time") if since_time else None,
        until_position=body.get("until_position"),
        types=body.get("types"),
    )
    return reply(
        {
            "deliveries": result.deliveries,
            "first_position": result.first_position,
            "last_position": result.last_position,
            "next_position": result.next_position,
        },
        status=202,
    )


@routes.post(ONE + "/recover")
@documented(RECOVER, _202="how many failed deliveries were queued again")
async def recover_failed(request: web.Request) -> web.Response:
    """Queue again every delivery created since `since` (until `until`) that failed and never
    succeeded."""
    endpoint_id = await _endpoint(request, write=True)
    body = await validated_body(request, RECOVER)
    until = parse_time(body["until"], "until") if body.get("until") else None
    count = await recover(request.app[POOL], endpoint_id, parse_time(body["since"], "since"), until)
    return reply({"deliveries": count}, status=202)


@routes.get(ONE + "/deliveries")
@query_params(*PAGING, "status", choices={"status": DeliveryStatus})
@documented(_200="a page of deliveries, newest first: items, next, has_more")
async def list_deliveries(request: web.Request) -> web.Response:
    """List an endpoint's deliveries, optionally by status (pending, succeeded, dead)."""
    endpoint_id = await _endpoint(request, write=False)
    status = choice_query(request, "status")
    limit, offset = paging(request)
    at, items, total = await delivery_page(request.app[POOL], endpoint_id, status, limit, offset)
    return reply(offset_listing(request, items, total, offset), at=at)


@routes.get(ONE + "/deliveries/{delivery_id}")
@documented(_200="the delivery with every attempt")
async def get_delivery(request: web.Request) -> web.Response:
    """Show a delivery and its attempts (status, latency, error, response)."""
    endpoint_id = await _endpoint(request, write=False)
    delivery_id = path_id(request, "delivery_id", "delivery")
    at, view = await delivery_with_attempts(request.app[POOL], endpoint_id, delivery_id)
    return reply(view, at=at)


@routes.post(ONE + "/deliveries/{delivery_id}/retry")
@documented(NOTHING, _202="the new delivery that resends it")
async def retry_delivery(request: web.Request) -> web.Response:
    """Send a delivery again (a new delivery, same `webhook-id`)."""
    endpoint_id = await _endpoint(request, write=True)
    delivery_id = path_id(request, "delivery_id", "delivery")
    await optional_body(request, NOTHING)
    row = await retry(request.app[POOL], endpoint_id, delivery_id)
    return reply(delivery_view(row), status=202)
