"""Users and API keys as the API shows them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from helix.domain.user import Role
from helix.domain.user.scopes import effective
from helix.envelope import rfc3339


@attrs.frozen(kw_only=True)
class UserRecord:
    user_id: uuid.UUID
    username: str
    role: Role
    disabled: bool
    external: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    version: int
    # JWTs issued before this are refused (not shown: it is a credential check).
    tokens_valid_after: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> UserRecord:
        return cls(
            user_id=row["user_id"],
            username=row["username"],
            role=Role(row["role"]),
            disabled=row["disabled"],
            external=row["external_subject"] is not None,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_login_at=row["last_login_at"],
            version=row["version"],
            tokens_valid_after=row["tokens_valid_after"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.user_id),
            "username": self.username,
            "role": self.role.value,
            "disabled": self.disabled,
            "external": self.external,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "last_login_at": rfc3339(self.last_login_at),
        }


@attrs.frozen(kw_only=True)
class ApiKeyRecord:
    key_id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    scopes: frozenset[str]  # effective: the owner's role intersected with the key's own
    expires_at: datetime | None
    expired_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ApiKeyRecord:
        return cls(
            key_id=row["key_id"],
            user_id=row["user_id"],
            name=row["name"],
            prefix=row["prefix"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
            last_used_at=row["last_used_at"],
            scopes=effective(Role(row["owner_role"]), row["scopes"]),
            expires_at=row["expires_at"],
            expired_at=row["expired_at"],
        )

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.key_id),
            "user_id": str(self.user_id),
            "name": self.name,
            "prefix": self.prefix,
            "created_at": rfc3339(self.created_at),
            "last_used_at": rfc3339(self.last_used_at),
            "revoked_at": rfc3339(self.revoked_at),
            "scopes": sorted(self.scopes),
            "expires_at": rfc3339(self.expires_at),
        }
