"""The JSON form of a recorded event: each named variant, exactly, for fixed events."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from helix import envelope
from helix.audit.export import export_line
from helix.audit.importer import parse_line
from helix.eventstore import RecordedEvent
from helix.eventstore.chain import GENESIS, link

JOB = "6a1d0c8e-3b2f-4f5a-8e9d-1c2b3a4d5e6f"
PROJECT = "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f"
EVENT = "0b6f1c2e-5d4a-4e8b-9c1d-2f3a4b5c6d7e"
DATA = {"job_id": JOB, "phase": "build", "at": "2026-03-04T05:06:07.089000+00:00", "note": "é ✓"}
METADATA = {"actor": "user:1", "request_id": "req-1", "source": "api"}


def event_row(recorded_at: datetime) -> dict[str, Any]:
    """A stored event row (as asyncpg gives it), recorded in a zone other than UTC."""
    return {
        "position": 42,
        "event_id": uuid.UUID(EVENT),
        "stream_id": f"job-{JOB}",
        "stream_type": "job",
        "version": 3,
        "project_id": uuid.UUID(PROJECT),
        "type": "job.phase_started",
        "schema_version": 1,
        "data": DATA,
        "metadata": METADATA,
        "recorded_at": recorded_at,
        "hash": b"\x01" * 32,
    }


# 06:06:07 at +01:00, on the second exactly: the case where plain isoformat() drops the fraction.
ON_THE_SECOND = datetime(2026, 3, 4, 6, 6, 7, tzinfo=timezone(timedelta(hours=1)))
ROW = event_row(ON_THE_SECOND)
FIELDS = {
    "event_id": EVENT,
    "stream_id": f"job-{JOB}",
    "stream_type": "job",
    "version": 3,
    "project_id": PROJECT,
    "type": "job.phase_started",
    "schema_version": 1,
    "data": DATA,
    "metadata": METADATA,
}


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def recorded(row: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(**{k: v for k, v in row.items() if k != "hash"})


def test_the_public_envelope_has_every_field_and_a_utc_z_time_with_six_fraction_digits() -> None:
    assert envelope.public(ROW) == {
        "position": 42,
        **FIELDS,
        "recorded_at": "2026-03-04T05:06:07.000000Z",
    }


def test_a_recorded_event_and_its_stored_row_render_the_same() -> None:
    event = recorded(ROW)

    assert envelope.public(event) == envelope.public(ROW)
    assert envelope.chain(42, event) == envelope.chain(42, ROW)


def test_the_webhook_envelope_is_the_public_one_plus_the_standard_webhooks_keys() -> None:
    assert envelope.webhook(ROW) == {
        "id": EVENT,
        "timestamp": "2026-03-04T05:06:07.000000Z",
        **envelope.public(ROW),
    }


def test_the_chain_document_keeps_its_plus_zero_offset_time() -> None:
    assert envelope.chain(42, ROW) == {
        "position": 42,
        **FIELDS,
        "recorded_at": "2026-03-04T05:06:07.000000+00:00",
    }


def test_the_export_object_is_the_chain_document_plus_the_hash() -> None:
    assert envelope.export(ROW) == {**envelope.chain(42, ROW), "hash": "01" * 32}


# The links below were computed by the hash chain before the envelope had one module; a log
# written then must still verify, so these values never change.
def test_the_chain_link_of_a_fixed_event_is_the_one_logs_already_hold() -> None:
    assert link(GENESIS, 42, ROW).hex() == (
        "7582eda65fe49f409f24619f3ad27cae1afd918a35c4529ab9c1f263296a6e25"
    )
    assert envelope.chain_bytes(42, ROW).decode() == (
        '{"data":{"at":"2026-03-04T05:06:07.089000+00:00",'
        f'"job_id":"{JOB}","note":"é ✓","phase":"build"}},'
        f'"event_id":"{EVENT}","metadata":{{"actor":"user:1","request_id":"req-1",'
        f'"source":"api"}},"position":42,"project_id":"{PROJECT}",'
        '"recorded_at":"2026-03-04T05:06:07.000000+00:00","schema_version":1,'
        f'"stream_id":"job-{JOB}","stream_type":"job","type":"job.phase_started","version":3}}'
    )


def test_the_chain_link_of_an_event_without_a_project_is_the_one_logs_already_hold() -> None:
    row = {
        "event_id": uuid.UUID(int=1),
        "stream_id": "user-00000000-0000-0000-0000-000000000002",
        "stream_type": "user",
        "version": 1,
        "project_id": None,
        "type": "user.created",
        "schema_version": 1,
        "data": {"role": "admin"},
        "metadata": {},
        "recorded_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    }

    assert link(GENESIS, 1, row).hex() == (
        "0b533a7087c5c2aa145c4791b36a38f7dac3b4186ade2fa1726021dbfd8bd65d"
    )


def test_an_export_line_written_before_the_envelope_module_still_parses_and_links() -> None:
    old_line = (
        f'{{"position":42,"event_id":"{EVENT}","stream_id":"job-{JOB}","stream_type":"job",'
        f'"version":3,"project_id":"{PROJECT}","type":"job.phase_started","schema_version":1,'
        f'"data":{compact(DATA)},"metadata":{compact(METADATA)},'
        '"recorded_at":"2026-03-04T05:06:07.000000+00:00",'
        f'"hash":"{"01" * 32}"}}\n'
    )

    assert export_line(ROW) == old_line
    parsed = parse_line(old_line, 1)
    assert link(GENESIS, 42, parsed) == link(GENESIS, 42, ROW)


def test_rfc3339_renders_any_zone_as_utc_with_z_and_microseconds() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=timezone(timedelta(hours=-5)))

    assert envelope.rfc3339(at) == "2026-01-02T08:04:05.000600Z"
    assert envelope.rfc3339(None) is None
