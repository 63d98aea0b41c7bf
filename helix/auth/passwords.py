"""Password hashing with scrypt from the standard library.

Stored form: `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`, so the cost can be raised later and
old hashes still verify with the parameters they were made with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1
DKLEN = 32
SALT_BYTES = 16
MIN_LENGTH = 12  # the default of the `password_min_length` setting
MAX_LENGTH = 1024


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=DKLEN, maxmem=256 * n * r
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(_derive(password, salt, N, R, P))}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        derived = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(derived, base64.b64decode(expected))


# Verified against when the username is unknown, so both answers take the same time.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def password_problem(password: str, min_length: int = MIN_LENGTH) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < min_length:
        return f"a password needs at least {min_length} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    return None
