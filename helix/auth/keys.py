"""API keys: `hx_` plus 256 random bits; stored as a prefix (to find the row) and a sha256.

A plain sha256 is enough here: the key is high-entropy, so no dictionary or brute force
applies, and a fast hash keeps the per-request check cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "hx_"
PREFIX_CHARS = 12  # "hx_" and 9 random characters: 54 bits, unique in the table
_SHAPE = re.compile(r"^hx_[A-Za-z0-9_-]{40,64}$")


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_key(token: str) -> bool:
    return bool(_SHAPE.match(token))


def prefix_of(key: str) -> str:
    return key[:PREFIX_CHARS]


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_matches(key: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(key_sha256(key), stored_sha256)
