"""Sharded serving on Ray Serve (``lsr serve --ray [ADDRESS] --index NAME=SHARDED_DIR``; the ``ray`` extra).

Each shard of a sharded index (:mod:`lsr.index.shards`) becomes one Ray Serve application with one
deployment, :class:`ShardServer`. Each of its replicas starts a :class:`ShardActor`, a plain Ray actor
that memory-maps the shard and answers its top-k in local doc ids; the actor is named after the shard
and the replica (namespace ``lsr-shards``) and is owned by the replica, so it dies with it, and the
replica's Serve health check fails once its actor is gone, so Serve replaces both. Serve therefore
deploys, health-checks and restarts the shards; Ray is the control plane. Queries do not go through
Ray: each actor listens on a TCP port of its node (:class:`ShardSocketServer`) and the router sends
them there. A Ray actor call costs the router about 0.3-0.4 ms of CPU (task submission, its gRPC
and the completion callback; a Serve handle call several ms), a request on an open connection about
0.05 ms: issue 16's router was bound by that CPU.

The wire (:func:`frame`, :func:`parse_frame`): a frame is two little-endian uint32 lengths, a JSON
head and the raw bytes of the numpy arrays the head lists (dtype and length each; no pickle). A
connection starts with a ``hello`` frame carrying the actor's token, a random secret that the router
reads from the actor over Ray (:meth:`ShardActor.endpoint`); the server drops a connection without it
before reading anything else. A ``search`` frame holds a batch's CSR arrays, k and the search
options; its answer (:func:`answer_frame`, a frame without head) the hits per query, then every
query's doc ids and scores end to end; an error is answered as a head ``{"error": ...}``.

The router is the ordinary ``lsr serve`` app (``service/app.py``): its searcher is a
:class:`~lsr.sharded.ShardedSearcher` whose remote shards are :class:`RayShard` objects, so the query
is encoded once, sent to every shard without a thread each, and merged exactly there; the REST API,
OpenAPI document, limits, API key and metrics are the same code as ``lsr serve``. A :class:`RayShard`
sends the queries of concurrent requests together: while ``max_calls`` calls to a shard are in
flight, later queries with the same options wait and leave in one ``search`` call.

A shard whose actor is down (its replica is being replaced) fails its call at once (its connections
close with its process), or does not answer within ``SHARD_TIMEOUT_S``: the answer comes from the
other shards and says ``partial: true`` with the missing shards; ``/readyz`` lists them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import io
import json
import logging
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from lsr.deadline import Deadline
from lsr.errors import LsrError
from lsr.index import Index, SearchResult
from lsr.index.shards import load_shards
from lsr.index.sparse import SparseBatch, concat
from lsr.ray_encode import connect
from lsr.sharded import ShardedSearcher

logger = logging.getLogger(__name__)

NAMESPACE = "lsr-shards"  # the Ray namespace of the shard actors
SHARD_TIMEOUT_S = 5.0  # a shard that has not answered by then is left out of the answer (partial)
PING_TIMEOUT_S = 1.0
HEALTH_TIMEOUT_S = 4.0  # a replica whose actor does not answer a ping by then fails Serve's check (5 s)
START_TIMEOUT_S = 60.0  # a new shard's actor loads its index and warms up
MAX_CALLS = 1  # calls in flight per shard replica; the queries arriving meanwhile leave together in the next
LIST_EVERY_S = 0.25  # the actors of a shard with fewer than its replicas are listed again at most this often

LENGTHS = struct.Struct("<II")  # a frame's head and body lengths
MAX_HELLO = 1024  # bytes of a connection's first frame (the token), read before the peer is trusted
HELLO_TIMEOUT_S = 10.0  # a connection that sends no whole hello frame in this time is closed
MAX_CONNECTIONS = 1024  # open connections per shard server (a router keeps about one per call in flight)
MAX_HEAD = 1 << 20  # bytes of a frame's JSON head
DTYPES = frozenset({"<i8", "<i4", "<f4"})  # the arrays a frame carries: ids, pointers, scores, weights

Search = Callable[[SparseBatch, int, dict[str, Any]], list[SearchResult]]


# --- the wire -------------------------------------------------------------------------------------


def frame(head: dict[str, Any], arrays: tuple[np.ndarray, ...] = ()) -> bytes:
    """``head`` (JSON) and ``arrays`` (little-endian int64, int32 or float32) as one frame.

    Raises:
        ValueError: an array of another dtype.
    """
    arrays = tuple(np.ascontiguousarray(a) for a in arrays)
    for a in arrays:
        if a.dtype.str not in DTYPES:
            raise ValueError(f"a shard frame carries {sorted(DTYPES)} arrays, not {a.dtype.str}")
    head = {**head, "arrays": [[a.dtype.str, len(a)] for a in arrays]}
    data = json.dumps(head, separators=(",", ":")).encode()
    body = b"".join(a.tobytes() for a in arrays)
    return LENGTHS.pack(len(data), len(body)) + data + body


def parse_frame(data: bytes | bytearray, body: bytearray) -> tuple[dict[str, Any], list[np.ndarray]]:
    """A frame's head and arrays from its head bytes and body (the arrays are views of ``body``).

    Raises:
        ValueError: a head that is not a JSON object, an unknown dtype, or lengths that do not add up.
    """
    head = json.loads(data)
    if not isinstance(head, dict):
        raise ValueError("a shard frame's head is not a JSON object")
    specs = head.pop("arrays", [])
    for dtype, n in specs:
        if dtype not in DTYPES or not isinstance(n, int) or n < 0:
            raise ValueError(f"a shard frame lists an array of {dtype!r} x {n!r}")
    sizes = [n * np.dtype(dtype).itemsize for dtype, n in specs]
    if sum(sizes) != len(body):
        raise ValueError(f"a shard frame's body has {len(body)} bytes, its arrays {sum(sizes)}")
    starts = np.cumsum([0, *sizes]).tolist()
    return head, [np.frombuffer(body, d, n, o) for (d, n), o in zip(specs, starts, strict=False)]


def _read_exactly(file: io.BufferedReader, n: int) -> bytearray:
    """``n`` bytes (a writable buffer: numba compiles no read-only variant of its kernels for them).

    Raises:
        EOFError: the connection closed first.
    """
    out = bytearray(n)
    if n and file.readinto(memoryview(out)) != n:
        raise EOFError("the connection closed mid-frame")
    return out


def read_frame_sync(
    file: io.BufferedReader, max_head: int = MAX_HEAD, max_body: int | None = None
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The next frame on a blocking connection (shard server side).

    Raises:
        EOFError: the connection closed.
        ValueError: a malformed frame, or one longer than ``max_head`` / ``max_body``.
    """
    n_head, n_body = LENGTHS.unpack(_read_exactly(file, LENGTHS.size))
    if n_head > max_head or (max_body is not None and n_body > max_body):
        raise ValueError(f"a shard frame of {n_head} + {n_body} bytes exceeds {max_head} + {max_body}")
    data = _read_exactly(file, n_head)
    return parse_frame(data, _read_exactly(file, n_body))


def search_frame(batch: SparseBatch, k: int, kwargs: dict[str, Any]) -> bytes:
    """A search request: the batch's CSR arrays, ``k`` and the search options (JSON values).

    Raises:
        TypeError: an option JSON cannot carry.
    """
    head = {"op": "search", "k": k, "kwargs": kwargs}
    return frame(head, (np.asarray(batch.indptr), np.asarray(batch.term_ids), np.asarray(batch.weights)))


def answer_frame(results: list[SearchResult]) -> bytes:
    """A search's answer: a frame without head whose body is the number of queries (int64), the hits
    per query (int64), then every query's doc ids (int64) and scores (float32) end to end."""
    counts = np.array([len(r.docs) for r in results], np.int64)
    docs = [np.asarray(r.docs, np.int64) for r in results]
    scores = [np.asarray(r.scores, np.float32) for r in results]
    body = b"".join(
        [np.int64(len(results)).tobytes(), counts.tobytes(), *map(bytes, docs), *map(bytes, scores)]
    )
    return LENGTHS.pack(0, len(body)) + body


def parse_answer(body: bytearray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`answer_frame`'s arrays (hits per query, doc ids, scores; views of ``body``).

    Raises:
        ValueError: lengths that do not add up.
    """
    rows = int(np.frombuffer(body, np.int64, 1)[0]) if len(body) >= 8 else -1
    if not 0 <= rows <= (len(body) - 8) // 8:
        raise ValueError(f"a shard answer of {len(body)} bytes cannot hold {rows} queries")
    counts = np.frombuffer(body, np.int64, rows, 8)
    total, start = int(counts.sum()), 8 + 8 * rows
    if counts.min(initial=0) < 0 or len(body) != start + 12 * total:
        raise ValueError(f"a shard answer of {len(body)} bytes does not hold {total} hits")
    return (
        counts,
        np.frombuffer(body, np.int64, total, start),
        np.frombuffer(body, np.float32, total, start + 8 * total),
    )


# --- the shard side -------------------------------------------------------------------------------


class ShardSocketServer:
    """Answers ``search`` and ``ping`` frames with ``search(queries, k, kwargs)`` on a TCP port of
    ``host`` (a thread per connection, at most ``MAX_CONNECTIONS``; a connection whose first frame is
    not a ``hello`` with ``token`` within ``HELLO_TIMEOUT_S`` is closed). ``close()`` closes the port
    and every connection, as the process's death would."""

    def __init__(self, search: Search, host: str, token: str | None = None):
        self.search = search
        self.token = token or secrets.token_hex(16)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET  # a node's IPv6 address too
        self._listener = socket.create_server((host, 0), family=family)
        self.address: tuple[str, int] = (host, self._listener.getsockname()[1])
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="lsr-shard-accept", daemon=True)
        self._acceptor.start()

    @property
    def alive(self) -> bool:
        """Whether it still accepts connections."""
        return self._acceptor.is_alive()

    def close(self) -> None:
        with self._lock:
            sockets = [self._listener, *self._connections]
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # not connected (any more)
                pass
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                full = len(self._connections) >= MAX_CONNECTIONS
                if not full:
                    self._connections.add(conn)
            if full:  # refused at once: a router takes it as this replica being unavailable
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="lsr-shard-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as file:
                conn.settimeout(HELLO_TIMEOUT_S)  # an unauthenticated peer holds a thread this long at most
                hello, _ = read_frame_sync(file, MAX_HELLO, 0)
                token = hello.get("token")
                if hello.get("op") != "hello" or not isinstance(token, str):
                    return
                if not hmac.compare_digest(token.encode(), self.token.encode()):
                    return
                conn.settimeout(None)
                conn.sendall(frame({"ok": True}))
                while True:
                    conn.sendall(self._answer(*read_frame_sync(file)))
        except (OSError, EOFError, ValueError):  # the peer left, or sent what is not a frame
            return
        finally:
            with self._lock:
                self._connections.discard(conn)

    def _answer(self, head: dict[str, Any], arrays: list[np.ndarray]) -> bytes:
        """One request's answer frame; an error in the search is answered as ``{"error": ...}``."""
        try:
            if head.get("op") == "ping":
                return frame({"ok": True})
            if head.get("op") != "search" or len(arrays) != 3:
                raise ValueError(f"unknown shard request {head.get('op')!r}")
            return answer_frame(self.search(SparseBatch(*arrays), head["k"], head["kwargs"]))
        except Exception as exc:  # the router leaves this shard out of the answer, naming the error
            return frame({"error": f"{type(exc).__name__}: {exc}"})


class ShardActor:
    """One shard's memory-mapped index, warmed up on start, answering on a :class:`ShardSocketServer`
    (a Ray actor; see the module docstring)."""

    def __init__(self, path: str, host: str | None = None):
        import ray

        self.index = Index.load(path)
        modes = ["exact", "safe", "approx"] if self.index.blockmax is not None else ["exact"]
        n = min(3, self.index.n_terms)
        for mode in modes:  # numba dispatch before the first request
            self.index.search(list(range(n)), [1.0] * n, k=10, mode=mode)
            self.index.search_batch(SparseBatch.from_rows([(range(n), [1.0] * n)]), k=10, mode=mode)
        self.server = ShardSocketServer(self._search, host or ray.util.get_node_ip_address())

    def _search(self, queries: SparseBatch, k: int, kwargs: dict[str, Any]) -> list[SearchResult]:
        return self.index.search_batch(queries, k=k, **kwargs)

    def ping(self) -> bool:
        """True (Serve's health check); fails once its server no longer accepts connections.

        Raises:
            LsrError: the server stopped (Serve then replaces the replica).
        """
        if not self.server.alive:
            raise LsrError(f"the shard server of {self.index.path} stopped accepting connections")
        return True

    def endpoint(self) -> tuple[str, int, str]:
        """Where its shard answers (host, port) and the token a connection opens with."""
        return (*self.server.address, self.server.token)


class ShardServer:
    """A Ray Serve replica of one shard: starts the shard's :class:`ShardActor` (named
    ``KEY#REPLICA`` in ``NAMESPACE``) and fails Serve's health check once that actor is gone."""

    def __init__(self, path: str, key: str, num_cpus: float):
        import ray
        from ray import serve

        replica = serve.get_replica_context().replica_id.unique_id
        actor_class: Any = ray.remote(ShardActor)
        self.actor = actor_class.options(
            name=f"{key}#{replica}",
            namespace=NAMESPACE,
            num_cpus=num_cpus,
            max_restarts=0,  # Serve replaces the replica, and the replica its actor
        ).remote(path)
        ray.get(self.actor.ping.remote(), timeout=START_TIMEOUT_S)

    def check_health(self) -> None:
        import ray

        ray.get(self.actor.ping.remote(), timeout=HEALTH_TIMEOUT_S)


# --- the router side ------------------------------------------------------------------------------


class ShardUnavailable(LsrError):
    """A shard replica's connection failed (refused, reset or closed: its actor died)."""


class ShardError(LsrError):
    """A shard replica answered a search with an error (it is alive: it stays listed)."""


class Connection(asyncio.Protocol):
    """One connection from the router loop to a shard server, one request at a time: the answer frame
    is taken whole from the bytes as they arrive (no stream reader, one wake-up per answer)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future | None = None
        self._closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) < LENGTHS.size:
            return
        n_head, n_body = LENGTHS.unpack_from(self._buffer)
        end = LENGTHS.size + n_head + n_body
        if n_head > MAX_HEAD or len(self._buffer) > end or self._waiter is None:  # no answer to a request
            self.close()  # connection_lost fails the request
            return
        if len(self._buffer) < end:
            return
        waiter, self._waiter = self._waiter, None
        head, body = self._buffer[LENGTHS.size : LENGTHS.size + n_head], self._buffer[LENGTHS.size + n_head :]
        self._buffer = bytearray()
        if waiter.done():  # cancelled meanwhile: its caller closes this connection
            return
        try:
            waiter.set_result(parse_answer(body) if not n_head else parse_frame(bytes(head), body))
        except ValueError as exc:
            waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or EOFError("the shard replica closed the connection"))

    async def request(self, data: bytes) -> Any:
        """The answer to ``data``: :func:`parse_answer`'s arrays, or a frame's head and arrays."""
        if self._closed:
            raise EOFError("the shard replica closed the connection")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self._waiter

    def close(self) -> None:
        self._closed = True
        self.transport.close()


class Endpoint:
    """One replica's :class:`ShardSocketServer` (``host``, ``port``, ``token``) and this router's idle
    connections to it, used on the router loop (a call takes one, or opens one, and gives it back
    after a whole answer; a failed or timed-out one is closed)."""

    def __init__(self, host: str, port: int, token: str):
        self.host, self.port, self.token = host, port, token
        self._idle: list[Connection] = []

    @property
    def key(self) -> tuple[str, int, str]:
        return self.host, self.port, self.token

    async def call(self, request: bytes) -> Any:
        """The answer: a search's arrays (:func:`parse_answer`), or a ping's head and no arrays.

        Raises:
            ShardUnavailable: the connection failed (the replica is gone).
            ShardError: the replica answered with an error.
        """
        try:
            conn = self._idle.pop() if self._idle else await self._open()
        except (OSError, EOFError, ValueError) as exc:
            raise ShardUnavailable(f"shard replica {self.host}:{self.port}: {exc!r}") from None
        try:
            answer = await conn.request(request)
        except (OSError, EOFError, ValueError) as exc:
            conn.close()
            raise ShardUnavailable(f"shard replica {self.host}:{self.port}: {exc!r}") from None
        except BaseException:  # cancelled (a late answer): the connection's next bytes are that answer
            conn.close()
            raise
        self._idle.append(conn)
        if isinstance(answer[0], dict) and "error" in answer[0]:
            raise ShardError(f"shard replica {self.host}:{self.port}: {answer[0]['error']}")
        return answer

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(Connection, self.host, self.port)
        conn.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await conn.request(frame({"op": "hello", "token": self.token}))
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


PING = frame({"op": "ping"})


class RayShard:
    """A remote shard (:class:`lsr.index.shards.RemoteShard`) over the :class:`ShardActor` of each
    replica of one shard (taken in turn), reached at its :class:`Endpoint`. Calls run on one asyncio
    loop of the router process; a query waits there while ``max_calls`` calls per replica to this
    shard are in flight, and the queries that waited with the same options leave together in one
    call. A call to a replica that died goes to the next live one (the shard is missing only when
    none answers)."""

    def __init__(
        self,
        key: str,
        name: str,
        replicas: int = 1,
        timeout_s: float = SHARD_TIMEOUT_S,
        max_calls: int = MAX_CALLS,
    ):
        self.key, self.name, self.replicas = key, name, replicas
        self.timeout_s, self.max_calls = timeout_s, max_calls * replicas
        self.loop = router_loop()
        self.calls = 0  # calls sent (a batch of queries is one call)
        self._endpoints: list[Endpoint] = []
        self._turn = 0
        self._listed = -float("inf")
        self._listing: asyncio.Future | None = None
        self._waiting: dict[str, tuple[int, dict[str, Any], list[tuple[SparseBatch, Future]]]] = {}
        self._in_flight = 0

    # --- RemoteShard -------------------------------------------------------------------------------

    def submit(self, queries: SparseBatch, k: int, kwargs: dict[str, Any]) -> Future[list[SearchResult]]:
        future: Future[list[SearchResult]] = Future()
        self.loop.call_soon_threadsafe(self.enqueue, queries, k, kwargs, future)
        return future

    def ping(self) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(self._ping(), self.loop)

    # --- on the router loop ------------------------------------------------------------------------

    def enqueue(self, queries: SparseBatch, k: int, kwargs: dict[str, Any], future: Future) -> None:
        """Queue a query (on the router loop; :meth:`submit` from any thread)."""
        key = f"{k} {sorted(kwargs.items())!r}"  # only queries of the same options share a call
        self._waiting.setdefault(key, (k, kwargs, []))[2].append((queries, future))
        self._start_calls()

    def _start_calls(self) -> None:
        while self._waiting and self._in_flight < self.max_calls:
            key = next(iter(self._waiting))
            k, kwargs, items = self._waiting.pop(key)
            self._in_flight += 1
            self.loop.create_task(self._call(k, kwargs, items))

    async def _call(self, k: int, kwargs: dict[str, Any], items: list[tuple[SparseBatch, Future]]) -> None:
        try:
            batch = items[0][0] if len(items) == 1 else concat([q for q, _ in items])
            _answer(items, *await self._search(search_frame(batch, k, kwargs)))
        except Exception as exc:  # each waiting query gets the error: its shard is missing
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._in_flight -= 1
            self._start_calls()

    async def _search(self, request: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One call's answer, from the next replica; a replica whose connection failed is forgotten
        and the call goes to the next one (a late one is not retried: the shard is left out)."""
        attempts = self.replicas
        while True:
            endpoint = await self._endpoint()
            self.calls += 1
            try:
                with Deadline(self.timeout_s):
                    return await endpoint.call(request)
            except ShardUnavailable as exc:
                self._forget(endpoint, exc)
                attempts -= 1
                if not attempts or not self._endpoints:
                    raise

    async def _ping(self) -> bool:
        endpoint = await self._endpoint()
        try:
            with Deadline(PING_TIMEOUT_S):
                await endpoint.call(PING)
        except ShardUnavailable as exc:
            self._forget(endpoint, exc)
            raise
        return True

    async def _endpoint(self) -> Endpoint:
        """The next replica's endpoint. While replicas are missing they are listed again (on a thread:
        Ray's calls never block the router loop), and a call waits for that only when it knows none.

        Raises:
            LsrError: no replica of this shard is up.
        """
        if len(self._endpoints) < self.replicas and time.monotonic() - self._listed >= LIST_EVERY_S:
            if self._listing is None:
                self._listing = asyncio.ensure_future(self._list())
            if not self._endpoints:
                await asyncio.shield(self._listing)
        if not self._endpoints:
            raise LsrError(f"no replica of {self.name} is up (Ray Serve is starting one)")
        self._turn += 1
        return self._endpoints[self._turn % len(self._endpoints)]

    async def _list(self) -> None:
        try:
            found = await asyncio.to_thread(list_replicas, self.key)
        except Exception as exc:  # the cluster does not answer: keep what is known, list again later
            logger.warning("%s: listing its replicas failed (%r)", self.name, exc)
            found = self._endpoints
        finally:
            self._listed, self._listing = time.monotonic(), None
        known = {e.key: e for e in self._endpoints}
        self._endpoints = [known.pop(e.key, e) for e in found]
        for gone in known.values():
            gone.close()

    def _forget(self, endpoint: Endpoint, exc: Exception) -> None:
        """Stop calling a replica whose connection failed (its actor died; a late answer or an error
        answer is no death: that replica stays)."""
        logger.info("%s: forgetting replica %s:%d (%s)", self.name, endpoint.host, endpoint.port, exc)
        endpoint.close()
        if endpoint in self._endpoints:
            self._endpoints.remove(endpoint)


def scatter(shards: Sequence[RayShard], queries: SparseBatch, k: int, kwargs: dict[str, Any]) -> list[Future]:
    """``queries`` queued at every shard (:meth:`RayShard.submit` of each) in one hop to the router
    loop: one wake-up of the loop per query, not one per shard."""
    futures: list[Future] = [Future() for _ in shards]
    router_loop().call_soon_threadsafe(_enqueue_all, shards, queries, k, kwargs, futures)
    return futures


def _enqueue_all(
    shards: Sequence[RayShard], queries: SparseBatch, k: int, kwargs: dict[str, Any], futures: list[Future]
) -> None:
    for shard, future in zip(shards, futures, strict=True):
        shard.enqueue(queries, k, kwargs, future)


def _answer(items: list[tuple[SparseBatch, Future]], counts: Any, docs: Any, scores: Any) -> None:
    """Each waiting query's results from one call's arrays (queries in the order they were sent)."""
    ends = np.cumsum(counts)
    results = [SearchResult(docs[e - c : e], scores[e - c : e]) for c, e in zip(counts, ends, strict=True)]
    row = 0
    for queries, future in items:
        if not future.done():
            future.set_result(results[row : row + len(queries)])
        row += len(queries)


def list_replicas(key: str) -> list[Endpoint]:
    """The endpoints of the live :class:`ShardActor` replicas of the shard ``key`` (found by name;
    one still loading its shard is left out until it answers). Blocking: Ray's calls."""
    import ray

    names = sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == NAMESPACE and a["name"].startswith(f"{key}#")
    )
    refs = []
    for name in names:
        try:
            refs.append(ray.get_actor(name, namespace=NAMESPACE).endpoint.remote())
        except ValueError:  # died since it was listed
            continue
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PING_TIMEOUT_S) if refs else ([], [])
    endpoints, answered = [], set(ready)
    for ref in (r for r in refs if r in answered):  # in the order of the names
        try:
            endpoints.append(Endpoint(*ray.get(ref)))
        except ray.exceptions.RayError:  # died (or is dying) since it was listed
            continue
    return endpoints


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def router_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop (on a daemon thread of its own) that runs this process's shard calls."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="lsr-ray-router", daemon=True).start()
        return _loop


def app_name(path: Path, shard: str) -> str:
    """The Serve application of one shard of the sharded index at ``path`` (stable per directory)."""
    return f"lsr-{_digest(path)}-{shard}"


def actor_key(path: Path, shard: str, build_id: str) -> str:
    """The name prefix of a shard's actors (it does not contain the Serve application's name): the
    directory and its build, so that actors of an index since rebuilt in place are never reused."""
    return f"{_digest(path)}-{build_id[:12]}/{shard}"


def _digest(path: Path) -> str:
    return hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]


def deploy_sharded(
    path: str | Path,
    address: str | None = None,
    replicas: int = 1,
    cpus_per_replica: float = 0.0,
) -> ShardedSearcher:
    """Check the sharded index at ``path``, deploy one Serve application per shard on the cluster at
    ``address`` and return the searcher that scatters to their actors.

    Raises:
        ArtifactError: a missing shard, or shards of two builds or encoders (before anything deploys).
        LsrError: ray missing, the cluster unreachable, or a shard whose actors do not start.
    """
    path = Path(path)
    manifest, _ = load_shards(path)  # refuse a broken directory before touching the cluster
    connect(address)
    from ray import serve

    serve.start(proxy_location="Disabled")
    names = [e["name"] for e in manifest["shards"]]
    backends = [RayShard(actor_key(path, n, manifest["build_id"]), n, replicas) for n in names]
    if not _running(path, backends):
        _deploy(path, backends, cpus_per_replica)
    for backend in backends:
        _wait_for_actors(backend)
    return ShardedSearcher(path, backends, functools.partial(scatter, backends))


def _running(path: Path, backends: list[RayShard]) -> bool:
    """Whether every shard's Serve application runs this build with the wanted replicas (another
    router, e.g. another ``lsr serve`` worker, deployed it): then this router only attaches."""
    from ray import serve

    apps = serve.status().applications
    for backend in backends:
        app = apps.get(app_name(path, backend.name))
        if app is None or app.status != "RUNNING" or len(list_replicas(backend.key)) != backend.replicas:
            return False
    return True


def _deploy(path: Path, backends: list[RayShard], cpus_per_replica: float) -> None:
    """One Serve application per shard (replacing one of the same directory), side by side."""
    from ray import serve
    from ray.serve.api import RunTarget, run_many

    deployment = serve.deployment(
        name="shard",
        num_replicas=backends[0].replicas,
        ray_actor_options={"num_cpus": 0},
        health_check_period_s=1,
        health_check_timeout_s=5,
        logging_config={"enable_access_log": False},
    )(ShardServer)
    targets = [
        RunTarget(
            deployment.bind(str(path / b.name), b.key, cpus_per_replica),
            name=app_name(path, b.name),
            route_prefix=None,
        )
        for b in backends
    ]
    run_many(targets)  # the shards start side by side; each replica's __init__ waits for its actor
    logger.info("%s: %d shards on Ray Serve (%s)", path, len(targets), ", ".join(t.name for t in targets))


def _wait_for_actors(backend: RayShard) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(actors := list_replicas(backend.key)) < backend.replicas:
        if time.monotonic() > deadline:
            raise LsrError(f"{backend.name}: {len(actors)} of {backend.replicas} replicas started")
        time.sleep(0.1)
    backend.ping().result(START_TIMEOUT_S)


def undeploy_sharded(path: str | Path) -> None:
    """Delete the Serve applications of the sharded index at ``path`` (their actors die with them)."""
    from ray import serve

    path = Path(path)
    for entry in load_shards(path)[0]["shards"]:
        serve.delete(app_name(path, entry["name"]))
