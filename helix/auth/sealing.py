"""Secrets at rest: AES-256-GCM under a server key, bound to the place they belong.

A sealed value is `v1.<key id>.<nonce>.<ciphertext>` (base64url without padding; the ciphertext
ends with GCM's 16-byte tag). The associated data names where the value belongs: a phase secret
is bound to its project's stream and variable, a stored idempotent response (which can hold a
credential shown once) to its record's scope and key. So a sealed value copied into another
project, onto another variable or onto another record does not open: it is refused, never
decrypted for the wrong place. The key id is a fingerprint of the key, so a server can hold
several keys during a rotation: the first seals, every one opens.

Every failure to open is a `SecretError`, and nothing of a value that did not open is returned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Sequence
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helix.domain.project.events import SealedSecret

FORMAT = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEYS_SETTING = "HELIX_SECRETS_KEY"


class SecretError(Exception):
    """A sealed value that does not open here: unknown key, altered, or sealed elsewhere."""


def new_key() -> str:
    """A fresh key in the form HELIX_SECRETS_KEY takes: the base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"helix phase secrets key\x00" + key).hexdigest()[:16]


def parse_keys(texts: Iterable[str], source: str = KEYS_SETTING) -> tuple[bytes, ...]:
    """Keys from their base64 text (standard or url-safe); ValueError naming `source`."""
    keys: list[bytes] = []
    for number, text in enumerate(texts, start=1):
        try:
            key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise ValueError(f"{source}: key {number} is not the base64 of {KEY_BYTES} bytes")
        keys.append(key)
    if not keys:
        raise ValueError(f"{source}: no key given")
    return tuple(keys)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _phase_secret_data(project_id: UUID, name: str) -> bytes:
    return f"helix phase secret\x00project-{project_id}\x00{name}".encode()


class Sealer:
    """Seals and opens bytes with a key ring, each bound to associated data that names where
    they belong; the first key seals. Phase secrets are one use of it."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a sealer needs at least one key")
        self._ring = {key_id(key): AESGCM(key) for key in keys}
        self.key_id = key_id(keys[0])

    @classmethod
    def from_text(cls, texts: Iterable[str], source: str = KEYS_SETTING) -> Sealer:
        return cls(parse_keys(texts, source))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ring)

    def seal_bytes(self, plaintext: bytes, *, associated_data: bytes) -> str:
        """`plaintext` sealed, as text that opens only with the same `associated_data`."""
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ring[self.key_id].encrypt(nonce, plaintext, associated_data)
        return ".".join((FORMAT, self.key_id, _b64(nonce), _b64(ciphertext)))

    def open_bytes(self, sealed: str, *, associated_data: bytes, of: str, elsewhere: str) -> bytes:
        """The plaintext of `sealed`, or a SecretError whose message names the value (`of`,
        e.g. "of TOKEN") and what a wrong `associated_data` means (`elsewhere`)."""
        parts = sealed.split(".")
        if len(parts) != 4 or parts[0] != FORMAT:
            raise SecretError(f"the value {of} is not a sealed secret")
        kid, nonce_text, ciphertext_text = parts[1:]
        aead = self._ring.get(kid)
        if aead is None:
            raise SecretError(
                f"the value {of} was sealed with key {kid}, which this server does not "
                f"hold ({KEYS_SETTING})"
            )
        try:
            nonce, ciphertext = _unb64(nonce_text), _unb64(ciphertext_text)
        except (binascii.Error, ValueError):
            raise SecretError(f"the sealed value {of} is damaged") from None
        if len(nonce) != NONCE_BYTES:
            raise SecretError(f"the sealed value {of} is damaged")
        try:
            return aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag:
            raise SecretError(
                f"the sealed value {of} does not open: it was altered, or sealed for {elsewhere}"
            ) from None

    def seal(self, plaintext: str, *, project_id: UUID, name: str) -> SealedSecret:
        """A phase secret, bound to its project and variable."""
        data = _phase_secret_data(project_id, name)
        return SealedSecret(sealed=self.seal_bytes(plaintext.encode("utf-8"), associated_data=data))

    def open(self, secret: SealedSecret, *, project_id: UUID, name: str) -> str:
        plaintext = self.open_bytes(
            secret.sealed,
            associated_data=_phase_secret_data(project_id, name),
            of=f"of {name}",
            elsewhere="another project or variable",
        )
        return plaintext.decode("utf-8")


__all__ = ["KEYS_SETTING", "Sealer", "SecretError", "key_id", "new_key", "parse_keys"]
