"""The integration tests' shared fixtures (a pytest plugin, named in tests/conftest.py): the
app over a fresh database, a test client, the service layer, and callers of every role (each
with an API key; `token_for` gives a JWT instead). A directory's conftest may override any of
them (the webhook tests have callers of their own).

    async def test_something(client, admin, user):
        resp = await client.get("/api/v1/users/me", headers=user.headers)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from helix.api.app import create_app
from helix.appkeys import VERIFIER
from helix.auth.accounts import Accounts
from helix.auth.records import UserRecord
from helix.auth.tokens import issue_token
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain.user import Role
from helix.services import Caller as ServiceCaller
from helix.services import Services, system_caller

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
TEST_CALLER = attrs.evolve(system_caller("test"), actor="test", source="pytest")


@attrs.frozen(kw_only=True)
class Caller:
    """A user who calls the API with an API key."""

    user: UserRecord
    key: str

    @property
    def user_id(self) -> str:
        return str(self.user.user_id)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def service(self) -> ServiceCaller:
        """The same user as the service layer sees it (so visibility agrees with the API's)."""
        return ServiceCaller(
            user_id=self.user_id,
            name=self.user.username,
            actor=f"user:{self.user_id}",
            sees_everything=self.user.role in (Role.ADMIN, Role.AUDITOR),
        )


@pytest.fixture
def app(node: LogNode, settings: Settings) -> web.Application:
    return create_app(node, settings)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> TestClient[Any, Any]:
    return await aiohttp_client(app)


@pytest.fixture
def make_client(
    aiohttp_client: AiohttpClient, node: LogNode, settings: Settings
) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """A client on an app with changed settings: `await make_client(max_body_bytes=10)`."""

    async def make(**changes: Any) -> TestClient[Any, Any]:
        return await aiohttp_client(create_app(node, attrs.evolve(settings, **changes)))

    return make


@pytest.fixture
def services(node: LogNode, settings: Settings) -> Services:
    """The service layer over the test's node, for tests that make history without HTTP."""
    return Services.build(node.store, settings)


@pytest.fixture
def accounts(node: LogNode) -> Accounts:
    return Accounts(node.store)


@pytest.fixture
def make_caller(accounts: Accounts) -> Callable[..., Awaitable[Caller]]:
    """`await make_caller("worker", username="w1", password=None)`: a new user and a key."""
    counter = iter(range(1, 10_000))

    async def make(
        role: str = "user", username: str | None = None, *, password: str | None = None
    ) -> Caller:
        name = username or f"{role}{next(counter)}"
        user = await accounts.create_user(name, Role(role), password, caller=TEST_CALLER)
        _, key = await accounts.create_key(user.user_id, "test key", caller=TEST_CALLER)
        return Caller(user=await accounts.get(user.user_id), key=key)

    return make


@pytest.fixture
async def admin(make_caller: Callable[..., Awaitable[Caller]]) -> Caller:
    return await make_caller("admin", username="root")


@pytest.fixture
async def user(make_caller: Callable[..., Awaitable[Caller]]) -> Caller:
    return await make_caller("user", username="alice")


@pytest.fixture
async def other_user(make_caller: Callable[..., Awaitable[Caller]]) -> Caller:
    return await make_caller("user", username="bob")


@pytest.fixture
async def worker(make_caller: Callable[..., Awaitable[Caller]]) -> Caller:
    return await make_caller("worker", username="worker1")


@pytest.fixture
async def auditor(make_caller: Callable[..., Awaitable[Caller]]) -> Caller:
    return await make_caller("auditor", username="auditor1")


@pytest.fixture
def token_for(app: web.Application) -> Callable[[Caller], dict[str, str]]:
    """Headers with a JWT (signed like a login's) for a caller; needs the client started."""

    def headers(caller: Caller) -> dict[str, str]:
        verifier = app[VERIFIER]
        token, _ = issue_token(
            verifier.own_secret,
            verifier.settings,
            user_id=caller.user.user_id,
            username=caller.user.username,
            role=caller.user.role.value,
        )
        return {"Authorization": f"Bearer {token}"}

    return headers
