"""A phase's environment is built from nothing: whatever the worker's holds, the phase gets
PATH and the locale from it and nothing else, beside HOME, USER, LOGNAME, its own variables and
the job's (JOB_VARIABLES: the job, project, phase, workspace, context file, model, prompt)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from helix.worker.isolation import (
    DEFAULT_PATH,
    INHERITED_PREFIXES,
    INHERITED_VARIABLES,
    JOB_VARIABLES,
    PhaseUser,
    job_variables,
    phase_environment,
)

names = st.one_of(
    st.sampled_from(
        sorted(INHERITED_VARIABLES | JOB_VARIABLES | {"HOME", "USER", "HELIX_WORKER_KEY", "LC_ALL"})
    ),
    st.text(min_size=1, max_size=12),
)
environments = st.dictionaries(names, st.text(max_size=20), max_size=12)
USER = PhaseUser(name="helix-phase", uid=995, gid=994, home=None, switch=True)
WORKSPACE = Path("/srv/helix/workspaces/p1")


@given(worker_env=environments, extra=environments)
def test_a_phase_gets_nothing_of_the_workers_environment_but_path_and_the_locale(
    worker_env: dict[str, str], extra: dict[str, str]
) -> None:
    env = phase_environment(worker_env, user=USER, workspace=WORKSPACE, extra=extra)

    for name, value in env.items():
        if name in extra:
            assert value == extra[name]
        elif name == "HOME":
            assert value == str(WORKSPACE)
        elif name in ("USER", "LOGNAME"):
            assert value == "helix-phase"
        elif name == "PATH" and "PATH" not in worker_env:
            assert value == DEFAULT_PATH
        else:
            assert name in INHERITED_VARIABLES or name.startswith(INHERITED_PREFIXES)
            assert value == worker_env[name]
    assert {"PATH", "HOME", "USER", "LOGNAME"} <= set(env)


@given(
    worker_env=environments,
    phase_env=environments,
    model=st.one_of(st.none(), st.text(max_size=20)),
    prompt=st.one_of(st.none(), st.text(max_size=40)),
)
def test_a_phase_gets_its_jobs_variables_over_its_own_and_no_other_helix_variable(
    worker_env: dict[str, str],
    phase_env: dict[str, str],
    model: str | None,
    prompt: str | None,
) -> None:
    job = job_variables(
        job_id="j1",
        project_id="p1",
        phase="plan",
        workspace=WORKSPACE,
        context_file=WORKSPACE / ".helix-context.json",
        model=model,
        prompt=prompt,
    )
    env = phase_environment(worker_env, user=USER, workspace=WORKSPACE, extra={**phase_env, **job})

    assert set(job) <= JOB_VARIABLES
    for name, value in job.items():
        assert env[name] == value
    assert ("HELIX_MODEL" in env) == bool(model) or "HELIX_MODEL" in phase_env
    assert ("HELIX_PROMPT" in env) == bool(prompt) or "HELIX_PROMPT" in phase_env
    assert env["HELIX_CONTEXT_FILE"] == str(WORKSPACE / ".helix-context.json")
    helix = {n for n in env if n.startswith("HELIX_")}
    assert helix <= JOB_VARIABLES | {n for n in phase_env if n.startswith("HELIX_")}
