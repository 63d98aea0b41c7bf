"""The benchmark's SSE client finds every tick however the bytes are split across reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helix.bench.stream_clients import Counter, Follower

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 2000\n\n"
CAUGHT_UP = b'event: caught_up\ndata: {"position":7}\n\n'


def tick(position: int, stamp: float) -> bytes:
    data = b'{"position":%d,"type":"bench.tick","data":{"t":%r},"metadata":{}}' % (
        position,
        stamp,
    )
    return b"id: %d\nevent: bench.tick\ndata: %b\n\n" % (position, data)


@given(
    stamps=st.lists(st.floats(min_value=1.0, max_value=1e6), min_size=1, max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=200),
)
def test_every_tick_is_found_once_wherever_the_reads_split(
    stamps: list[float], cuts: list[int]
) -> None:
    stream = HEAD + CAUGHT_UP + b"".join(tick(8 + n, s) for n, s in enumerate(stamps))
    latencies: list[float] = []
    follower = Follower(None, latencies)
    offset = 0
    for size in [*cuts, len(stream)]:
        follower.feed(stream[offset : offset + size], 2e6)
        offset += size
        if offset >= len(stream):
            break

    assert follower.caught_up
    assert follower.received == len(stamps)
    assert latencies == pytest.approx([(2e6 - s) * 1000 for s in stamps])


def test_a_refused_stream_is_an_error() -> None:
    follower = Follower(None, [])

    with pytest.raises(RuntimeError, match="refused"):
        follower.feed(b"HTTP/1.1 401 Unauthorized\r\n\r\n", 1.0)


def test_no_tick_counts_before_its_number_has_fully_arrived() -> None:
    latencies: list[float] = []
    follower = Follower(None, latencies)
    follower.feed(HEAD + CAUGHT_UP + b'data: {"data":{"t":12', 100.0)

    assert latencies == []

    follower.feed(b"3.5}}\n\n", 200.0)

    assert latencies == [pytest.approx((200.0 - 123.5) * 1000)]


@given(
    count=st.integers(min_value=0, max_value=30),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=300),
)
def test_a_replay_counts_each_message_once_up_to_the_caught_up_marker(
    count: int, cuts: list[int]
) -> None:
    body = b"".join(tick(n + 1, 1.5) for n in range(count))
    stream = HEAD + body + CAUGHT_UP + tick(count + 1, 2.5)
    counter = Counter()
    offset = 0
    for size in [*cuts, len(stream)]:
        counter.feed(stream[offset : offset + size])
        offset += size
        if counter.caught_up or offset >= len(stream):
            break

    assert counter.caught_up
    assert counter.received == count


def test_a_tick_is_found_in_json_spaced_as_postgresql_prints_it() -> None:
    latencies: list[float] = []
    follower = Follower(None, latencies)
    follower.feed(HEAD + CAUGHT_UP + b'data: {"data" : {"t": 12', 100.0)
    follower.feed(b"3.5}}\n\n", 200.0)

    assert latencies == [pytest.approx((200.0 - 123.5) * 1000)]
