"""The client reads any event stream the server writes back to the same messages, however the
network splits its bytes; and the CLI's and client's query values are the API's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helix.client.errors import STATUS_BY_CODE, RateLimited, api_error
from helix.client.http import query
from helix.client.sse import LineTooLong, Message, Parser, lines
from helix.streams.sse import KEEPALIVE, named_message

# JSON payloads as the server writes them: one line each (json.dumps escapes newlines).
payloads = st.dictionaries(
    st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=40)), max_size=4
)
positions = st.integers(min_value=1, max_value=2**40)
messages = st.lists(st.tuples(positions, st.sampled_from(["job.a", "x.y"]), payloads), max_size=12)


def wire(events: list[tuple[int, str, dict[str, object]]]) -> bytes:
    out = ["retry: 2000\n\n"]
    for position, kind, data in events:
        out.append(KEEPALIVE)
        out.append(f"id: {position}\nevent: {kind}\ndata: {json.dumps(data)}\n\n")
    out.append(named_message("done", {"position": 1}))
    return "".join(out).encode()


async def _chunks(raw: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        yield raw[start:cut]
        start = cut
    yield raw[start:]


async def _read(raw: bytes, cuts: list[int], max_line: int = 2**20) -> list[Message]:
    parser = Parser()
    found = []
    async for line in lines(_chunks(raw, cuts), max_line):
        message = parser.feed_line(line)
        if message is not None:
            found.append(message)
    return found


@given(messages, st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_a_stream_split_anywhere_parses_to_the_messages_written(
    events: list[tuple[int, str, dict[str, object]]], cuts: list[int]
) -> None:
    raw = wire(events)
    got = asyncio.run(_read(raw, [c for c in cuts if c <= len(raw)]))
    expected = [Message(kind, json.dumps(data), str(pos)) for pos, kind, data in events]
    assert got[:-1] == expected
    assert got[-1].event == "done" and got[-1].id is None


@given(messages, st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_a_line_over_the_limit_is_refused_however_it_is_split(
    events: list[tuple[int, str, dict[str, object]]], cuts: list[int]
) -> None:
    raw = wire(events)
    longest = max(len(line) for line in raw.split(b"\n"))
    cuts = [c for c in cuts if c <= len(raw)]
    # At the longest line's length everything is read; one byte less, it is refused.
    assert asyncio.run(_read(raw, cuts, longest)) == asyncio.run(_read(raw, []))
    with pytest.raises(LineTooLong):
        asyncio.run(_read(raw, cuts, longest - 1))


@given(messages, st.integers(min_value=1, max_value=400))
def test_a_line_cut_off_by_a_dropped_connection_is_never_a_message(
    events: list[tuple[int, str, dict[str, object]]], keep: int
) -> None:
    raw = wire(events)
    got = asyncio.run(_read(raw[:keep], []))
    whole = asyncio.run(_read(raw, []))
    # What is read is a prefix of what was written: nothing half-read, nothing invented.
    assert got == whole[: len(got)]
    if keep < len(raw):
        assert len(got) < len(whole) or raw[keep:].strip(b"\n") == b""


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    )
)
def test_query_values_leave_out_none_and_spell_booleans_as_the_api_reads_them(
    params: dict[str, object],
) -> None:
    sent = query(params)  # type: ignore[arg-type]
    assert set(sent) == {name for name, value in params.items() if value is not None}
    for name, value in sent.items():
        given_value = params[name]
        if isinstance(given_value, bool):
            assert value == ("true" if given_value else "false")
        else:
            assert value == str(given_value)


@given(st.sampled_from(sorted(STATUS_BY_CODE)), st.text(max_size=50), st.binary(max_size=50))
def test_an_error_answer_keeps_its_envelope_and_any_other_body_its_status(
    code: str, message: str, junk: bytes
) -> None:
    status = STATUS_BY_CODE[code]
    body = json.dumps(
        {"error": {"code": code, "message": message, "details": {"f": 1}}, "request_id": "req_1"}
    ).encode()
    error = api_error(status, body, {"Retry-After": "7"})
    assert (error.status, error.code, error.message) == (status, code, message)
    assert error.details == {"f": 1} and error.request_id == "req_1"
    assert isinstance(error, RateLimited) == (status == 429)
    assert error.retry_after == 7.0
    other = api_error(status, b"<html>" + junk, {"X-Request-ID": "req_2"})
    assert other.status == status and other.code == f"HTTP_{status}"
    assert other.request_id == "req_2" and type(other) is type(error)
