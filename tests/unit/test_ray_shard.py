"""The router side of sharded serving on Ray (``lsr.ray_serve.RayShard``) against stand-in shard actors
(no Ray needed): concurrent queries share one call per shard and each gets its own answer, the
answers equal the shard's own ``search_batch``, a dead actor fails its waiting queries and is listed
again, a late one leaves its shard out without being forgotten. The real cluster is
``tests/integration/test_ray_cluster.py``."""

from __future__ import annotations

import functools
import json
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lsr import ray_serve
from lsr.cli import main
from lsr.errors import LsrError
from lsr.index import SearchResult
from lsr.index.shards import ShardedIndex
from lsr.index.sparse import SparseBatch
from lsr.ray_serve import Endpoint, RayShard, ShardActor, ShardError, ShardSocketServer, ShardUnavailable
from lsr.searcher import Searcher

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sharded_helpers import QUERIES, write_corpus


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray-shard")
    corpus = write_corpus(root / "corpus.jsonl")
    args = ["index", "--corpus", str(corpus), "--encoder", "bm25", "--shards", "4", "--quiet"]
    assert main([*args, "--out", str(root / "four")]) == 0
    return root / "four"


class FakeActor:
    """A shard replica: the real :class:`ShardSocketServer` on a loopback port over a loaded shard,
    answering after ``delay`` seconds; ``kill()`` closes its port and connections, as its death does."""

    def __init__(self, index, delay: float = 0.05):
        self.index, self.delay, self.calls = index, delay, []
        self.server = ShardSocketServer(self._search, "127.0.0.1")

    def _search(self, queries, k, kwargs):
        self.calls.append((len(queries), k, kwargs))
        time.sleep(self.delay)
        return self.index.search_batch(queries, k=k, **kwargs)

    def endpoint(self) -> Endpoint:
        return Endpoint(*self.server.address, self.server.token)

    def kill(self) -> None:
        self.server.close()


def _listing(actors: dict[str, list]):
    """``list_replicas``: the endpoints of the stand-in actors of a shard key."""
    return lambda key: [a.endpoint() for a in actors.get(key, [])]


def _shard(monkeypatch, actors: dict[str, list], name: str = "shard-001", **kwargs) -> RayShard:
    monkeypatch.setattr(ray_serve, "list_replicas", _listing(actors))
    return RayShard(name, name, **kwargs)


def _rows(searcher: Searcher, texts: list[str]) -> list[SparseBatch]:
    batch = searcher.encode_texts(texts)
    return [batch.slice(i, i + 1) for i in range(len(batch))]


def _same(got, expected) -> bool:
    return all(
        np.array_equal(g.docs, e.docs) and np.array_equal(g.scores, e.scores)
        for g, e in zip(got, expected, strict=True)
    )


def test_queries_waiting_for_a_call_leave_together_and_get_their_own_answers(four, monkeypatch):
    index = ShardedIndex.open(four).segments[1]
    actor = FakeActor(index)
    shard = _shard(monkeypatch, {"shard-001": [actor]}, max_calls=1)
    rows = _rows(Searcher(four), QUERIES[:6])
    options = {"mode": "exact", "threads": 1}
    futures = [shard.submit(q, 10, options) for q in rows]  # the first leaves alone, 5 wait for it
    other = shard.submit(rows[0], 3, options)  # another k: a call of its own
    answers = [f.result(5) for f in futures]
    assert _same(other.result(5), index.search_batch(rows[0], k=3, **options))
    assert len(actor.calls) == 3 and shard.calls == 3
    for q, got in zip(rows, answers, strict=True):
        assert len(got) == 1 and _same(got, index.search_batch(q, k=10, **options))
    assert shard.ping().result(5) is True


def test_a_dead_actor_fails_its_queries_and_a_new_one_is_found(four, monkeypatch):
    index = ShardedIndex.open(four).segments[1]
    dead, fresh = FakeActor(index), FakeActor(index)
    actors = {"shard-001": [dead]}
    shard = _shard(monkeypatch, actors, max_calls=1)
    q = _rows(Searcher(four), QUERIES[:1])[0]
    assert _same(shard.submit(q, 10, {}).result(5), index.search_batch(q, k=10))  # a connection is open
    dead.kill()
    futures = [shard.submit(q, 10, {}) for _ in range(3)]
    with pytest.raises(ShardUnavailable, match="shard replica 127.0.0.1:"):
        futures[0].result(5)
    for f in futures[1:]:  # they waited for the failed call; the next finds no replica, or the dead one
        with pytest.raises(LsrError):
            f.result(5)
    actors["shard-001"] = []  # Serve is replacing the replica
    with pytest.raises(LsrError, match="no replica of shard-001 is up"):
        shard.submit(q, 10, {}).result(5)
    actors["shard-001"] = [fresh]
    time.sleep(ray_serve.LIST_EVERY_S)
    assert _same(shard.submit(q, 10, {}).result(5), index.search_batch(q, k=10))
    assert len(dead.calls) == 1 and fresh.calls


def test_listing_a_shards_replicas_never_holds_up_the_other_shards(four, monkeypatch):
    """Replicas are listed on a thread: a shard whose listing hangs (Ray slow to answer) delays only
    the queries of that shard that know no replica."""
    index = ShardedIndex.open(four).segments[1]
    actor = FakeActor(index, delay=0.0)
    listing = _listing({"fast": [actor]})

    def hanging(key: str) -> list:
        if key == "slow":
            time.sleep(1.5)
            return []
        return listing(key)

    monkeypatch.setattr(ray_serve, "list_replicas", hanging)

    slow, fast = RayShard("slow", "slow"), RayShard("fast", "fast")
    q = _rows(Searcher(four), QUERIES[:1])[0]
    fast.submit(q, 10, {}).result(5)  # listed
    start = time.monotonic()
    waiting = slow.submit(q, 10, {})
    time.sleep(0.05)
    assert _same(fast.submit(q, 10, {}).result(5), index.search_batch(q, k=10))
    assert time.monotonic() - start < 1.0 and not waiting.done()
    with pytest.raises(LsrError, match="no replica of slow is up"):
        waiting.result(5)


def test_a_late_answer_is_never_taken_for_the_next_ones(four, monkeypatch):
    """A call past its timeout drops its connection: the next call, on another connection, gets its
    own answer, not the late one; the late replica stays listed."""
    index = ShardedIndex.open(four).segments[1]
    actor = FakeActor(index, delay=0.6)
    shard = _shard(monkeypatch, {"shard-001": [actor]}, timeout_s=0.2)
    first, second = _rows(Searcher(four), QUERIES[:2])
    with pytest.raises(TimeoutError):
        shard.submit(first, 10, {}).result(5)
    actor.delay = 0.0
    assert _same(shard.submit(second, 3, {}).result(5), index.search_batch(second, k=3))
    time.sleep(0.6)  # the late answer has been sent by now, on the dropped connection
    assert _same(shard.submit(second, 5, {}).result(5), index.search_batch(second, k=5))
    assert len(actor.calls) == 3 and len(shard._endpoints) == 1


def test_an_error_answer_leaves_the_shard_out_and_keeps_the_replica(four, monkeypatch):
    index = ShardedIndex.open(four).segments[1]
    actor = FakeActor(index, delay=0.0)
    shard = _shard(monkeypatch, {"shard-001": [actor]})
    q = _rows(Searcher(four), QUERIES[:1])[0]
    with pytest.raises(ShardError, match="ValueError: mode 'fast' is not one of"):
        shard.submit(q, 10, {"mode": "fast"}).result(5)
    assert _same(shard.submit(q, 10, {}).result(5), index.search_batch(q, k=10))
    assert len(shard._endpoints) == 1


def test_frames_round_trip_and_a_connection_without_the_token_is_dropped(four):
    arrays = (np.arange(3, dtype=np.int64), np.array([7, 9], np.int32), np.array([0.5, 1e-8], np.float32))
    data = ray_serve.frame({"op": "search", "k": 3, "kwargs": {"filter": {"term": ["a", "b"]}}}, arrays)
    n_head, _ = ray_serve.LENGTHS.unpack(data[:8])
    head, got = ray_serve.parse_frame(data[8 : 8 + n_head], bytearray(data[8 + n_head :]))
    assert head == {"op": "search", "k": 3, "kwargs": {"filter": {"term": ["a", "b"]}}}
    for a, b in zip(arrays, got, strict=True):
        assert np.array_equal(a, b) and a.dtype == b.dtype and b.flags.writeable
    with pytest.raises(ValueError, match="not <f8"):
        ray_serve.frame({}, (np.zeros(2),))
    with pytest.raises(ValueError, match="body has 4 bytes, its arrays 8"):
        ray_serve.parse_frame(b'{"arrays":[["<i8",1]]}', bytearray(4))
    with pytest.raises(ValueError, match="lists an array of '|O'"):
        ray_serve.parse_frame(b'{"arrays":[["|O",1]]}', bytearray(8))
    results = [
        SearchResult(np.array([4, 2], np.int32), np.array([2.5, 1.0], np.float32)),
        SearchResult([], []),
    ]
    answer = ray_serve.answer_frame(results)
    assert ray_serve.LENGTHS.unpack(answer[:8]) == (0, len(answer) - 8)  # no head: a search's answer
    counts, docs, scores = ray_serve.parse_answer(bytearray(answer[8:]))
    assert counts.tolist() == [2, 0] and docs.tolist() == [4, 2] and scores.tolist() == [2.5, 1.0]
    assert docs.dtype == np.int64 and scores.dtype == np.float32
    for cut in (answer[8:-4], answer[8:12], np.int64(-1).tobytes()):
        with pytest.raises(ValueError, match="a shard answer of"):
            ray_serve.parse_answer(bytearray(cut))
    actor = FakeActor(ShardedIndex.open(four).segments[0], delay=0.0)
    for hello in ({"op": "hello", "token": "wrong"}, {"op": "search"}):
        with socket.create_connection(actor.server.address, timeout=5) as conn:
            conn.sendall(ray_serve.frame(hello) + ray_serve.PING)
            assert conn.recv(100) == b""  # closed without an answer
    for lengths in ((1 << 30, 0), (20, 1 << 31)):  # too long for a hello: closed before reading it
        with socket.create_connection(actor.server.address, timeout=5) as conn:
            conn.sendall(ray_serve.LENGTHS.pack(*lengths))
            assert conn.recv(100) == b""
    assert not actor.calls
    shard = ShardActor.__new__(ShardActor)  # Serve's health check: the actor's ping
    shard.index, shard.server = actor.index, actor.server
    assert shard.ping() is True and shard.endpoint() == (*actor.server.address, actor.server.token)
    actor.kill()
    actor.server._acceptor.join(5)
    with pytest.raises(LsrError, match="stopped accepting connections"):
        shard.ping()


def test_sharded_index_over_ray_shards_answers_as_the_local_one(four, monkeypatch):
    local = ShardedIndex.open(four)
    fakes = {name: [FakeActor(s, delay=0.01)] for name, s in zip(local.names, local.segments, strict=True)}
    monkeypatch.setattr(ray_serve, "list_replicas", _listing(fakes))
    shards = [RayShard(name, name) for name in local.names]
    remote = ShardedIndex.open(four, shards, scatter=functools.partial(ray_serve.scatter, shards))
    rows = [r.row(0) for r in _rows(Searcher(four), QUERIES)]
    results: dict[int, object] = {}

    def client(start: int) -> None:
        for i in range(start, len(rows), 8):
            results[i] = remote.search(*rows[i], k=20)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (terms, weights) in enumerate(rows):
        expected = local.search(terms, weights, k=20)
        assert _same([results[i]], [expected]) and not hasattr(results[i], "missing")
    batch = remote.search_batch(SparseBatch.from_rows(rows), k=20)
    assert _same(batch, local.search_batch(SparseBatch.from_rows(rows), k=20))
    calls = [len(a[0].calls) for a in fakes.values()]
    assert all(c <= len(rows) + 1 for c in calls), calls  # never more calls than queries


def test_a_late_shard_is_left_out_and_kept(four, monkeypatch):
    local = ShardedIndex.open(four)
    fakes = {name: [FakeActor(s, delay=0.0)] for name, s in zip(local.names, local.segments, strict=True)}
    fakes["shard-002"][0].delay = 1.0
    monkeypatch.setattr(ray_serve, "list_replicas", _listing(fakes))
    remote = ShardedIndex.open(four, [RayShard(name, name, timeout_s=0.2) for name in local.names])
    terms, weights = _rows(Searcher(four), QUERIES[:1])[0].row(0)
    part = remote.search(terms, weights, k=20)
    assert part.missing == ("shard-002",)
    fakes["shard-002"][0].delay = 0.0
    time.sleep(1.0)  # the late call ends and frees its slot
    again = remote.search(terms, weights, k=20)
    assert _same([again], [local.search(terms, weights, k=20)]) and remote.missing_shards() == []


def test_a_call_to_a_dead_replica_goes_to_a_live_one(four, monkeypatch):
    index = ShardedIndex.open(four).segments[1]
    dead, live = FakeActor(index), FakeActor(index)
    dead.kill()
    shard = _shard(monkeypatch, {"shard-001": [dead, live]}, replicas=2)
    q = _rows(Searcher(four), QUERIES[:1])[0]
    for _ in range(4):  # whichever replica's turn it is, the answer is whole
        assert _same(shard.submit(q, 10, {}).result(5), index.search_batch(q, k=10))
    assert len(live.calls) == 4 and [e.key for e in shard._endpoints] == [live.endpoint().key]
    live.kill()  # no replica answers: the shard is missing
    with pytest.raises(LsrError):
        shard.submit(q, 10, {}).result(5)


def test_each_replica_has_a_call_in_flight(four, monkeypatch):
    index = ShardedIndex.open(four).segments[1]
    actors = [FakeActor(index, delay=2.0) for _ in range(2)]
    shard = _shard(monkeypatch, {"shard-001": actors}, replicas=2)
    rows = _rows(Searcher(four), QUERIES[:2])
    futures = [shard.submit(q, 10, {}) for q in rows]  # two calls at once, one per replica
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and not all(a.calls for a in actors):
        time.sleep(0.01)
    assert [len(a.calls) for a in actors] == [1, 1] and not any(f.done() for f in futures)
    for q, f in zip(rows, futures, strict=True):
        assert _same(f.result(5), index.search_batch(q, k=10))


def test_serve_replicas_flag_reaches_the_shard_deployments(four, monkeypatch):
    from lsr.cli import _serve_flags, build_parser
    from lsr.config import ServiceConfig
    from lsr.errors import ConfigError
    from lsr.service.app import default_opener

    args = build_parser().parse_args(["serve", "--index", f"f={four}", "--ray", "h:1", "--replicas", "3"])
    settings = ServiceConfig(**_serve_flags(args))
    assert (settings.ray, settings.ray_replicas) == ("h:1", 3)
    deployed = []
    monkeypatch.setattr(ray_serve, "deploy_sharded", lambda *a: deployed.append(a) or "searcher")
    assert default_opener(settings)(str(four)) == "searcher"
    assert deployed == [(str(four), "h:1", 3)]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="ray_replicas"):
            ServiceConfig(ray_replicas=bad)


def test_a_router_attaches_to_the_running_shards_of_the_same_build(four, monkeypatch):
    """A second router (another ``lsr serve`` worker) finds the shards deployed with this build and
    the wanted replicas and only attaches; a missing application, another replica count or another
    build (the index rebuilt in place) deploys."""
    serve = pytest.importorskip("ray.serve")
    local = ShardedIndex.open(four)
    actors: dict[str, list] = {}
    apps: dict[str, object] = {}
    deployed: list[list[str]] = []

    def fake_deploy(path, backends, cpus):
        deployed.append([b.key for b in backends])
        for b, segment in zip(backends, local.segments, strict=True):
            actors[b.key] = [FakeActor(segment, delay=0.0) for _ in range(b.replicas)]
            apps[ray_serve.app_name(path, b.name)] = type("App", (), {"status": "RUNNING"})()

    monkeypatch.setattr(ray_serve, "connect", lambda address: None)
    monkeypatch.setattr(serve, "start", lambda **kw: None)
    monkeypatch.setattr(serve, "status", lambda: type("Status", (), {"applications": apps})())
    monkeypatch.setattr(ray_serve, "list_replicas", _listing(actors))
    monkeypatch.setattr(ray_serve, "_deploy", fake_deploy)

    first = ray_serve.deploy_sharded(four, "h:1", replicas=2)
    assert len(deployed) == 1 and len(deployed[0]) == 4
    second = ray_serve.deploy_sharded(four, "h:1", replicas=2)  # attaches
    assert len(deployed) == 1
    terms, weights = _rows(Searcher(four), QUERIES[:1])[0].row(0)
    expected = local.search(terms, weights, k=10)
    assert _same([second.index.search(terms, weights, k=10)], [expected])
    assert _same([first.index.search(terms, weights, k=10)], [expected])
    ray_serve.deploy_sharded(four, "h:1", replicas=3)  # another replica count: deploys again
    assert len(deployed) == 2
    del apps[ray_serve.app_name(four, "shard-002")]
    ray_serve.deploy_sharded(four, "h:1", replicas=3)  # an application is gone: deploys again
    assert len(deployed) == 3
    manifest = four / "sharded.json"
    meta = json.loads(manifest.read_text())
    monkeypatch.setattr(ray_serve, "load_shards", lambda path: ({**meta, "build_id": "f" * 32}, None))
    ray_serve.deploy_sharded(four, "h:1", replicas=3)  # another build at the same path: new actors
    assert len(deployed) == 4 and deployed[3][0] != deployed[2][0]


def test_several_workers_need_a_cluster_address_with_ray():
    from lsr.config import ServiceConfig
    from lsr.errors import ConfigError

    with pytest.raises(ConfigError, match="workers = 2 with ray = 'local'"):
        ServiceConfig(ray="local", workers=2)
    assert ServiceConfig(ray="127.0.0.1:6379", workers=2).workers == 2


def _answered(conn: socket.socket) -> bool:
    """Whether the server answered on ``conn`` (False: it closed the connection, cleanly or by a reset)."""
    try:
        return len(conn.recv(100)) > 0
    except ConnectionResetError:
        return False


def _authenticated(server) -> socket.socket:
    conn = socket.create_connection(server.address, timeout=5)
    conn.sendall(ray_serve.frame({"op": "hello", "token": server.token}) + ray_serve.PING)
    return conn


def test_a_silent_peer_is_closed_after_the_hello_timeout_and_an_authenticated_one_is_not(four, monkeypatch):
    monkeypatch.setattr(ray_serve, "HELLO_TIMEOUT_S", 0.3)
    actor = FakeActor(ShardedIndex.open(four).segments[0], delay=0.0)
    with (
        socket.create_connection(actor.server.address, timeout=5) as silent,
        _authenticated(actor.server) as ok,
    ):
        assert _answered(ok)  # the hello's and the ping's answers
        t0 = time.monotonic()
        assert not _answered(silent)  # closed by the server
        assert 0.2 < time.monotonic() - t0 < 4
        time.sleep(0.5)  # past the hello timeout: the authenticated connection still answers
        ok.sendall(ray_serve.PING)
        assert _answered(ok)
    actor.kill()


def test_connections_beyond_the_cap_are_closed_at_once(four, monkeypatch):
    monkeypatch.setattr(ray_serve, "MAX_CONNECTIONS", 2)
    actor = FakeActor(ShardedIndex.open(four).segments[0], delay=0.0)
    held = [_authenticated(actor.server) for _ in range(2)]
    assert all(_answered(conn) for conn in held)
    with _authenticated(actor.server) as third:
        assert not _answered(third)  # over the cap: closed
    held.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the server notices the close, then takes a new connection again
        with _authenticated(actor.server) as again:
            if _answered(again):
                break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for conn in held:
        conn.close()
    actor.kill()
