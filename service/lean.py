"""The lean request path of the search routes: a well-formed JSON body is parsed and validated here,
without FastAPI's per-request machinery (content-type parsing through ``email.message``, three
``AsyncExitStack`` s, dependency solving, endpoint introspection); every other request goes to the
route's own FastAPI handler, so each error answer (400, 415, 422) is FastAPI's, byte for byte.

The route stays a FastAPI route: its path, methods, OpenAPI entry and the app's middleware and
exception handlers are unchanged; only the handler that runs behind them is this one. A valid body
does not even reach the router: the service middleware hands it to the route's
:func:`direct_handler` (the endpoint, its exceptions answered by the app's handlers), skipping the
route matching and the exception and exit-stack middleware between.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import queue
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

Endpoint = Callable[[Any, Request], Awaitable[Response]]


def json_content_type(scope: Scope) -> bool:
    """The request says ``Content-Type: application/json`` (parameters such as a charset allowed).
    Anything else, ``+json`` types included, is left to FastAPI."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def parse_body(scope: Scope, body: bytes, model: type[BaseModel]) -> BaseModel | None:
    """``body`` as ``model`` when it is a JSON object that validates (parsed as FastAPI parses it, by
    ``json.loads``), else None (FastAPI's handler then answers the request, with its error)."""
    if not body or not json_content_type(scope):
        return None
    try:
        data = json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return None
    if not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` first, then whatever ``receive`` gives (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def lean_handler(
    fallback: Callable[[Scope, Receive, Send], Awaitable[None]], model: type[BaseModel], endpoint: Endpoint
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI handler: ``endpoint(model instance, request)`` for a valid body, else ``fallback``."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        body = await request.body()
        value = parse_body(scope, body, model)
        if value is None:
            await fallback(scope, _replay(body, receive), send)
            return
        response = await endpoint(value, request)
        await response(scope, receive, send)

    return handle


def make_lean(
    app: FastAPI,
    path: str,
    model: type[BaseModel],
    endpoint: Endpoint,
    direct: dict[str, DirectHandler] | None = None,
) -> None:
    """Serve the POST route ``path`` of ``app`` (whose body parameter is ``model`` and whose function is
    ``endpoint(body, request)``) through :func:`lean_handler`; with ``direct``, also register a
    :func:`direct_handler` for ``path`` there (the service middleware answers a valid body with it,
    before the router)."""
    routes = [
        r
        for r in app.router.routes
        if isinstance(r, APIRoute) and r.path == path and "POST" in (r.methods or ())
    ]
    if len(routes) != 1 or routes[0].endpoint is not endpoint:
        raise RuntimeError(f"expected one POST route {path!r} served by {endpoint.__name__}")
    routes[0].app = lean_handler(routes[0].app, model, endpoint)
    if direct is not None:
        direct[path] = direct_handler(routes[0], model, endpoint, app.exception_handlers)


# --- straight from the middleware ------------------------------------------------------------------

# ``handle(scope, receive, send, app)``: ``app`` is the rest of the stack, for what the handler leaves
DirectHandler = Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]]


def direct_handler(
    route: APIRoute, model: type[BaseModel], endpoint: Endpoint, handlers: Mapping[Any, Any]
) -> DirectHandler:
    """A handler of POST ``route`` to call in place of the rest of the ASGI stack (the exception
    middleware, the router, the route): ``endpoint(model instance, request)`` for a valid body, its
    exceptions answered by the app's exception ``handlers`` as the exception middleware answers them
    (looked up along the exception's class hierarchy; ``Exception`` itself is the server error
    middleware's, above); any other body goes on to ``app`` (the stack, whose route is the
    :func:`lean_handler`, which leaves it to FastAPI). This skips the router's matching and the
    middleware layers between, the same answer each time (tests/service/test_lean.py)."""
    caught = {cls: h for cls, h in handlers.items() if isinstance(cls, type) and cls is not Exception}

    async def handle(scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        request = Request(scope, receive, send)
        body = await request.body()
        value = parse_body(scope, body, model)
        if value is None:
            await app(scope, _replay(body, receive), send)
            return
        scope["route"] = route  # as the router sets it (the middleware's endpoint label)
        try:
            response = await endpoint(value, request)
        except Exception as exc:
            handler = next((caught[c] for c in type(exc).__mro__ if c in caught), None)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
            exc.__traceback__ = None
        await response(scope, receive, send)

    return handle


# --- one write a response --------------------------------------------------------------------------


class CorkedTransport:
    """A transport whose writes within one event-loop step go out as one write: uvicorn writes a
    response's head and body separately (two ``send`` calls, two wake-ups of the client); both come
    from the same step, so they leave together at the end of it. Everything else is the transport's."""

    def __init__(self, transport: Any, loop: Any):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (httptools when installed, else h11) over a :class:`CorkedTransport`
    (``lsr serve`` names it to uvicorn as ``lsr.service.lean:CorkedHTTPProtocol``)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(CorkedTransport(transport, self.loop))


# --- the search threads ----------------------------------------------------------------------------


class SearchPool:
    """Threads that run searches for one event loop: a job goes in through a ``SimpleQueue`` and its
    result comes back with one ``call_soon_threadsafe`` (a ``ThreadPoolExecutor`` under
    ``run_in_executor`` adds a ``concurrent.futures.Future``, its lock and condition, and a second
    future chained to it, on every request). A cancelled future (a timed-out request) gets no result;
    its search still runs to the end on its thread (numba kernels cannot be interrupted)."""

    def __init__(self, threads: int, name: str = "lsr-search"):
        self._jobs: queue.SimpleQueue[tuple[Any, asyncio.Future, Callable[..., Any], tuple] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        """``fn(*args)`` on a search thread; its result (or exception) in the returned future."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, fn, args = job
            if future.cancelled():  # timed out while queued
                continue
            try:
                outcome: tuple[Any, BaseException | None] = (fn(*args), None)
            except BaseException as exc:  # handed to the awaiting request
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(_settle, future, *outcome)

    def shutdown(self) -> None:
        """Cancel the queued jobs; each thread ends after its current one."""
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._jobs.get_nowait()
                if job is not None:
                    job[1].cancel()
        for _ in self._threads:
            self._jobs.put(None)


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.done():  # cancelled: the request was answered 503 already
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
