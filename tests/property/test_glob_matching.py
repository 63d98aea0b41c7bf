"""The in-memory glob matcher and PostgreSQL's LIKE on the translated pattern agree on every
glob and type, so a live stream and a read of the log (or a webhook endpoint) select the same
events; on small inputs both agree with fnmatch too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from fnmatch import fnmatchcase

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix import globs
from helix.globs import TypeGlobs

# Few letters, so that generated types often match; LIKE's own `%`, `_` and `\` too, which
# must stay literal.
LETTERS = "ab._-%\\"
any_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
glob_text = st.text(st.sampled_from(LETTERS + "*?"), min_size=1, max_size=14)


@st.composite
def filled_in(draw: st.DrawFn, glob: str) -> str:
    """A type the glob matches, its wildcards filled in (then perhaps one character changed)."""
    out = []
    for c in glob:
        if c == "*":
            out.append(draw(st.text(st.sampled_from(LETTERS) | any_char, max_size=4)))
        elif c == "?":
            out.append(draw(st.sampled_from(LETTERS) | any_char))
        else:
            out.append(c)
    text = "".join(out)
    if text and draw(st.booleans()):
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(LETTERS)) + text[at + 1 :]
    return text


@st.composite
def globs_and_types(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    chosen = draw(st.lists(glob_text, min_size=1, max_size=3))
    types = [draw(filled_in(g)) for g in chosen for _ in range(3)]
    types += draw(st.lists(st.text(st.sampled_from(LETTERS) | any_char, max_size=12), max_size=6))
    return chosen, types


@pytest.fixture
async def conn(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_url)
    try:
        yield connection
    finally:
        await connection.close()


LIKE_ANY = """
SELECT t LIKE ANY ($2::text[]) AS found
FROM unnest($1::text[]) WITH ORDINALITY AS x (t, i)
ORDER BY i
"""


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=globs_and_types())
async def test_the_matcher_agrees_with_postgresql_like_on_the_translated_patterns(
    conn: asyncpg.Connection, case: tuple[list[str], list[str]]
) -> None:
    chosen, types = case
    rows = await conn.fetch(LIKE_ANY, types, globs.like_patterns(chosen))
    in_sql = [r["found"] for r in rows]

    assert [TypeGlobs(chosen).matches(t) for t in types] == in_sql


@settings(max_examples=1000)
@given(glob=glob_text, text=st.text(st.sampled_from(LETTERS), max_size=10))
def test_the_matcher_agrees_with_fnmatch_on_small_inputs(glob: str, text: str) -> None:
    assert TypeGlobs((glob,)).matches(text) == fnmatchcase(text, glob)
