"""Sharded serving on Ray Serve (``lsr serve --ray [ADDRESS] --index NAME=SHARDED_DIR``; the ``ray`` extra).

Each shard of a sharded index (:mod:`lsr.index.shards`) becomes one Ray Serve application with one
deployment, :class:`ShardServer`. Each of its replicas starts a :class:`ShardActor`, a plain Ray actor
that memory-maps the shard and answers its top-k in local doc ids; the actor is named after the shard
and the replica (namespace ``lsr-shards``) and is owned by the replica, so it dies with it, and the
replica's Serve health check fails once its actor is gone, so Serve replaces both. Serve therefore
deploys, health-checks and restarts the shards, while queries go to the actors directly: a Serve
handle call costs several milliseconds of router and replica CPU (its request router, queue-length
probes, per-request metrics and access log), a direct actor call about one.

The router is the ordinary ``lsr serve`` app (``service/app.py``): its searcher is a
:class:`~lsr.sharded.ShardedSearcher` whose remote shards are :class:`RayShard` objects, so the query
is encoded once, sent to every shard without a thread each, and merged exactly there; the REST API,
OpenAPI document, limits, API key and metrics are the same code as ``lsr serve``. A :class:`RayShard`
sends the queries of concurrent requests together: while ``max_calls`` calls to a shard are in
flight, later queries with the same options wait and leave in one ``search_batch`` call (compact
CSR arrays in, one array of counts, doc ids and scores out).

A shard whose actor is down (its replica is being replaced) fails its call at once, or does not
answer within ``SHARD_TIMEOUT_S``: the answer comes from the other shards and says ``partial: true``
with the missing shards; ``/readyz`` lists them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import pickle
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

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


class ShardActor:
    """One shard's memory-mapped index, warmed up on start (a Ray actor; see the module docstring)."""

    def __init__(self, path: str):
        self.index = Index.load(path)
        modes = ["exact", "safe", "approx"] if self.index.blockmax is not None else ["exact"]
        n = min(3, self.index.n_terms)
        for mode in modes:  # numba dispatch before the first request
            self.index.search(list(range(n)), [1.0] * n, k=10, mode=mode)
            self.index.search_batch(SparseBatch.from_rows([(range(n), [1.0] * n)]), k=10, mode=mode)

    def ping(self) -> bool:
        return True

    def search_batch(self, request: bytes) -> bytes:
        """Each query's top-k. ``request``: :func:`pack` of the batch's CSR arrays, k and the search
        options; the answer: :func:`pack` of the hits per query, then every query's doc ids and scores
        end to end (one bytes object each way: Ray serializes it with no per-array work)."""
        indptr, term_ids, weights, k, kwargs = unpack(request)
        results = self.index.search_batch(SparseBatch(indptr, term_ids, weights), k=k, **kwargs)
        counts = np.array([len(r.docs) for r in results], np.int64)
        docs = np.concatenate([np.asarray(r.docs, np.int64) for r in results])
        scores = np.concatenate([np.asarray(r.scores, np.float32) for r in results])
        return pack((counts, docs, scores))


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
            max_concurrency=2,  # a health ping is answered during a search
        ).remote(path)
        ray.get(self.actor.ping.remote(), timeout=START_TIMEOUT_S)

    def check_health(self) -> None:
        import ray

        ray.get(self.actor.ping.remote(), timeout=HEALTH_TIMEOUT_S)


class RayShard:
    """A remote shard (:class:`lsr.index.shards.RemoteShard`) over the :class:`ShardActor` of each
    replica of one shard (taken in turn). Calls run on one asyncio loop of the router process; a
    query waits there while ``max_calls`` calls per replica to this shard are in flight, and the
    queries that waited with the same options leave together in one call. A call to a replica that
    died goes to the next live one (the shard is missing only when none answers)."""

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
        self._actors: list[Any] = []
        self._turn = 0
        self._listed = -float("inf")
        self._waiting: dict[str, tuple[int, dict[str, Any], list[tuple[SparseBatch, Future]]]] = {}
        self._in_flight = 0

    # --- RemoteShard -------------------------------------------------------------------------------

    def submit(self, queries: SparseBatch, k: int, kwargs: dict[str, Any]) -> Future[list[SearchResult]]:
        future: Future[list[SearchResult]] = Future()
        self.loop.call_soon_threadsafe(self._enqueue, queries, k, kwargs, future)
        return future

    def ping(self) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(self._ping(), self.loop)

    # --- on the router loop ------------------------------------------------------------------------

    def _enqueue(self, queries: SparseBatch, k: int, kwargs: dict[str, Any], future: Future) -> None:
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
            request = pack((batch.indptr, batch.term_ids, batch.weights, k, kwargs))
            _answer(items, *unpack(await self._search(request)))
        except Exception as exc:  # each waiting query gets the error: its shard is missing
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._in_flight -= 1
            self._start_calls()

    async def _search(self, request: bytes) -> bytes:
        """One call's answer, from the next replica; a replica that died is forgotten and the call
        goes to the next one (a late one is not retried: the shard is left out)."""
        attempts = self.replicas
        while True:
            actor = self._actor()
            self.calls += 1
            try:
                return await asyncio.wait_for(actor.search_batch.remote(request), self.timeout_s)
            except Exception as exc:
                self._forget(actor, exc)
                attempts -= 1
                if isinstance(exc, asyncio.TimeoutError) or not attempts or not self._actors:
                    raise

    async def _ping(self) -> bool:
        actor = self._actor()
        try:
            return await asyncio.wait_for(actor.ping.remote(), PING_TIMEOUT_S)
        except Exception as exc:
            self._forget(actor, exc)
            raise

    def _actor(self) -> Any:
        """The next replica's actor (listed again when replicas are missing).

        Raises:
            LsrError: no replica of this shard is up.
        """
        if len(self._actors) < self.replicas and time.monotonic() - self._listed >= LIST_EVERY_S:
            self._actors = list_actors(self.key)
            self._listed = time.monotonic()
        if not self._actors:
            raise LsrError(f"no replica of {self.name} is up (Ray Serve is starting one)")
        self._turn += 1
        return self._actors[self._turn % len(self._actors)]

    def _forget(self, actor: Any, exc: Exception) -> None:
        """Stop calling an actor that died (a late answer is not a death: the actor stays)."""
        if not isinstance(exc, asyncio.TimeoutError) and actor in self._actors:
            self._actors.remove(actor)


def _answer(items: list[tuple[SparseBatch, Future]], counts: Any, docs: Any, scores: Any) -> None:
    """Each waiting query's results from one call's arrays (queries in the order they were sent)."""
    ends = np.cumsum(counts)
    results = [SearchResult(docs[e - c : e], scores[e - c : e]) for c, e in zip(counts, ends, strict=True)]
    row = 0
    for queries, future in items:
        if not future.done():
            future.set_result(results[row : row + len(queries)])
        row += len(queries)


def pack(value: Any) -> bytes:
    """A shard call's arguments or answer as one bytes object (numpy arrays inside, pickle protocol 5)."""
    return pickle.dumps(value, protocol=5)


def unpack(data: bytes) -> Any:
    """:func:`pack`'s value back (data from this router or its shard actors only)."""
    return pickle.loads(data)  # our own payloads, between the processes of one cluster


def list_actors(key: str) -> list[Any]:
    """The live :class:`ShardActor` handles of the shard ``key``, by name."""
    import ray

    names = sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == NAMESPACE and a["name"].startswith(f"{key}#")
    )
    actors = []
    for name in names:
        try:
            actors.append(ray.get_actor(name, namespace=NAMESPACE))
        except ValueError:  # died since it was listed
            continue
    return actors


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
    return ShardedSearcher(path, backends)


def _running(path: Path, backends: list[RayShard]) -> bool:
    """Whether every shard's Serve application runs this build with the wanted replicas (another
    router, e.g. another ``lsr serve`` worker, deployed it): then this router only attaches."""
    from ray import serve

    apps = serve.status().applications
    for backend in backends:
        app = apps.get(app_name(path, backend.name))
        if app is None or app.status != "RUNNING" or len(list_actors(backend.key)) != backend.replicas:
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
    while len(actors := list_actors(backend.key)) < backend.replicas:
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
