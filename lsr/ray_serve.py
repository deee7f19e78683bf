"""Sharded serving on Ray Serve (``lsr serve --ray [ADDRESS] --index NAME=SHARDED_DIR``; the ``ray`` extra).

Each shard of a sharded index (:mod:`lsr.index.shards`) becomes one Ray Serve application with one
deployment, :class:`ShardServer`, whose replicas memory-map that shard and answer its top-k in local
doc ids. The router is the ordinary ``lsr serve`` app (``service/app.py``): its searcher is a
:class:`~lsr.sharded.ShardedSearcher` whose shard backends are :class:`RayShard` handles, so the query
is encoded once, scattered to the shard deployments side by side, and merged exactly there; the REST
API, OpenAPI document, limits, API key and metrics are the same code as ``lsr serve``.

A shard whose replica is down (Ray Serve restarts it) fails its call or does not answer within
``SHARD_TIMEOUT_S``: the answer comes from the other shards and says ``partial: true`` with the
missing shards; ``/readyz`` lists them.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index import Index, SearchResult
from lsr.index.shards import load_shards
from lsr.index.sparse import SparseBatch
from lsr.ray_encode import connect
from lsr.sharded import ShardedSearcher

logger = logging.getLogger(__name__)

SHARD_TIMEOUT_S = 5.0  # a shard that has not answered by then is left out of the answer (partial)
PING_TIMEOUT_S = 1.0
START_TIMEOUT_S = 60.0  # the first call through a new handle (its router starts)


class ShardServer:
    """A Ray Serve replica of one shard: the memory-mapped index, warmed up on start."""

    def __init__(self, path: str):
        self.index = Index.load(path)
        modes = ["exact", "safe", "approx"] if self.index.blockmax is not None else ["exact"]
        n = min(3, self.index.n_terms)
        for mode in modes:  # numba dispatch before the first request
            self.index.search(list(range(n)), [1.0] * n, k=10, mode=mode)

    def ping(self) -> bool:
        return True

    def search(self, terms: np.ndarray, weights: np.ndarray, k: int, kwargs: dict) -> tuple:
        result = self.index.search(terms, weights, k=k, **kwargs)
        return result.docs, result.scores

    def search_batch(self, parts: tuple, k: int, kwargs: dict) -> list[tuple]:
        results = self.index.search_batch(SparseBatch(*parts), k=k, **kwargs)
        return [(r.docs, r.scores) for r in results]


class RayShard:
    """A shard backend (:class:`lsr.index.shards.ShardBackend`) over a Ray Serve deployment handle."""

    def __init__(self, handle: Any, name: str, timeout_s: float = SHARD_TIMEOUT_S):
        self.handle = handle
        self.name = name
        self.timeout_s = timeout_s

    def ping(self, timeout_s: float = PING_TIMEOUT_S) -> None:
        self.handle.ping.remote().result(timeout_s=timeout_s)

    def search(self, q_terms: Any, q_weights: Any, k: int = 10, **kwargs: Any) -> SearchResult:
        call = self.handle.search.remote(np.asarray(q_terms), np.asarray(q_weights), k, kwargs)
        docs, scores = call.result(timeout_s=self.timeout_s)
        return SearchResult(docs, scores)

    def search_batch(self, queries: SparseBatch, k: int = 10, **kwargs: Any) -> list[SearchResult]:
        kwargs.pop("threads", None)  # a replica's batch kernel runs on its own cores
        parts = (np.asarray(queries.indptr), np.asarray(queries.term_ids), np.asarray(queries.weights))
        answer = self.handle.search_batch.remote(parts, k, kwargs).result(timeout_s=self.timeout_s)
        return [SearchResult(docs, scores) for docs, scores in answer]


def app_name(path: Path, shard: str) -> str:
    """The Serve application of one shard of the sharded index at ``path`` (stable per directory)."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"lsr-{digest}-{shard}"


def deploy_sharded(
    path: str | Path, address: str | None = None, replicas: int = 1, cpus_per_replica: float = 0.0
) -> ShardedSearcher:
    """Check the sharded index at ``path``, deploy one Serve application per shard on the cluster at
    ``address`` and return the searcher that scatters to them.

    Raises:
        ArtifactError: a missing shard, or shards of two builds or encoders (before anything deploys).
        LsrError: ray missing or the cluster unreachable.
    """
    path = Path(path)
    manifest, _ = load_shards(path)  # refuse a broken directory before touching the cluster
    connect(address)
    from ray import serve
    from ray.serve.api import RunTarget, run_many

    serve.start(proxy_location="Disabled")
    deployment = serve.deployment(
        name="shard",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        health_check_period_s=1,
        health_check_timeout_s=5,
    )(ShardServer)
    names = [e["name"] for e in manifest["shards"]]
    targets = [
        RunTarget(deployment.bind(str(path / name)), name=app_name(path, name), route_prefix=None)
        for name in names
    ]
    handles = run_many(targets)  # the shards start side by side
    backends = [RayShard(handle, name) for handle, name in zip(handles, names, strict=True)]
    for backend in backends:
        backend.ping(START_TIMEOUT_S)
    logger.info("%s: %d shards on Ray Serve (%s)", path, len(names), ", ".join(t.name for t in targets))
    return ShardedSearcher(path, backends)


def undeploy_sharded(path: str | Path) -> None:
    """Delete the Serve applications of the sharded index at ``path``."""
    from ray import serve

    path = Path(path)
    for entry in load_shards(path)[0]["shards"]:
        serve.delete(app_name(path, entry["name"]))
