"""`helix.domain.job.waiting.unmet`: a job waits exactly when no one worker covers its needs,
and what it names is what is missing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from helix.domain.job import Need, unmet

CAPABILITIES = ("shell", "plan", "review", "gpu", "agent")

capability_sets = st.lists(st.sampled_from(CAPABILITIES), max_size=4, unique=True).map(tuple)
needs = st.lists(
    st.builds(Need, capabilities=capability_sets, has_command=st.booleans()), max_size=5
)
offers = st.lists(st.frozensets(st.sampled_from(CAPABILITIES)), max_size=4)


@given(needs=needs, offers=offers)
def test_a_job_waits_exactly_when_no_single_worker_offers_all_it_needs(
    needs: list[Need], offers: list[frozenset[str]]
) -> None:
    needed = {c for need in needs for c in need.capabilities}
    waiting = unmet(needs, offers, "online")

    # Nothing left to run needs no worker.
    assert (waiting is None) == (not needed or any(offer >= needed for offer in offers))
    if waiting is None:
        return
    named = set(waiting.capabilities)
    assert named and named <= needed and len(named) == len(waiting.capabilities)
    offered_anywhere = set().union(*offers)
    if needed - offered_anywhere:
        # Named: exactly the capabilities no worker offers at all.
        assert named == needed - offered_anywhere
        assert all(c in waiting.reason for c in named)
    else:
        # Each is offered somewhere, but no worker has them all: all of them are named.
        assert named == needed and "together" in waiting.reason
    if not offers:
        assert waiting.reason.startswith("no worker is online")


@given(needs=needs, offers=offers)
def test_the_agent_hint_is_given_only_for_a_phase_without_a_command(
    needs: list[Need], offers: list[frozenset[str]]
) -> None:
    waiting = unmet(needs, offers, "registered")
    if waiting is None:
        return
    blamed = set(waiting.capabilities)
    commandless = any(not n.has_command and blamed & set(n.capabilities) for n in needs)
    assert ("HELIX_AGENT_COMMAND" in waiting.reason) == commandless
    assert unmet(needs, offers, "registered") == waiting  # a pure function


def test_the_default_plan_waits_for_agents_on_a_shell_only_deployment() -> None:
    plan = [Need(capabilities=(name,), has_command=False) for name in ("plan", "review")]

    waiting = unmet(plan, [{"shell"}], "online")

    assert waiting is not None and waiting.capabilities == ("plan", "review")
    assert waiting.reason.startswith("no online worker offers plan, review; ")
    assert unmet(plan, [{"shell"}, {"shell", "plan", "review", "agent"}], "online") is None
