"""Prometheus metrics on a per-app registry (so two apps in one process never share counters)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# request latencies from 0.5 ms (a BM25 query) to 10 s (the default timeout)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counts (by endpoint, index and status), latency histograms (by endpoint and index),
    searches in flight, timeouts, reloads and index sizes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lsr_requests", "HTTP requests answered", ["endpoint", "index", "status"], registry=r
        )
        self.latency = Histogram(
            "lsr_request_latency_seconds",
            "HTTP request latency (seconds)",
            ["endpoint", "index"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queries = Counter(
            "lsr_queries", "queries searched (a batch counts each of its queries)", ["index"], registry=r
        )
        self.in_flight = Gauge(
            "lsr_searches_in_flight", "searches submitted to the thread pool, not done", registry=r
        )
        self.timeouts = Counter(
            "lsr_search_timeouts",
            "requests answered 503 after the per-request timeout",
            ["index"],
            registry=r,
        )
        self.reloads = Counter("lsr_index_reloads", "index reloads", ["index", "outcome"], registry=r)
        self.docs = Gauge("lsr_index_docs", "documents in the served index version", ["index"], registry=r)
        self.generation = Gauge(
            "lsr_index_generation",
            "version counter of the served index (1 at start, +1 per reload)",
            ["index"],
            registry=r,
        )
        self._shard_calls = Gauge(
            "lsr_shard_calls",
            "calls sent to a remote shard (lsr serve --ray; concurrent queries share one)",
            ["index", "shard"],
            registry=r,
        )
        # the labelled children in use, looked up once (``labels()`` costs a lock and a few conversions):
        # endpoints are routes, indexes served names, statuses the few the service answers
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._searched: dict[str, Any] = {}

    def observe(self, endpoint: str, index: str, status: int, seconds: float) -> None:
        key = (endpoint, index, status)
        children = self._answered.get(key)
        if children is None:
            requests = self.requests.labels(endpoint, index, str(status))
            children = self._answered[key] = (requests, self.latency.labels(endpoint, index))
        children[0].inc()
        children[1].observe(seconds)

    def searched(self, index: str, n: int = 1) -> None:
        """``n`` queries searched on ``index``."""
        child = self._searched.get(index)
        if child is None:
            child = self._searched[index] = self.queries.labels(index)
        child.inc(n)

    def shard_calls(self, index: str, shard: Any) -> None:
        """Report ``shard.calls`` (a remote shard's calls so far) under ``index`` and ``shard.name``."""
        self._shard_calls.labels(index, shard.name).set_function(lambda: shard.calls)

    def render(self) -> bytes:
        return generate_latest(self.registry)
