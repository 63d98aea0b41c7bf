from __future__ import annotations

from typing import Any

from helix.eventstore.sequencer import order_batch


def row(id_: int, stream: str, version: int, after_positioned: bool) -> dict[str, Any]:
    return {
        "event_id": id_,
        "stream_id": stream,
        "version": version,
        "after_positioned": after_positioned,
    }


def test_a_batch_keeps_transaction_order_across_streams() -> None:
    rows = [row(1, "a", 1, True), row(2, "b", 1, True), row(3, "a", 2, False)]
    assert [r["event_id"] for r in order_batch(rows)] == [1, 2, 3]


def test_a_later_version_that_comes_first_by_transaction_id_swaps_with_the_earlier_one() -> None:
    # T2 (older id) wrote a-v2 after T1 (younger id) committed a-v1.
    rows = [row(10, "x", 1, True), row(11, "a", 2, False), row(5, "a", 1, True)]
    ordered = order_batch(rows)
    assert [(r["stream_id"], r["version"]) for r in ordered] == [("x", 1), ("a", 1), ("a", 2)]


def test_a_version_whose_predecessor_has_no_position_and_is_not_in_the_batch_waits() -> None:
    rows = [row(10, "x", 1, True), row(11, "a", 2, False), row(12, "a", 3, False)]
    assert [r["event_id"] for r in order_batch(rows)] == [10]


def test_a_run_stops_at_a_gap_in_versions() -> None:
    rows = [row(11, "a", 7, True), row(12, "a", 8, False), row(13, "a", 10, False)]
    assert [r["version"] for r in order_batch(rows)] == [7, 8]
