"""Schemathesis hooks for tests/e2e/test_schemathesis.py: the body rules no JSON schema can
say, so the requests generated as valid are valid.

- Every JSON integer is within int64 (`helix.inputs`); JSON Schema cannot tell the integer
  10**30 from the float 1e30, which Helix takes.
- An API key's `expires_at` must be in the future: a rule of time.
- A phase's env value `{"sealed": …}` is a ciphertext this server made (a view shows it, so a
  client may send the project back unchanged); a generated one never opens.
- A run's `start_phase` names a phase of that project's plan.
- A replay gives exactly one of `since_position` and `since_time`.
- A message's `model` and `priority` are for the run it starts (`run`: true); a schema could
  say so (`dependentSchemas`), but the document's bodies stay plain objects of properties.
- An audit query's `until` is not before its `since`.
"""

from __future__ import annotations

import datetime
from typing import Any

import schemathesis

from helix.inputs import MAX_INT, MIN_INT


def _sealed(value: Any) -> bool:
    if isinstance(value, dict):
        return "sealed" in value or any(_sealed(v) for v in value.values())
    if isinstance(value, list):
        return any(_sealed(v) for v in value)
    return False


def _huge(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not MIN_INT <= value <= MAX_INT
    if isinstance(value, dict):
        return any(_huge(v) for v in value.values())
    if isinstance(value, list):
        return any(_huge(v) for v in value)
    return False


def _past(raw: Any) -> bool:
    try:
        when = datetime.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return False  # not a time at all: the server refuses it, as it should
    if when.tzinfo is None:
        return False
    return when <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    operation = context.operation
    if _huge(body):
        return False
    if operation is None or not isinstance(body, dict):
        return True
    if operation.path == "/api/v1/auth/api-keys" and "expires_at" in body:
        return not _past(body["expires_at"])
    if operation.path.endswith("/execute") and body.get("start_phase") is not None:
        return False
    if operation.path.endswith("/replay"):
        return ("since_position" in body) != ("since_time" in body)
    if operation.path.endswith("/messages") and body.get("run") is not True:
        return "model" not in body and "priority" not in body
    if operation.path.startswith(("/api/v1/projects", "/api/v1/quick-action")):
        return not _sealed(body.get("phases"))
    return True


def _time(raw: Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None


@schemathesis.hook
def filter_query(context: Any, query: Any) -> bool:
    if not isinstance(query, dict):
        return True
    since, until = _time(query.get("since")), _time(query.get("until"))
    if since is None or until is None or since.tzinfo is None or until.tzinfo is None:
        return True
    return since <= until
