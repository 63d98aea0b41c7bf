"""The SSE wire format: what the server writes, and the client parser reading it back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from helix.client.sse import Message, Parser
from helix.eventstore import RecordedEvent
from helix.streams import Frame
from helix.streams.sse import KEEPALIVE, named_message
from tests.support import frame_of


def frame(position: int) -> Frame:
    return frame_of(
        RecordedEvent(
            event_id=uuid.uuid4(),
            stream_id="job-1",
            stream_type="job",
            version=1,
            position=position,
            project_id=None,
            type="job.phase_output",
            schema_version=1,
            data={"lines": ["one\ntwo"]},
            metadata={},
            recorded_at=datetime.now(UTC),
        ),
        None,
    )


def parse(text: str) -> tuple[list[Message], Parser]:
    parser = Parser()
    got = [parser.feed_line(line) for line in text.split("\n")]
    return [m for m in got if m is not None], parser


def test_an_event_is_one_message_with_its_position_type_and_one_line_of_json() -> None:
    text = "retry: 2000\n\n" + frame(42).sse.decode() + KEEPALIVE + named_message("done", {})

    messages, parser = parse(text)

    assert [(m.event, m.id) for m in messages] == [("job.phase_output", "42"), ("done", None)]
    assert json.loads(messages[0].data)["data"] == {"lines": ["one\ntwo"]}
    assert parser.retry_ms == 2000
    assert parser.last_id == "42"
