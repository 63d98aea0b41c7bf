"""Who may write phase commands (HELIX_PHASE_COMMANDS): one check for every phase plan on its
way in (a project created or replanned) and on its way out (a run started).

A phase command is code a worker runs. `anyone` lets every user write one; `admins` only admins,
everyone else only the phases of a configured template; `templates` nobody, so that only the
configured templates' phases have commands. A phase exactly as a configured template defines it
(command, env and all) is always allowed: the admin who configured the templates chose it.
Runs are checked too, so that tightening the setting takes effect at once for projects whose
commands were written before.
"""

from __future__ import annotations

from collections.abc import Iterable

from helix.config import PhaseCommands, Settings
from helix.domain.project import PhaseSpec
from helix.domain.project.decider import normalise_phases
from helix.errors import Forbidden
from helix.services import templates
from helix.services.caller import Caller

SETTING = "HELIX_PHASE_COMMANDS"
_WHO = {PhaseCommands.ADMINS: "admins", PhaseCommands.TEMPLATES: "the configured templates"}


def check(settings: Settings, caller: Caller, phases: Iterable[PhaseSpec]) -> None:
    """403 naming the rule if the plan has a command that `caller` may not give or run."""
    rule = settings.phase_commands
    if rule is PhaseCommands.ANYONE or (rule is PhaseCommands.ADMINS and caller.admin):
        return
    chosen = [p for plan in templates.load(settings.phase_templates_file).values() for p in plan]
    for index, phase in enumerate(normalise_phases(phases)):
        if phase.command is not None and phase not in chosen:
            raise Forbidden(
                f"phase {phase.name!r} has a command that is not a configured template's: "
                f"phase commands are limited to {_WHO[rule]} by {SETTING}={rule.value}",
                field=f"phases[{index}].command",
                phase=phase.name,
                setting=SETTING,
                rule=rule.value,
            )
