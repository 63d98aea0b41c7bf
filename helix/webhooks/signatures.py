"""Standard Webhooks signing: `whsec_` secrets and `v1,<base64 HMAC-SHA256>` signatures.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}` and the key is the secret's
base64-decoded bytes, so any Standard Webhooks verifier (e.g. the `standardwebhooks` library)
accepts what Helix sends. During a rotation overlap the header carries one signature per valid
secret, space-separated; a verifier accepts the message if any of them matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


# The secrets `signing_secret` takes, as a JSON-schema pattern for the OpenAPI document:
# `whsec_` and the base64 of 24 to 64 bytes, or a plain secret of 24 to 64 printable ASCII
# characters without spaces that does not start with `whsec_`.
_B64 = "[A-Za-z0-9+/]"
SECRET_PATTERN = (
    f"^(whsec_(({_B64}{{4}}){{8,21}}({_B64}{{2}}==)?|({_B64}{{4}}){{8,20}}{_B64}{{3}}=)"
    f"|(?!whsec_)[!-~]{{{MIN_SECRET_BYTES},{MAX_SECRET_BYTES}}})$"
)


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret; ValueError if it is not one."""
    if not secret.startswith(PREFIX):
        raise ValueError(f"a webhook secret starts with {PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a webhook secret encodes {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes"
        )
    return key


def signing_secret(given: str) -> str:
    """The `whsec_…` secret an endpoint signs with, from the one a client gave: a `whsec_`
    secret as it is, or a plain one (as other webhook APIs take), whose UTF-8 bytes are then the
    HMAC key (`whsec_` + base64 of them). A plain secret is 24 to 64 printable ASCII characters
    without spaces, so it is as strong as a generated key may be short. ValueError otherwise."""
    if given.startswith(PREFIX):
        secret_key(given)
        return given
    if not all("!" <= ch <= "~" for ch in given):
        raise ValueError("a plain webhook secret is printable ASCII without spaces")
    if not MIN_SECRET_BYTES <= len(given) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a plain webhook secret has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} characters"
        )
    return PREFIX + base64.b64encode(given.encode("ascii")).decode("ascii")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(
    secrets_in_use: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> str:
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets_in_use)
