"""Short-lived stream tokens, for clients that cannot send headers (EventSource).

A stream token is a JWT signed with Helix's own secret whose audience is `<audience>:stream`
and whose scope is `stream`. The audience keeps it out of everything else: the ordinary bearer
verifier requires the plain audience and so refuses it, and stream endpoints accept it only in
the `access_token` query parameter or a WebSocket `auth` message.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import jwt

from helix.auth.tokens import LEEWAY_SECONDS, OWN_ALGORITHM
from helix.config import Settings
from helix.errors import Unauthorized

SCOPE = "stream"


def audience(settings: Settings) -> str:
    return f"{settings.jwt_audience}:{SCOPE}"


@attrs.frozen(kw_only=True)
class Carried:
    """What a stream token takes over from the credential it was minted with, so it can never
    do more than that credential, and ends with it: the scopes (None: all the role allows),
    the API key, or the JWT (`jti` and `iat`)."""

    scopes: tuple[str, ...] | None = None
    key_id: uuid.UUID | None = None
    token_id: str | None = None
    issued_at: datetime | None = None


def mint(
    secret: str,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    carried: Carried = Carried(),
    until: datetime | None = None,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """A stream token for one user, and when it expires: after the TTL, or at `until` (when
    the credential it is minted with expires) if that is sooner."""
    now = now or datetime.now(UTC)
    expires = now + timedelta(seconds=settings.stream_token_ttl_seconds)
    if until is not None:
        expires = min(expires, until)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "scope": SCOPE,
        "iss": settings.jwt_issuer,
        "aud": audience(settings),
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if carried.scopes is not None:
        claims["scopes"] = sorted(carried.scopes)
    if carried.key_id is not None:
        claims["key"] = str(carried.key_id)
    if carried.token_id is not None:
        claims["parent"] = carried.token_id
    if carried.issued_at is not None:
        claims["parent_iat"] = carried.issued_at.timestamp()
    return jwt.encode(claims, secret, algorithm=OWN_ALGORITHM), expires.replace(microsecond=0)


def is_stream_token(token: str, settings: Settings) -> bool:
    """Whether a token claims to be a stream token (unverified: only to choose the verifier)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    aud = claims.get("aud")
    return aud == audience(settings) or (isinstance(aud, list) and audience(settings) in aud)


def verify(secret: str, settings: Settings, token: str) -> tuple[uuid.UUID, datetime]:
    """The user a stream token was minted for, and when it expires; 401 if it is not a valid,
    unexpired one."""
    user_id, expires_at, _ = verify_carried(secret, settings, token)
    return user_id, expires_at


def verify_carried(
    secret: str, settings: Settings, token: str
) -> tuple[uuid.UUID, datetime, Carried]:
    """`verify`, and what the token carries of the credential it was minted with."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[OWN_ALGORITHM],
            issuer=settings.jwt_issuer,
            audience=audience(settings),
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the stream token has expired") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"the stream token is not valid: {exc}") from None
    if claims.get("scope") != SCOPE:
        raise Unauthorized("the token is not a stream token")
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        raise Unauthorized("the stream token names no user") from None
    return user_id, datetime.fromtimestamp(int(claims["exp"]), UTC), _carried(claims)


def _carried(claims: dict[str, Any]) -> Carried:
    scopes, key, parent_iat = claims.get("scopes"), claims.get("key"), claims.get("parent_iat")
    try:
        return Carried(
            scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else None,
            key_id=uuid.UUID(str(key)) if key is not None else None,
            token_id=str(claims["parent"]) if claims.get("parent") is not None else None,
            issued_at=datetime.fromtimestamp(float(parent_iat), UTC) if parent_iat else None,
        )
    except (TypeError, ValueError):
        raise Unauthorized("the stream token is not valid") from None
