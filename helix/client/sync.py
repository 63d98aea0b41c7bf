"""`Client`: `AsyncClient`'s every method, blocking. Its coroutines run on an event loop of the
client's own, in a thread of its own, so a `Client` works the same in a plain script and
inside a program that already runs an event loop (a notebook, a web handler).

    with Client("http://127.0.0.1:8100", api_key="hx_…") as helix:
        for project in helix.list_projects(status="running"):
            print(project["name"])
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from helix.client.asyncclient import AsyncClient

P = ParamSpec("P")
R = TypeVar("R")


F = TypeVar("F", bound=Callable[..., Any])


def _named(call: F, method: Callable[..., Any]) -> F:
    """`call` with `method`'s name and documentation (for help() and editors)."""
    call.__name__ = call.__qualname__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Client, P], R]:
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(method(self._async, *args, **kwargs))

    return _named(call, method)


def _iterating(
    method: Callable[Concatenate[AsyncClient, P], AsyncIterator[R]],
) -> Callable[Concatenate[Client, P], Iterator[R]]:
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        return self._iterate(method(self._async, *args, **kwargs))

    return _named(call, method)


class Client:
    """A blocking client of one Helix server; the arguments are `AsyncClient`'s."""

    def __init__(self, base_url: str, **options: Any) -> None:
        self._async = AsyncClient(base_url, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="helix-client", daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def _run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        if self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("this Client is closed")
        future: Future[R] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def _iterate(self, iterator: AsyncIterator[R]) -> Iterator[R]:
        try:
            while True:
                try:
                    yield self._run(anext(iterator))  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            # A loop left early (break, an exception) closes the stream or page it was on.
            closing = getattr(iterator, "aclose", None)
            if closing is not None and not self._loop.is_closed():
                self._run(closing())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    request = _blocking(AsyncClient.request)
    pages = _iterating(AsyncClient.pages)
    login = _blocking(AsyncClient.login)
    refresh_token = _blocking(AsyncClient.refresh_token)
    logout = _blocking(AsyncClient.logout)
    me = _blocking(AsyncClient.me)
    create_user = _blocking(AsyncClient.create_user)
    list_users = _iterating(AsyncClient.list_users)
    list_keys = _iterating(AsyncClient.list_keys)
    create_key = _blocking(AsyncClient.create_key)
    revoke_key = _blocking(AsyncClient.revoke_key)
    create_stream_token = _blocking(AsyncClient.create_stream_token)
    create_project = _blocking(AsyncClient.create_project)
    list_projects = _iterating(AsyncClient.list_projects)
    get_project = _blocking(AsyncClient.get_project)
    update_project = _blocking(AsyncClient.update_project)
    archive_project = _blocking(AsyncClient.archive_project)
    unarchive_project = _blocking(AsyncClient.unarchive_project)
    project_status = _blocking(AsyncClient.project_status)
    project_history = _iterating(AsyncClient.project_history)
    ready = _blocking(AsyncClient.ready)
    execute = _blocking(AsyncClient.execute)
    pause = _blocking(AsyncClient.pause)
    resume = _blocking(AsyncClient.resume)
    cancel = _blocking(AsyncClient.cancel)
    quick_action = _blocking(AsyncClient.quick_action)
    discuss = _blocking(AsyncClient.discuss)
    post_message = _blocking(AsyncClient.post_message)
    list_messages = _iterating(AsyncClient.list_messages)
    list_jobs = _iterating(AsyncClient.list_jobs)
    get_job = _blocking(AsyncClient.get_job)
    list_files = _iterating(AsyncClient.list_files)
    download_file = _blocking(AsyncClient.download_file)
    wait_job = _blocking(AsyncClient.wait_job)
    cancel_job = _blocking(AsyncClient.cancel_job)
    requeue_job = _blocking(AsyncClient.requeue_job)
    output = _iterating(AsyncClient.output)
    stream = _iterating(AsyncClient.stream)
    stream_project = _iterating(AsyncClient.stream_project)
    stream_events = _iterating(AsyncClient.stream_events)
    list_events = _iterating(AsyncClient.list_events)
    get_event = _blocking(AsyncClient.get_event)
    create_webhook = _blocking(AsyncClient.create_webhook)
    list_webhooks = _iterating(AsyncClient.list_webhooks)
    get_webhook = _blocking(AsyncClient.get_webhook)
    update_webhook = _blocking(AsyncClient.update_webhook)
    delete_webhook = _blocking(AsyncClient.delete_webhook)
    rotate_webhook_secret = _blocking(AsyncClient.rotate_webhook_secret)
    test_webhook = _blocking(AsyncClient.test_webhook)
    replay_webhook = _blocking(AsyncClient.replay_webhook)
    recover_webhook = _blocking(AsyncClient.recover_webhook)
    list_deliveries = _iterating(AsyncClient.list_deliveries)
    get_delivery = _blocking(AsyncClient.get_delivery)
    retry_delivery = _blocking(AsyncClient.retry_delivery)
    list_workers = _iterating(AsyncClient.list_workers)
    get_worker = _blocking(AsyncClient.get_worker)
