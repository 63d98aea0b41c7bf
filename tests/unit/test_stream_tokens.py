"""Stream tokens: minted for one user, short-lived, and refused anywhere else."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from helix.auth.tokens import TokenVerifier, issue_token
from helix.config import Settings
from helix.errors import Unauthorized
from helix.streams import tokens

SECRET = "s" * 32
SETTINGS = Settings(stream_token_ttl_seconds=300)


def test_a_stream_token_names_its_user_and_expires_after_its_ttl() -> None:
    user_id = uuid.uuid4()
    token, expires = tokens.mint(SECRET, SETTINGS, user_id=user_id)

    assert tokens.verify(SECRET, SETTINGS, token) == (user_id, expires)
    assert tokens.is_stream_token(token, SETTINGS)
    assert timedelta(seconds=290) < expires - datetime.now(UTC) <= timedelta(seconds=300)


def test_an_expired_or_forged_stream_token_is_refused() -> None:
    old, _ = tokens.mint(
        SECRET, SETTINGS, user_id=uuid.uuid4(), now=datetime.now(UTC) - timedelta(hours=1)
    )
    forged, _ = tokens.mint("x" * 32, SETTINGS, user_id=uuid.uuid4())

    for token in (old, forged, "garbage"):
        with pytest.raises(Unauthorized):
            tokens.verify(SECRET, SETTINGS, token)


def test_a_stream_token_is_not_a_bearer_token_and_a_bearer_token_is_not_a_stream_token() -> None:
    user_id = uuid.uuid4()
    stream_token, _ = tokens.mint(SECRET, SETTINGS, user_id=user_id)
    bearer, _ = issue_token(SECRET, SETTINGS, user_id=user_id, username="a", role="admin")

    with pytest.raises(Unauthorized):
        TokenVerifier(SECRET, SETTINGS).verify(stream_token)
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, SETTINGS, bearer)
    assert not tokens.is_stream_token(bearer, SETTINGS)
