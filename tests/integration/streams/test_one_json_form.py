"""One JSON form of an event: the SSE `data:` line and the WebSocket `payload` (rendered by
PostgreSQL, `helix.envelope.PUBLIC_SQL`) are the REST item (`helix.envelope.public`), for any
payload, including newlines, unicode, control characters and escaped-NUL text."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from helix import envelope
from helix.bootstrap import LogNode
from helix.eventstore import ANY_VERSION, EncodedEvent
from tests.support import bounded, first_sse_event, first_websocket_event, settled

Client = TestClient[Any, Any]

# jsonb holds no NUL character (the text `\u0000`, a backslash and five characters, it does)
# and UTF-8 no lone surrogate.
TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
) | st.sampled_from(
    ["line one\nline two\r\n", "\\u0000", "\u2028\u2029", "é✓😀", 'quote " and \\ backslash']
)
SCALARS = (
    TEXT
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.booleans()
    | st.none()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
PAYLOADS = st.dictionaries(TEXT, VALUES, max_size=4)


@bounded(examples=20)
@given(payload=PAYLOADS)
async def test_an_events_sse_data_websocket_payload_and_rest_item_are_the_same_json(
    client: Client, node: LogNode, admin: Any, payload: dict[str, Any]
) -> None:
    stream_id = f"test-{uuid.uuid4().hex}"
    event = EncodedEvent(type="test.json_form", schema_version=1, data=payload)
    await node.store.append(stream_id, ANY_VERSION, [event], metadata={"note": "x\ny"})
    head = await settled(node)

    resp = await client.get(f"/api/v1/events?after={head - 1}&limit=1", headers=admin.headers)
    assert resp.status == 200
    (rest,) = (await resp.json())["items"]
    sse = await first_sse_event(client, admin.headers, head - 1)
    socket = await first_websocket_event(client, admin.headers, head - 1)
    (stored,) = await node.store.read_all(head - 1, 1)

    assert rest == envelope.public(stored)
    assert rest["data"].keys() == payload.keys()
    assert (rest["position"], rest["type"]) == (head, "test.json_form")
    assert sse == rest
    assert socket == rest
