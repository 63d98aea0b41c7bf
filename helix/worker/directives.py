"""What a phase's output says to Helix: `::helix` directives on stdout, and lines to drop.

A phase command reports through its stdout, one directive a line:

    ::helix progress 40                    the job's progress, 0 to 100
    ::helix cost tokens=1200 usd=0.03      cost to add to the phase's (either key may be left out)
    ::helix file path/to/x                 a file it produced, inside the workspace
    ::helix message <text>                 posted to the project's discussion as role `agent`

A directive becomes a report instead of an output line. A line that only looks like one (an
unknown verb, a value out of bounds, a message too long) stays an output line: the phase's
output is never lost and a typo is not an error.

Output filter patterns (HELIX_OUTPUT_FILTER_PATTERNS) drop the lines they match anywhere
(`re.search`). Python's regular expressions backtrack, so the patterns are held to a syntax
whose matching time cannot explode: no backreferences, lookarounds or conditionals, and no
repetition of anything that itself repeats or branches (`(a+)+`, `(a|ab)*`). What is left runs
in time polynomial in the line's length, which the worker caps at 16 384 characters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

# Where the decider's bounds are, so a directive out of them stays output rather than being
# refused by the server.
from helix.domain.job.decider import MAX_AGENT_MESSAGE_CHARS, MAX_COST_TOKENS, MAX_PATH_CHARS

PREFIX = "::helix "
MAX_FILTER_PATTERNS = 50
MAX_FILTER_PATTERN_CHARS = 500

try:  # the parser's module was renamed in Python 3.11
    import re._constants as _c  # type: ignore[import-not-found,unused-ignore]
    import re._parser as _p  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore[no-redef,unused-ignore]
    import sre_parse as _p  # type: ignore[no-redef,unused-ignore]


@attrs.frozen(kw_only=True)
class Progress:
    percent: int


@attrs.frozen(kw_only=True)
class Cost:
    tokens: int
    usd: float


@attrs.frozen(kw_only=True)
class File:
    path: str


@attrs.frozen(kw_only=True)
class Message:
    content: str


Directive = Progress | Cost | File | Message
_INTEGER = re.compile(r"[0-9]{1,20}")
_NUMBER = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")


def parse(line: str) -> Directive | None:
    """The directive `line` is, or None for a plain output line."""
    if not line.startswith(PREFIX):
        return None
    verb, _, rest = line[len(PREFIX) :].partition(" ")
    rest = rest.strip()
    match verb:
        case "progress":
            if _INTEGER.fullmatch(rest) and 0 <= int(rest) <= 100:
                return Progress(percent=int(rest))
        case "cost":
            return _cost(rest)
        case "file":
            if rest and len(rest) <= MAX_PATH_CHARS and "\x00" not in rest:
                return File(path=rest)
        case "message":
            if rest and len(rest) <= MAX_AGENT_MESSAGE_CHARS:
                return Message(content=rest)
    return None


def _cost(rest: str) -> Cost | None:
    values: dict[str, str] = {}
    for item in rest.split():
        key, sep, value = item.partition("=")
        if not sep or key not in ("tokens", "usd") or key in values:
            return None
        values[key] = value
    if not values:
        return None
    tokens, usd = values.get("tokens", "0"), values.get("usd", "0")
    if not (_INTEGER.fullmatch(tokens) and _NUMBER.fullmatch(usd)):
        return None
    if int(tokens) > MAX_COST_TOKENS or not math.isfinite(float(usd)):
        return None
    return Cost(tokens=int(tokens), usd=float(usd))


# --- output filter --------------------------------------------------------------------------


class UnsafePattern(ValueError):
    """An output filter pattern that is not a regular expression, or not one safe to run."""


_REFUSED = {
    _c.GROUPREF: "a backreference",
    _c.GROUPREF_EXISTS: "a conditional",
    _c.ASSERT: "a lookaround",
    _c.ASSERT_NOT: "a lookaround",
}
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT)}


def check_pattern(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled, or UnsafePattern saying why it is refused."""
    if len(pattern) > MAX_FILTER_PATTERN_CHARS:
        raise UnsafePattern(f"{pattern[:40]!r}…: longer than {MAX_FILTER_PATTERN_CHARS} characters")
    try:
        compiled = re.compile(pattern)
        parsed = _p.parse(pattern)
    except re.error as exc:
        raise UnsafePattern(f"{pattern!r}: not a regular expression: {exc}") from None
    problem = _problem(parsed, repeated=False)
    if problem is not None:
        raise UnsafePattern(f"{pattern!r}: {problem} is not allowed in an output filter")
    return compiled


def _problem(items: Iterable[tuple[Any, Any]], *, repeated: bool) -> str | None:
    for op, arg in items:
        if op in _REFUSED:
            return _REFUSED[op]
        if op in _REPEATS:
            if repeated:
                return "a repetition inside a repetition"
            _, _, body = arg
            found = _problem(body, repeated=True)
        elif op is _c.BRANCH:
            if repeated:
                return "an alternation inside a repetition"
            found = next((p for p in (_problem(b, repeated=False) for b in arg[1]) if p), None)
        elif op is _c.SUBPATTERN:
            found = _problem(arg[-1], repeated=repeated)
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            found = _problem(arg, repeated=repeated)
        else:
            found = None
        if found is not None:
            return found
    return None


@attrs.frozen
class OutputFilter:
    """Drops the output lines any of its patterns matches."""

    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(cls, patterns: Sequence[str]) -> OutputFilter:
        if len(patterns) > MAX_FILTER_PATTERNS:
            raise UnsafePattern(f"at most {MAX_FILTER_PATTERNS} output filter patterns")
        return cls(tuple(check_pattern(p) for p in patterns))

    def keeps(self, line: str) -> bool:
        return not any(p.search(line) for p in self.patterns)
