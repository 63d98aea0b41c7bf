"""Phase templates: the built-in default, a deployment's file, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from helix.cli import local_worker
from helix.config import SettingError, Settings, agent_command
from helix.errors import ValidationError
from helix.services import templates
from helix.worker import WorkerConfig


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "templates.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_the_default_template_is_the_ai_development_flow_waiting_for_agents() -> None:
    plan = templates.resolve(Settings(), None)
    assert [p.name for p in plan] == ["plan", "implement", "test", "review", "document"]
    assert all(p.command is None for p in plan)


def test_a_deployment_gives_the_default_template_commands_and_adds_its_own(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        {
            "templates": {
                "ai-development": [
                    {
                        "name": "plan",
                        "command": ["sh", "-c", 'agent -p "$HELIX_PROMPT"'],
                        "timeout_s": 600,
                        "prompt": "Write PLAN.md",
                    },
                    {"name": "review", "capabilities": ["reviewer"], "env": {"MODE": "strict"}},
                ],
                "ci": [{"name": "test", "command": ["make", "test"]}],
            }
        },
    )
    settings = attrs.evolve(Settings(), phase_templates_file=path, default_template="ci")
    default = templates.resolve(settings, None)
    assert [(p.name, p.command, p.capabilities) for p in default] == [
        ("test", ("make", "test"), ("shell",))
    ]
    flow = templates.resolve(settings, "ai-development")
    assert [(p.name, p.command, p.timeout_s, p.capabilities) for p in flow] == [
        ("plan", ("sh", "-c", 'agent -p "$HELIX_PROMPT"'), 600.0, ("shell",)),
        ("review", None, None, ("reviewer",)),
    ]
    assert flow[1].env == {"MODE": "strict"}
    assert (flow[0].prompt, flow[1].prompt) == ("Write PLAN.md", None)
    with pytest.raises(ValidationError) as unknown:
        templates.resolve(settings, "nope")
    assert "ai-development, ci" in unknown.value.message


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"nothing": 1}, "expected"),
        ({"templates": {"x": []}}, "non-empty"),
        ({"templates": {"x": [{"command": ["a"]}]}}, "string `name`"),
        ({"templates": {"x": [{"name": "a", "shell": "ls"}]}}, "unknown fields"),
        ({"templates": {"x": [{"name": "a", "command": "ls -l"}]}}, "argv"),
        ({"templates": {"x": [{"name": "a"}, {"name": "a"}]}}, "used twice"),
        ({"templates": {"x": [{"name": "a", "prompt": ["do"]}]}}, "prompt: a string"),
        ({"templates": {"x": [{"name": "a", "prompt": " "}]}}, "prompt must not be empty"),
    ],
)
def test_a_broken_templates_file_is_refused_with_the_reason(
    tmp_path: Path, document: object, complaint: str
) -> None:
    path = write(tmp_path, document)
    with pytest.raises(templates.TemplateError) as refused:
        templates.load(path)
    assert complaint in str(refused.value)
    assert str(path) in str(refused.value)


def test_an_agent_command_is_a_command_line_split_as_a_shell_would_but_run_as_argv() -> None:
    line = 'sh -c \'claude -p "$HELIX_PROMPT" --model "${HELIX_MODEL:-sonnet}"\''
    assert agent_command({"HELIX_AGENT_COMMAND": line}) == (
        "sh",
        "-c",
        'claude -p "$HELIX_PROMPT" --model "${HELIX_MODEL:-sonnet}"',
    )
    assert agent_command({"HELIX_AGENT_COMMAND": "  "}) is None
    assert agent_command({}) is None
    with pytest.raises(SettingError, match="HELIX_AGENT_COMMAND"):
        agent_command({"HELIX_AGENT_COMMAND": 'aider --message "unclosed'})
    with pytest.raises(ValueError, match="agent_command"):
        WorkerConfig(server="http://h", key="k", agent_command=(" ",))


def test_with_an_agent_command_the_in_process_worker_offers_the_templates_agent_phases(
    tmp_path: Path,
) -> None:
    assert local_worker.capabilities(Settings()) == ("shell",)
    agent = attrs.evolve(Settings(), agent_command=("aider",))
    assert local_worker.capabilities(agent) == (
        "shell",
        "agent",
        "plan",
        "implement",
        "test",
        "review",
        "document",
    )
    path = write(
        tmp_path,
        {
            "templates": {
                "design": [
                    {"name": "sketch"},
                    {"name": "render", "command": ["make"], "capabilities": ["gpu"]},
                ]
            }
        },
    )
    offered = local_worker.capabilities(attrs.evolve(agent, phase_templates_file=path))
    assert "sketch" in offered and "gpu" not in offered  # a phase with a command: not the agent's


def test_the_default_template_prompts_each_phase() -> None:
    plan = templates.resolve(Settings(), None)
    assert all(p.prompt for p in plan)
    assert plan[0].prompt is not None and "PLAN.md" in plan[0].prompt
