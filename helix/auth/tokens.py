"""JWTs: the ones Helix issues at login, and an external issuer's that Helix may trust.

Which verifier applies is chosen by the token's (unverified) `iss`: with an external issuer
configured, its tokens are that issuer's; without one (a chat front end whose tokens carry no
`iss`, as Open WebUI's do), every token not naming Helix's own issuer is the external one's.
The chosen verifier then checks the signature (its own algorithms only), `exp` (always
required), the subject claim, and `iss` and `aud` where configured, itself, so a forged `iss`
gains nothing. An external token carrying an `aud` is refused unless the audience is configured:
a token minted for another service is not taken for one minted for Helix.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import jwt

from helix.config import DEFAULT_SUBJECT_CLAIM, Settings
from helix.errors import Unauthorized

OWN_ALGORITHM = "HS256"
HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"]
PUBLIC_KEY_ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]
LEEWAY_SECONDS = 30
# The issuer external users are filed under when no HELIX_EXTERNAL_JWT_ISSUER is configured.
UNNAMED_ISSUER = "external"
MAX_SUBJECT_CHARS = 256


@attrs.frozen(kw_only=True)
class Claims:
    subject: str
    issuer: str
    external: bool
    role: str | None = None
    expires_at: datetime | None = None
    # Helix's own tokens only: `jti`, `iat` and the scopes of the key it was minted with
    # (None: all the role allows).
    token_id: str | None = None
    issued_at: datetime | None = None
    scopes: tuple[str, ...] | None = None


def issue_token(
    secret: str,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    username: str,
    role: str,
    scopes: Iterable[str] | None = None,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """A signed token for one user, and when it expires. With `scopes` (a token minted with a
    scoped API key), the token can do no more than they allow."""
    now = now or datetime.now(UTC)
    expires = now + timedelta(seconds=settings.jwt_ttl_seconds)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "name": username,
        "role": role,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        # Fractional (as NumericDate allows): "issued before" a revocation of all the user's
        # tokens must hold within the same second too.
        "iat": now.timestamp(),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if scopes is not None:
        claims["scopes"] = sorted(scopes)
    return jwt.encode(claims, secret, algorithm=OWN_ALGORITHM), expires.replace(microsecond=0)


def _public_key(configured: str) -> str:
    if configured.lstrip().startswith("-----BEGIN"):
        return configured
    return Path(configured).read_text()


class TokenVerifier:
    def __init__(self, own_secret: str, settings: Settings) -> None:
        self.own_secret = own_secret
        self.settings = settings
        self.external_key: str | None = None
        self.external_algorithms: list[str] = []
        if settings.external_jwt_public_key:
            self.external_key = _public_key(settings.external_jwt_public_key)
            self.external_algorithms = PUBLIC_KEY_ALGORITHMS
        elif settings.external_jwt_secret:
            self.external_key = settings.external_jwt_secret
            self.external_algorithms = HMAC_ALGORITHMS
        elif (
            settings.external_jwt_issuer
            or settings.external_jwt_audience
            or settings.external_jwt_subject_claim != DEFAULT_SUBJECT_CLAIM
        ):
            raise ValueError(
                "an external JWT issuer needs HELIX_EXTERNAL_JWT_SECRET or "
                "HELIX_EXTERNAL_JWT_PUBLIC_KEY"
            )
        if self.external_key is not None and settings.external_jwt_issuer == settings.jwt_issuer:
            raise ValueError("HELIX_EXTERNAL_JWT_ISSUER must differ from HELIX_JWT_ISSUER")

    def verify(self, token: str) -> Claims:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a valid JWT") from None
        if self.external_key is not None and self._is_external(unverified.get("iss")):
            return self._external(token, self.external_key)
        claims = self._decode(
            token,
            self.own_secret,
            [OWN_ALGORITHM],
            self.settings.jwt_issuer,
            self.settings.jwt_audience,
        )
        scopes = claims.get("scopes")
        issued = claims.get("iat")
        return Claims(
            subject=str(claims["sub"]),
            issuer=self.settings.jwt_issuer,
            external=False,
            role=claims.get("role"),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            token_id=str(claims["jti"]) if claims.get("jti") else None,
            issued_at=datetime.fromtimestamp(issued, UTC) if issued is not None else None,
            scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else None,
        )

    def _is_external(self, claimed_issuer: object) -> bool:
        issuer = self.settings.external_jwt_issuer
        if issuer:
            return claimed_issuer == issuer
        return claimed_issuer != self.settings.jwt_issuer

    def _external(self, token: str, key: str) -> Claims:
        issuer = self.settings.external_jwt_issuer
        audience = self.settings.external_jwt_audience
        subject_claim = self.settings.external_jwt_subject_claim
        claims = self._decode(
            token,
            key,
            self.external_algorithms,
            issuer,
            audience,
            subject_claim=subject_claim,
        )
        return Claims(subject=claims[subject_claim], issuer=issuer or UNNAMED_ISSUER, external=True)

    @staticmethod
    def _decode(
        token: str,
        key: str,
        algorithms: list[str],
        issuer: str | None,
        audience: str | None,
        *,
        subject_claim: str = DEFAULT_SUBJECT_CLAIM,
    ) -> dict[str, Any]:
        """The token's claims, verified: signature, `exp`, and `iss` and `aud` when given (a
        token with an `aud` is refused when none is: PyJWT's rule)."""
        required = ["exp", subject_claim]
        required += ["iss"] if issuer is not None else []
        required += ["aud"] if audience is not None else []
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=issuer,
                audience=audience,
                leeway=LEEWAY_SECONDS,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from None
        subject = claims.get(subject_claim)
        if not isinstance(subject, str):
            raise Unauthorized(f"the token's {subject_claim!r} claim must be a string")
        if not subject.strip() or len(subject) > MAX_SUBJECT_CHARS:
            raise Unauthorized(
                f"the token's {subject_claim!r} claim must name a subject "
                f"(1 to {MAX_SUBJECT_CHARS} characters)"
            )
        return claims
