"""`helix projections status` and `helix projections rebuild NAME|all` as a user runs them."""

from __future__ import annotations

import argparse
import io
import uuid

import pytest

from helix.bootstrap import LogNode
from helix.cli import projections as cli
from helix.config import Settings
from helix.services import Caller, Services
from projections import registry
from projections.rebuild import Progress

ALICE = Caller(user_id="alice-id", name="alice", actor="user:alice-id")


@pytest.fixture(autouse=True)
def database_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIX_DATABASE_URL", database_url)


async def discussed(node: LogNode, settings: Settings) -> tuple[Services, uuid.UUID]:
    """A project started by a message, its events positioned."""
    services = Services.build(node.store, settings)
    state = await services.projects.discuss(ALICE, content="hello")
    assert state.id is not None
    await node.store.wait_for_position(3, 10)
    return services, state.id


async def test_status_lists_every_projection_with_its_lag(
    node: LogNode, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await Services.build(node.store, settings).projects.discuss(ALICE, content="hello")

    assert await cli.run_status(argparse.Namespace()) == 0

    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) >= {"projects", "jobs", "phases", "output", "messages"}
    assert "never run" in lines["projects"]


async def test_rebuild_replays_a_projection_and_reports_progress(
    node: LogNode, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    services, project_id = await discussed(node, settings)

    code = await cli.run_rebuild(argparse.Namespace(name="messages", batch_size=1))

    assert code == 0
    out = capsys.readouterr().out
    assert "rebuild messages: 100%" in out  # not a terminal: plain progress lines
    assert "rebuilt messages: 1 events" in out
    thread = await services.queries.messages(ALICE, project_id)
    assert [m["content"] for m in thread["items"]] == ["hello"]


async def test_rebuild_all_rebuilds_every_projection_and_the_api_reads_the_same(
    node: LogNode, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    services, project_id = await discussed(node, settings)
    before = await services.queries.project(ALICE, project_id)

    code = await cli.run_rebuild(argparse.Namespace(name="all", batch_size=100))

    assert code == 0
    out = capsys.readouterr().out
    rebuilt = [
        line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("rebuilt ")
    ]
    assert rebuilt == [p.name for p in registry.ALL]
    assert await services.queries.project(ALICE, project_id) == before


async def test_rebuilding_an_unknown_projection_names_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli.run_rebuild(argparse.Namespace(name="nope", batch_size=10)) == 2
    err = capsys.readouterr().err
    assert "known: " in err and "'all'" in err


def test_on_a_terminal_progress_is_a_bar_with_rate_and_eta() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    display = cli.ProgressDisplay(out)
    display(Progress(projection="jobs", position=50, target=100, events=40, elapsed=2.0))
    display.done()
    text = out.getvalue()
    assert text.startswith("\rjobs [###############---------------]  50.0%")
    assert "20 events/s" in text and "ETA 2s" in text
