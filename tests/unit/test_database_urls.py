"""Database URLs are changed with a URL library: a socket directory in the query survives."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from helix.database import database_name, sqlalchemy_url, with_database

SOCKET_URL = "postgresql://u@/db?host=/run/pg"


def test_a_bench_scratch_database_beside_a_socket_directory_url_keeps_the_socket() -> None:
    scratch = with_database(SOCKET_URL, "helix_bench_0a1b2c3d")
    parts = urlsplit(scratch)
    assert (parts.scheme, parts.username, parts.hostname) == ("postgresql", "u", None)
    assert parts.path == "/helix_bench_0a1b2c3d"
    assert parse_qs(parts.query) == {"host": ["/run/pg"]}
    assert database_name(scratch) == "helix_bench_0a1b2c3d"


def test_the_database_name_and_driver_come_from_the_parsed_url() -> None:
    assert database_name(SOCKET_URL) == "db"
    assert database_name("postgresql://u:p%40ss@db.internal:6432/helix?sslmode=require") == "helix"
    assert sqlalchemy_url(SOCKET_URL).startswith("postgresql+asyncpg://u@/db?host=")
    assert with_database("postgresql://u:p%40ss@h/x", "y") == "postgresql://u:p%40ss@h/y"
