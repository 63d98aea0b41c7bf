"""Event type globs: the one rule for every filter by type (live streams, the audit log,
webhook endpoints and replays, the CLI).

A glob is an event type (dotted segments such as `job.phase_started`) in which `*` stands for
any run of characters, none and dots included, and `?` for exactly one character; every other
character stands for itself. A glob holds only the characters event types are made of, at most
MAX_LENGTH of them, and a filter holds at most MAX_GLOBS globs.

A glob is matched in two places that must never disagree: in SQL, as the LIKE pattern
`to_like` gives, and in memory by `TypeGlobs`, for every event the tailer fans out. The
in-memory matcher does not backtrack: the runs between stars are placed leftmost, one after
the other, which finds a match whenever there is one (a run placed further right leaves less
room to the runs after it, never more). A glob of m characters so decides a type of n
characters in O(n·m) steps whatever the glob, where a backtracking regex of `*?*?*?…A` takes
time exponential in the number of stars.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

from helix.errors import ValidationError

MAX_LENGTH = 200
MAX_GLOBS = 32
ALPHABET = frozenset(string.ascii_letters + string.digits + "._-*?")
# The same alphabet as a JSON-schema `pattern`, for the OpenAPI document.
PATTERN = r"^[A-Za-z0-9._*?-]+$"
# A filter as one text (a query parameter): globs separated by commas, each with spaces or tabs
# around it if it likes, blank items skipped (what `split` reads).
_ITEM = f"[ \\t]*([A-Za-z0-9._*?-]{{1,{MAX_LENGTH}}}[ \\t]*)?"
LIST_PATTERN = f"^{_ITEM}(,{_ITEM})*$"
# A filter's decisions are remembered per type: the log's types are few (the event registry's).
_REMEMBERED = 1024


def split(values: Iterable[object], field: str) -> tuple[str, ...]:
    """Checked globs from repeated and/or comma-separated values (`job.*,project.created`);
    spaces and tabs around an item are dropped and blank items skipped."""
    found: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise ValidationError(f"'{field}' must hold strings", field=field)
        found.extend(part.strip(" \t") for part in value.split(",") if part.strip(" \t"))
        if len(found) > MAX_GLOBS:
            break  # refused by `check`; no need to read the rest
    return check(found, field)


def check(globs: Sequence[str], field: str) -> tuple[str, ...]:
    """The globs, deduplicated, if every one is a glob and there are not too many."""
    if len(globs) > MAX_GLOBS:
        raise ValidationError(f"'{field}' holds at most {MAX_GLOBS} type globs", field=field)
    for glob in globs:
        if not 0 < len(glob) <= MAX_LENGTH:
            raise ValidationError(
                f"a type glob in '{field}' has 1 to {MAX_LENGTH} characters", field=field
            )
        if not ALPHABET.issuperset(glob):
            shown = glob if len(glob) <= 40 else glob[:40] + "…"
            raise ValidationError(
                f"type glob {shown!r} may hold only letters, digits, '.', '_', '-', '*' and '?'",
                field=field,
            )
    return tuple(dict.fromkeys(globs))


def to_like(glob: str) -> str:
    """`job.*` → `job.%`, for `type LIKE pattern` (LIKE's own `%`, `_` and escape character
    are matched literally, as they are in memory)."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def like_patterns(globs: Sequence[str] | None) -> list[str] | None:
    """The LIKE patterns of a filter's globs; None (no filter) for none."""
    return [to_like(g) for g in globs] if globs else None


class _Glob:
    """One glob as its runs: `head*middle…*tail` (a glob without a star is only a head)."""

    __slots__ = ("head", "middle", "min_length", "star", "tail")

    def __init__(self, glob: str) -> None:
        runs = glob.split("*")
        self.star = len(runs) > 1
        self.head = runs[0]
        self.tail = runs[-1] if self.star else ""
        self.middle = tuple(r for r in runs[1:-1] if r)
        self.min_length = len(glob) - glob.count("*")

    def matches(self, text: str) -> bool:
        n = len(text)
        if not self.star:
            return n == len(self.head) and _fits(self.head, text, 0)
        if n < self.min_length:
            return False
        # n >= min_length, so the head and the tail do not overlap and the middle runs have
        # the room between them to look in.
        end = n - len(self.tail)
        if not (_fits(self.head, text, 0) and _fits(self.tail, text, end)):
            return False
        at = len(self.head)
        for run in self.middle:
            at = _find(run, text, at, end)
            if at < 0:
                return False
            at += len(run)
        return True


def _fits(run: str, text: str, at: int) -> bool:
    """`run` matches `text[at:at + len(run)]` (the caller leaves room for it)."""
    if "?" not in run:
        return text.startswith(run, at)
    return all(r == "?" or r == text[at + i] for i, r in enumerate(run))


def _find(run: str, text: str, start: int, end: int) -> int:
    """The leftmost place at or after `start` where `run` matches within `text[:end]`; -1 if
    none. At most (end - start) tries of len(run) comparisons each."""
    if "?" not in run:
        return text.find(run, start, end)
    for at in range(start, end - len(run) + 1):
        if _fits(run, text, at):
            return at
    return -1


class TypeGlobs:
    """A filter's globs, compiled: a type matches if any glob matches it; no globs match
    every type."""

    __slots__ = ("_compiled", "_seen", "globs")

    def __init__(self, globs: Iterable[str] = ()) -> None:
        self.globs = tuple(globs)
        self._compiled = tuple(_Glob(g) for g in self.globs)
        self._seen: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.globs)

    def matches(self, event_type: str) -> bool:
        if not self._compiled:
            return True
        found = self._seen.get(event_type)
        if found is None:
            found = any(g.matches(event_type) for g in self._compiled)
            if len(self._seen) >= _REMEMBERED:
                self._seen.clear()
            self._seen[event_type] = found
        return found
