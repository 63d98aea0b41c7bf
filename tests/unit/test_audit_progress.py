"""The progress reporter: a redrawn bar on a terminal, plain lines every N items otherwise."""

from __future__ import annotations

import io

from helix.audit.progress import ProgressReporter, duration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_a_line_is_written_every_n_items_and_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = ProgressReporter("export", 100, out=out, every=25, tty=False, clock=clock)
    for done in (10, 20, 30, 40, 60, 100):
        clock.now += 1
        reporter.update(done)
    reporter.finish()

    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "export: 30/100 events",
        "export: 60/100 events",
        "export: 100/100 events",
        "export: done",
    ]
    assert "ETA" in lines[0] and "events/s" in lines[0]


def test_on_a_terminal_one_line_is_redrawn_with_a_bar_rate_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = ProgressReporter("import", 200, out=out, tty=True, clock=clock)
    clock.now = 2.0
    reporter.update(50)
    reporter.update(60)  # too soon after the last redraw: skipped
    clock.now = 4.0
    reporter.update(100)
    reporter.finish()

    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "[#######-----------------------]  25.0%" in text
    assert "100/200 events, 25 events/s, ETA 4s" in text


def test_without_a_total_there_is_no_bar_and_no_eta() -> None:
    out = io.StringIO()
    reporter = ProgressReporter("export", None, out=out, every=1, tty=False, clock=Clock())
    reporter.update(3)
    assert out.getvalue() == "export: 3 events, 0 events/s\n"


def test_durations_read_as_seconds_minutes_or_hours() -> None:
    assert [duration(s) for s in (None, 5, 75, 3725)] == ["?", "5s", "1m15s", "1h02m"]
