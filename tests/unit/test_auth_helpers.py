"""Password hashes, API keys, JWTs and the token bucket, without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import attrs
import jwt
import pytest

from helix.api.ratelimit import TokenBuckets
from helix.auth import keys, passwords
from helix.auth.accounts import check_username
from helix.auth.principal import Principal
from helix.auth.tokens import TokenVerifier, issue_token
from helix.config import Settings
from helix.domain.user import Role
from helix.domain.user.scopes import ROLE_SCOPES, SCOPES, effective
from helix.errors import Unauthorized, ValidationError

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def test_a_password_verifies_against_its_hash_and_nothing_else() -> None:
    stored = passwords.hash_password("correct horse")

    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert passwords.verify_password("correct horse", stored)
    assert not passwords.verify_password("correct horsf", stored)
    assert not passwords.verify_password("correct horse", "garbage")
    assert passwords.hash_password("correct horse") != stored  # salted


def test_short_and_huge_passwords_are_refused() -> None:
    assert passwords.password_problem("short")
    assert passwords.password_problem("x" * 2000)
    assert passwords.password_problem("long enough!") is None
    assert passwords.password_problem("long enough") == "a password needs at least 12 characters"
    assert passwords.password_problem("eight ch", min_length=8) is None


def test_api_keys_are_random_prefixed_and_matched_by_their_hash() -> None:
    key = keys.generate_key()

    assert key.startswith("hx_") and keys.looks_like_key(key)
    assert keys.prefix_of(key) == key[:12]
    assert keys.key_matches(key, keys.key_sha256(key))
    assert not keys.key_matches(keys.generate_key(), keys.key_sha256(key))
    assert not keys.looks_like_key("hx_short")


def test_an_issued_token_verifies_and_carries_the_claims() -> None:
    settings = Settings()
    user_id = uuid.uuid4()
    token, expires = issue_token(SECRET, settings, user_id=user_id, username="a", role="user")

    claims = TokenVerifier(SECRET, settings).verify(token)

    assert claims.subject == str(user_id) and claims.role == "user" and not claims.external
    assert expires > datetime.now(UTC)
    raw = jwt.decode(token, options={"verify_signature": False})
    assert {"exp", "iss", "aud", "sub", "role"} <= set(raw)


def test_a_token_from_another_secret_or_expired_is_refused() -> None:
    settings = Settings()
    verifier = TokenVerifier(SECRET, settings)
    old = datetime.now(UTC) - timedelta(hours=3)
    expired, _ = issue_token(SECRET, settings, user_id=uuid.uuid4(), username="a", role="user",
                             now=old)  # fmt: skip
    forged, _ = issue_token("x" * 40, settings, user_id=uuid.uuid4(), username="a", role="admin")

    for token in (expired, forged, "junk"):
        with pytest.raises(Unauthorized):
            verifier.verify(token)


def test_an_external_issuer_needs_a_key_and_a_name_of_its_own() -> None:
    for lacking_a_key in (
        Settings(external_jwt_issuer="chat", external_jwt_audience="h"),
        Settings(external_jwt_audience="h"),
        Settings(external_jwt_subject_claim="id"),
    ):
        with pytest.raises(ValueError, match="SECRET or HELIX_EXTERNAL_JWT_PUBLIC_KEY"):
            TokenVerifier(SECRET, lacking_a_key)
    with pytest.raises(ValueError, match="must differ"):
        TokenVerifier(SECRET, Settings(external_jwt_issuer="helix", external_jwt_secret="s" * 32))
    # Neither iss nor aud is needed: a chat front end's tokens may carry neither.
    TokenVerifier(SECRET, Settings(external_jwt_issuer="chat", external_jwt_secret="s" * 32))
    TokenVerifier(SECRET, Settings(external_jwt_secret="s" * 32))


CHAT_SECRET = "a-chat-front-ends-own-signing-secret-0123"


def chat_token(claims: dict[str, object], key: str = CHAT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode({"exp": datetime.now(UTC) + timedelta(minutes=5), **claims}, key, alg)


def test_a_front_ends_token_names_its_user_in_the_configured_claim_without_iss_or_aud() -> None:
    settings = Settings(external_jwt_secret=CHAT_SECRET, external_jwt_subject_claim="id")
    verifier = TokenVerifier(SECRET, settings)

    claims = verifier.verify(chat_token({"id": "5f0c-user", "email": "a@example.org"}))

    assert (claims.subject, claims.issuer, claims.external) == ("5f0c-user", "external", True)
    own, _ = issue_token(SECRET, settings, user_id=uuid.uuid4(), username="a", role="user")
    assert not verifier.verify(own).external  # Helix's own tokens are still its own


@pytest.mark.parametrize(
    ("claims", "complaint"),
    [
        ({"id": 42}, "must be a string"),
        ({"id": ["a"]}, "must be a string"),
        ({"id": ""}, "must name a subject"),
        ({"id": "x" * 257}, "must name a subject"),
        ({"sub": "someone"}, "id"),  # the configured claim is missing
        ({"id": "a", "aud": "another-service"}, "audience"),  # an aud Helix was not told of
        ({"id": "a", "exp": datetime.now(UTC) - timedelta(minutes=5)}, "expired"),
    ],
)
def test_a_front_ends_token_without_a_usable_subject_or_expired_is_refused(
    claims: dict[str, object], complaint: str
) -> None:
    verifier = TokenVerifier(
        SECRET, Settings(external_jwt_secret=CHAT_SECRET, external_jwt_subject_claim="id")
    )
    with pytest.raises(Unauthorized, match=complaint):
        verifier.verify(chat_token(claims))


def test_a_front_ends_token_keeps_exp_required_and_its_algorithms_pinned() -> None:
    verifier = TokenVerifier(
        SECRET, Settings(external_jwt_secret=CHAT_SECRET, external_jwt_subject_claim="id")
    )
    no_exp = jwt.encode({"id": "a"}, CHAT_SECRET, "HS256")
    unsigned = jwt.encode({"id": "a", "exp": 4_000_000_000}, None, "none")
    forged = chat_token({"id": "a"}, key="another-secret-entirely-0123456789")
    for token in (no_exp, unsigned, forged):
        with pytest.raises(Unauthorized):
            verifier.verify(token)


def test_configured_iss_and_aud_are_required_and_checked() -> None:
    settings = Settings(
        external_jwt_secret=CHAT_SECRET,
        external_jwt_issuer="https://chat.example",
        external_jwt_audience="helix-api",
        external_jwt_subject_claim="id",
    )
    verifier = TokenVerifier(SECRET, settings)
    good = {"id": "a", "iss": "https://chat.example", "aud": "helix-api"}
    assert verifier.verify(chat_token(good)).issuer == "https://chat.example"
    for bad in ({**good, "aud": "other"}, {"id": "a", "iss": "https://chat.example"}):
        with pytest.raises(Unauthorized):
            verifier.verify(chat_token(bad))
    # Without the configured iss the token is taken for one of Helix's own, and fails as one.
    with pytest.raises(Unauthorized):
        verifier.verify(chat_token({"id": "a", "aud": "helix-api"}))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(60, 3, clock=clock, wall=clock)

    verdicts = [buckets.take("a") for _ in range(4)]

    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[-1].retry_after == 1
    assert buckets.take("b").allowed  # buckets are per key
    clock.now += 1.0  # one token a second
    assert buckets.take("a").allowed
    assert not buckets.take("a").allowed
    assert buckets.take("a").reset_at == int(clock.now) + 3


@pytest.mark.parametrize("name", ["alice\n", "alice\r\n", "\nalice", "", "-alice", "a" * 65])
def test_a_username_with_a_line_break_or_outside_the_rule_is_refused(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_username(name)

    assert refused.value.details["field"] == "username"


def test_a_username_within_the_rule_is_kept() -> None:
    assert check_username("a.b_c@d-1") == "a.b_c@d-1"


def test_a_credentials_scopes_are_its_roles_intersected_with_its_own() -> None:
    assert effective(Role.USER, None) == ROLE_SCOPES[Role.USER]
    assert effective(Role.USER, ["projects:read", "users:admin"]) == {"projects:read"}
    assert effective(Role.AUDITOR, []) == frozenset()
    for granted in ROLE_SCOPES.values():
        assert granted <= set(SCOPES)


def test_a_jwt_is_ended_by_a_cutoff_after_it_was_issued_and_a_key_never_is() -> None:
    issued = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    jwt_user = Principal(
        user_id=uuid.uuid4(), username="c", role=Role.USER, token_id="j", issued_at=issued
    )
    key_user = attrs.evolve(jwt_user, token_id=None, issued_at=None, key_id=uuid.uuid4())

    assert jwt_user.token_ended_by(issued + timedelta(milliseconds=1))
    assert not jwt_user.token_ended_by(issued)
    assert not jwt_user.token_ended_by(None)
    assert not key_user.token_ended_by(issued + timedelta(days=1))
