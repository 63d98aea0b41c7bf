"""Random worker command sequences: the state a worker's events fold into is always what the
sequence of accepted commands says, and a refused command changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from uuid import UUID

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from helix.domain import worker
from helix.domain.worker import (
    WorkerCameOnline,
    WorkerPruned,
    WorkerRegistered,
    WorkerWentOffline,
)
from helix.errors import InvalidTransition

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WORKER_ID = UUID("00000000-0000-4000-8000-0000000000b1")
USER_ID = UUID("00000000-0000-4000-8000-0000000000c1")


class WorkerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = worker.INITIAL
        self.events: list[worker.Event] = []
        self.now = T0
        self.registered = False
        self.online = False
        self.pruned = False

    def _try(self, command: worker.Command) -> bool:
        before = self.state
        try:
            caused = worker.decide(self.state, command)
        except InvalidTransition as refused:
            assert self.state is before
            assert refused.current == (
                None
                if not self.registered
                else ("pruned" if self.pruned else ("online" if self.online else "offline"))
            )
            return False
        assert len(caused) == 1
        self.events += caused
        self.state = worker.fold(caused, self.state)
        return True

    @rule(seconds=st.integers(1, 600))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(capabilities=st.lists(st.sampled_from(["shell", "gpu", "review"]), min_size=1))
    def register(self, capabilities: list[str]) -> None:
        command = worker.RegisterWorker(
            worker_id=WORKER_ID, user_id=USER_ID, name="w", hostname="box",
            capabilities=tuple(capabilities), at=self.now,
        )  # fmt: skip
        accepted = self._try(command)
        assert accepted == (not self.registered)
        if accepted:
            self.registered = self.online = True
            assert self.state.capabilities == tuple(dict.fromkeys(capabilities))

    @rule(silent_for=st.integers(0, 600))
    def mark_offline(self, silent_for: int) -> None:
        last = self.now - timedelta(seconds=silent_for)
        accepted = self._try(worker.MarkOffline(last_heartbeat_at=last, at=self.now))
        assert accepted == (self.registered and self.online and not self.pruned)
        if accepted:
            self.online = False
            assert self.state.offline_since == self.now

    @rule()
    def mark_online(self) -> None:
        accepted = self._try(worker.MarkOnline(at=self.now))
        assert accepted == (self.registered and not self.online and not self.pruned)
        if accepted:
            self.online = True

    @rule()
    def prune(self) -> None:
        accepted = self._try(worker.PruneWorker(at=self.now))
        assert accepted == (self.registered and not self.online and not self.pruned)
        if accepted:
            self.pruned = True

    @invariant()
    def the_log_folds_into_the_state(self) -> None:
        assert worker.fold(self.events) == self.state
        assert (self.state.exists, self.state.online) == (self.registered, self.online)
        assert self.state.pruned == self.pruned
        assert self.state.offline_since is None or not self.online
        kinds = [type(e) for e in self.events]
        assert kinds[:1] in ([], [WorkerRegistered])
        assert WorkerRegistered not in kinds[1:]
        # Offline and online alternate after the registration, offline first; a pruning comes
        # last, after an offline.
        assert WorkerPruned not in kinds[:-1]
        if kinds[-1:] == [WorkerPruned]:
            assert kinds[-2] is WorkerWentOffline
            kinds = kinds[:-1]
        assert kinds[1:2] in ([], [WorkerWentOffline])
        for earlier, later in pairwise(kinds[1:]):
            assert {earlier, later} == {WorkerWentOffline, WorkerCameOnline}


TestWorkerMachine = WorkerMachine.TestCase
