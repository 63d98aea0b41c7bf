"""Phase templates: named phase plans a project can be created from.

The built-in `ai-development` template is the usual flow of AI development work: plan,
implement, test, review, document. Its phases carry a prompt and no command, so each waits for
a worker offering the capability named after it (an agent that knows how to plan, review …):
the in-process worker offers them all when HELIX_AGENT_COMMAND names an agent to run for a
phase without a command (`agent_capabilities`). A deployment may instead give the phases
commands of their own — a coding agent's command line, a test runner — in a JSON file named by
HELIX_PHASE_TEMPLATES, which may also add templates or replace this one:

    {"templates": {"ai-development": [{"name": "plan",
                                       "command": ["sh", "-c", "agent -p \"$HELIX_PROMPT\""],
                                       "prompt": "Write a plan for the project in PLAN.md",
                                       "timeout_s": 1800, "capabilities": ["shell"],
                                       "env": {"MODE": "plan"}}, ...]}}
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from helix.config import Settings
from helix.domain.project import PhaseSpec
from helix.domain.project.decider import normalise_phases
from helix.errors import ValidationError

# The capability a phase without a command may name to run on any worker with an agent.
AGENT_CAPABILITY = "agent"
_AI_DEVELOPMENT = {
    "plan": "Read the project in the context file and write a plan for it to PLAN.md.",
    "implement": "Implement the plan in PLAN.md in this workspace.",
    "test": "Write and run tests for what was implemented; fix what fails.",
    "review": "Review the changes in this workspace against PLAN.md and fix what you find.",
    "document": "Document what was built, and how to use it, in README.md.",
}
BUILTIN: dict[str, tuple[PhaseSpec, ...]] = {
    "ai-development": tuple(
        PhaseSpec(name=name, prompt=prompt) for name, prompt in _AI_DEVELOPMENT.items()
    ),
}
_PHASE_FIELDS = frozenset({"name", "command", "timeout_s", "capabilities", "env", "prompt"})


class TemplateError(ValueError):
    """The templates file cannot be used; raised at startup, naming the file and the problem."""


def phase_from_json(raw: Any, where: str) -> PhaseSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise TemplateError(f"{where}: a phase is an object with a string `name`")
    unknown = set(raw) - _PHASE_FIELDS
    if unknown:
        raise TemplateError(f"{where}: unknown fields {sorted(unknown)}")
    command, timeout = raw.get("command"), raw.get("timeout_s")
    caps, env = raw.get("capabilities", []), raw.get("env", {})
    if command is not None and not (
        isinstance(command, list) and all(isinstance(a, str) for a in command)
    ):
        raise TemplateError(f"{where}.command: an argv, a list of strings")
    if timeout is not None and not isinstance(timeout, int | float):
        raise TemplateError(f"{where}.timeout_s: a number of seconds")
    if not (isinstance(caps, list) and all(isinstance(c, str) for c in caps)):
        raise TemplateError(f"{where}.capabilities: a list of strings")
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise TemplateError(f"{where}.env: an object of strings")
    prompt = raw.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise TemplateError(f"{where}.prompt: a string")
    return PhaseSpec(
        name=raw["name"],
        command=tuple(command) if command is not None else None,
        timeout_s=float(timeout) if timeout is not None else None,
        capabilities=tuple(caps),
        env=dict(env),
        prompt=prompt,
    )


@functools.cache
def load(path: Path | None) -> dict[str, tuple[PhaseSpec, ...]]:
    """The built-in templates, then the file's (which win by name), each validated."""
    templates = dict(BUILTIN)
    if path is None:
        return templates
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TemplateError(f"phase templates file {path}: {exc}") from exc
    found = document.get("templates") if isinstance(document, dict) else None
    if not isinstance(found, dict):
        raise TemplateError(f'phase templates file {path}: expected {{"templates": {{...}}}}')
    for name, phases in found.items():
        if not isinstance(phases, list) or not phases:
            raise TemplateError(f"{path}: template {name!r} must be a non-empty list of phases")
        plan = tuple(phase_from_json(p, f"{path}: {name}[{i}]") for i, p in enumerate(phases))
        try:
            templates[name] = normalise_phases(plan)
        except ValidationError as exc:
            raise TemplateError(f"{path}: template {name!r}: {exc.message}") from exc
    return templates


def agent_capabilities(settings: Settings) -> tuple[str, ...]:
    """What a worker with an agent command offers: `agent`, and the capabilities of every
    configured template's phases without a command (a plan phase needs `plan`, and so on)."""
    found = [AGENT_CAPABILITY]
    for plan in load(settings.phase_templates_file).values():
        for phase in normalise_phases(plan):
            if phase.command is None:
                found.extend(phase.capabilities)
    return tuple(dict.fromkeys(found))


def names(settings: Settings) -> list[str]:
    """The configured templates' names, sorted."""
    return sorted(load(settings.phase_templates_file))


def resolve(settings: Settings, name: str | None) -> tuple[PhaseSpec, ...]:
    """The phases of template `name` (None: the configured default); 422 if unknown."""
    templates = load(settings.phase_templates_file)
    chosen = settings.default_template if name is None else name
    try:
        return templates[chosen]
    except KeyError:
        known = ", ".join(sorted(templates))
        raise ValidationError(
            f"no phase template named {chosen!r} (known: {known})", field="template"
        ) from None
