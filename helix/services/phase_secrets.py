"""Phase secrets in the service layer: sealed before a plan reaches the decider, opened only for
the worker that claims the job, and masked out of what that worker reports.

A request's plan arrives as `PhaseDraft`s: the phase spec (plain env values, and secrets sealed
earlier that the client sent back as shown) and the plaintext of its new secrets. `seal_plan`
turns them into plain `PhaseSpec`s for one project before anything is decided or appended, so
no event, read model or response ever holds a secret's plaintext.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from uuid import UUID

import attrs

from helix.auth.sealing import Sealer, SecretError
from helix.domain.job import (
    FailJob,
    FailPhase,
    JobState,
    RecordArtifactNotStored,
    RecordFile,
    RecordOutput,
    SkipPhase,
    StoreArtifact,
    WorkerReport,
)
from helix.domain.job.decider import MAX_LINE_CHARS
from helix.domain.project import PhaseSpec, SealedSecret
from helix.domain.project.decider import check_env_name
from helix.errors import Unavailable, ValidationError

MAX_SECRET_CHARS = 16_384
MASK = "***"
# Every report is searched once for each secret value and each line of a multi-line one, in
# the request path: a plan holds at most this many, so that search stays cheap.
MAX_MASKED = 100
MIN_MASKED_LINE = 4  # a shorter line of a multi-line secret gives nothing away
# Opened secrets by phase name, then variable name.
Opened = Mapping[str, Mapping[str, str]]


@attrs.frozen(kw_only=True)
class PhaseDraft:
    """A phase as a request gives it, before its new secrets are sealed for the project."""

    spec: PhaseSpec
    secrets: Mapping[str, str] = attrs.field(factory=dict, repr=False)


def _sealer(sealer: Sealer | None) -> Sealer:
    if sealer is None:
        raise Unavailable("phase secrets need a secrets key, and this service has none")
    return sealer


def _check_plaintext(value: str, field: str, phase: str) -> None:
    if not value.strip() or len(value) > MAX_SECRET_CHARS:
        raise ValidationError(
            f"a secret is 1 to {MAX_SECRET_CHARS} characters, not only blanks",
            field=field,
            phase=phase,
        )
    if "\x00" in value or not _is_text(value):
        raise ValidationError("a secret must be text, without NUL", field=field, phase=phase)


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def masked_pieces(values: Iterable[str]) -> list[str]:
    """What masking replaces: each value, and each line of a multi-line one; longest first, so
    that a secret containing another is masked whole."""
    pieces: set[str] = set()
    for value in values:
        pieces.add(value)
        lines = value.splitlines()
        if len(lines) > 1:
            pieces.update(line for line in lines if len(line.strip()) >= MIN_MASKED_LINE)
    return sorted(pieces, key=len, reverse=True)


def seal_plan(
    sealer: Sealer | None, project_id: UUID, phases: Iterable[PhaseSpec | PhaseDraft]
) -> tuple[PhaseSpec, ...]:
    """The plan with every new secret sealed for `project_id`. A sealed value sent back must
    open for this project and variable: one copied from elsewhere is refused (422)."""
    plan: list[PhaseSpec] = []
    plaintexts: list[str] = []
    for index, phase in enumerate(phases):
        draft = phase if isinstance(phase, PhaseDraft) else PhaseDraft(spec=phase)
        spec, where = draft.spec, f"phases[{index}].env"
        env = dict(spec.env)
        for name, value in env.items():
            if isinstance(value, SealedSecret):
                check_env_name(name, where, spec.name)
                try:
                    plaintexts.append(_sealer(sealer).open(value, project_id=project_id, name=name))
                except SecretError as exc:
                    raise ValidationError(
                        f"{exc}; give the secret's value again",
                        field=f"{where}.{name}",
                        phase=spec.name,
                    ) from None
        for name, plaintext in draft.secrets.items():
            check_env_name(name, where, spec.name)
            _check_plaintext(plaintext, f"{where}.{name}", spec.name)
            plaintexts.append(plaintext)
            env[name] = _sealer(sealer).seal(plaintext, project_id=project_id, name=name)
        plan.append(attrs.evolve(spec, env=env))
    if len(masked_pieces(plaintexts)) > MAX_MASKED:
        raise ValidationError(
            f"a plan's secrets hold at most {MAX_MASKED} values and lines of multi-line values "
            "in all (each is masked in every report)",
            field="phases",
            max_masked=MAX_MASKED,
        )
    return tuple(plan)


def has_secrets(state: JobState) -> bool:
    return any(isinstance(v, SealedSecret) for p in state.phases for v in p.env.values())


def open_secrets(sealer: Sealer | None, state: JobState) -> Opened:
    """The plaintext of the job's phase secrets; SecretError if one does not open here."""
    if not has_secrets(state):
        return {}
    if sealer is None:
        raise SecretError("this server holds no key for phase secrets")
    assert state.project_id is not None
    opened: dict[str, dict[str, str]] = {}
    for phase in state.phases:
        for name, value in phase.env.items():
            if isinstance(value, SealedSecret):
                plaintext = sealer.open(value, project_id=state.project_id, name=name)
                opened.setdefault(phase.name, {})[name] = plaintext
    return opened


class Masker:
    """Replaces every secret value, and each line of a multi-line one, with `***`, the way CI
    systems keep secrets out of their logs."""

    def __init__(self, values: Iterable[str]) -> None:
        # One linear search per piece (str.replace), never a backtracking pattern.
        self._pieces = masked_pieces(values)

    @classmethod
    def of(cls, opened: Opened) -> Masker:
        return cls(v for values in opened.values() for v in values.values())

    def text(self, value: str) -> str:
        for piece in self._pieces:
            value = value.replace(piece, MASK)
        return value

    def _lines(self, lines: Sequence[str]) -> tuple[str, ...]:
        # A mask longer than a short secret must not push a line past the limit.
        return tuple(self.text(line)[:MAX_LINE_CHARS] for line in lines)

    def report(self, report: WorkerReport) -> WorkerReport:
        match report:
            case RecordOutput():
                return attrs.evolve(report, lines=self._lines(report.lines))
            case FailPhase():
                error, tail = self.text(report.error), self._lines(report.stderr_tail)
                return attrs.evolve(report, error=error, stderr_tail=tail)
            case FailJob():
                return attrs.evolve(report, error=self.text(report.error))
            case SkipPhase():
                return attrs.evolve(report, reason=self.text(report.reason))
            case RecordFile() | StoreArtifact():
                return attrs.evolve(report, path=self.text(report.path))
            case RecordArtifactNotStored():
                path, reason = self.text(report.path), self.text(report.reason)
                return attrs.evolve(report, path=path, reason=reason)
        return report


__all__ = [
    "MASK",
    "MAX_MASKED",
    "MAX_SECRET_CHARS",
    "Masker",
    "Opened",
    "PhaseDraft",
    "has_secrets",
    "masked_pieces",
    "open_secrets",
    "seal_plan",
]
