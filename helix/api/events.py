"""The audit log over HTTP: filtered pages of events and single events by position.

`X-Helix-Position` is where a subscriber with the same filters goes on from, missing nothing and
getting nothing twice: for a page, the position up to which the log was read (for a short page
the head, not just its last event); for one event, that event's position.
"""

from __future__ import annotations

from aiohttp import web

from helix.api.handlers import caller, documented, listing, position, reply
from helix.api.requests import int_query, query_params
from helix.appkeys import POOL
from helix.audit import log
from helix.audit.filters import EventFilter, check_range, parse_types, parse_uuid
from helix.errors import NotFound
from helix.inputs import parse_time
from helix.services import Caller

routes = web.RouteTableDef()
MAX_POSITION = 2**62
# The HelixCode seed's names for the filters, taken as aliases (one name or the other).
SEED_NAMES = {"event_type": "type", "start_time": "since", "end_time": "until"}


def _viewer(who: Caller) -> str | None:
    return who.viewer.owner_filter


def _selection(request: web.Request, who: Caller) -> EventFilter:
    query = request.query
    since = parse_time(query["since"], "since") if query.get("since") else None
    until = parse_time(query["until"], "until") if query.get("until") else None
    check_range(since, until)
    project = query.get("project_id")
    return EventFilter(
        after=int_query(request, "after", 0),
        stream_id=query.get("stream_id") or None,
        project_id=parse_uuid(project, "project_id") if project else None,
        types=parse_types(query.getall("type", [])),
        actor=query.get("actor") or None,
        since=since,
        until=until,
        viewer=_viewer(who),
    )


@routes.get("/api/v1/events")
@query_params(
    "after",
    "limit",
    "stream_id",
    "project_id",
    "type",
    "actor",
    "since",
    "until",
    aliases=SEED_NAMES,
    bounds={"after": (0, MAX_POSITION), "limit": (1, log.MAX_LIMIT)},
)
@documented(_200="a page of events in log order: items, next, has_more")
async def list_events(request: web.Request) -> web.Response:
    """The audit log: events after a position, filtered by stream_id, project_id, type globs
    (comma-separated or repeated), actor, and recorded_at (since inclusive, until exclusive,
    RFC 3339). Users see their projects' events and their own user stream's."""
    who = caller(request)
    selection = _selection(request, who)
    limit = int_query(request, "limit", log.DEFAULT_LIMIT)
    # Taken before the read, so every event up to it is sequenced and visible to the read.
    head = position(request)
    result = await log.page(request.app[POOL], selection, limit)
    # A full page stops at its last event (events after it were not read). A short one read
    # every match up to the head too, so a subscriber need not scan that stretch again.
    last = result["next_after"]
    page = listing(request, result["items"], more=result["has_more"], after=last)
    return reply(page, at=last if result["has_more"] else max(last, head))


@routes.get(r"/api/v1/events/{position:\d+}")
@documented(_200="the event at that log position")
async def get_event(request: web.Request) -> web.Response:
    """One event by its log position (404 if there is none the caller may see)."""
    who = caller(request)
    raw = request.match_info["position"]
    if not raw.isdigit() or int(raw) > MAX_POSITION:
        raise NotFound("event not found", position=raw)
    event = await log.event_at(request.app[POOL], int(raw), _viewer(who))
    if event is None:
        raise NotFound("event not found", position=int(raw))
    # Not the head: the events between this one and the head were not read.
    return reply(event, at=event["position"])
