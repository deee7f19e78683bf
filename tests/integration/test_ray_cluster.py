"""On a real local Ray cluster (a head and one worker node on this machine, 1 CPU each, 200 MB object
stores, no dashboard): encode a small corpus with the tiny SPLADE model through Ray Data actors, resume
after a partial run, build 4 shards, serve them on Ray Serve through the ``lsr serve`` app, check every
answer against a single index, kill a shard replica (no error answers), then stop the cluster.

Skipped without the ``ray`` extra; with ``LSR_REQUIRE_DATA=1`` (CI) a missing ray fails instead. About
2-3 minutes on the 2-core CI machine (cluster start ~30 s, deploy ~20 s).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lsr.cli import main
from lsr.config import ServiceConfig, load_config
from lsr.data.trec import trec_order
from lsr.encoders import encoder_overrides
from lsr.errors import LsrError
from lsr.pipeline import build_index_from_vectors, encode_corpus
from lsr.searcher import Searcher
from lsr.sharded import build_sharded
from lsr.vectors import Vectors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from sharded_helpers import QUERIES, write_corpus

from benchmarks.ray_encode_bench import start_node, stop_node

REPO = Path(__file__).resolve().parents[2]
PORT = 6391  # the head's port (CI's cluster; nothing else on this machine uses Ray)
ADDRESS = f"127.0.0.1:{PORT}"
NODE_FLAGS = ["--num-cpus", "1", "--object-store-memory", "200000000", "--disable-usage-stats"]


def _require_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("LSR_REQUIRE_DATA") == "1":
            pytest.fail("LSR_REQUIRE_DATA=1 (CI) and ray is missing: pip install -e '.[ray]'")
        pytest.skip("needs the ray extra (pip install -e '.[ray]')")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[str]:
    _require_ray()
    # no token authentication (nodes, and this process's driver): once any local ray.init has written
    # ~/.ray/auth_token, a head started with RAY_AUTH_MODE unset requires the token and a `ray start
    # --address` node does not send it (Ray 2.60)
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    logs = tmp_path_factory.mktemp("ray")
    # the head's own temp dir (short: socket paths live there): it writes the cluster's address there,
    # not into /tmp/ray, where a later ray.init() would take it for a running cluster
    temp = tempfile.mkdtemp(prefix="lsr-ray-")
    nodes: list[subprocess.Popen] = []
    try:
        head = ["--head", "--port", str(PORT), "--include-dashboard=false", "--temp-dir", temp]
        nodes.append(start_node(*head, *NODE_FLAGS, log=logs / "head", timeout_s=120))
        nodes.append(start_node("--address", ADDRESS, *NODE_FLAGS, log=logs / "worker", timeout_s=120))
        yield ADDRESS
    finally:
        import ray

        ray.shutdown()
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(temp, ignore_errors=True)
        if before is None:
            os.environ.pop("RAY_AUTH_MODE")
        else:
            os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture(scope="module")
def tiny_model() -> str:
    """splade-tiny (scripts/fetch_models.py, as CI fetches it), else the shipped splade-scifact (the
    default splade writes word terms, which --ray refuses)."""
    folder = REPO / "models" / "splade-tiny"
    fallback = REPO / "lsr" / "models" / "splade-scifact"
    return f"splade:{folder if (folder / 'model.safetensors').is_file() else fallback}"


def test_an_address_that_does_not_answer_fails_fast(tiny_model, tmp_path, capsys):
    _require_ray()
    from lsr.ray_encode import check_reachable

    start = time.perf_counter()
    with pytest.raises(LsrError, match="the Ray cluster at 127.0.0.1:18799 does not answer"):
        check_reachable("127.0.0.1:18799")
    with pytest.raises(LsrError, match="must be HOST:PORT"):
        check_reachable("no-port")
    corpus = write_corpus(tmp_path / "c.jsonl", n=5)
    args = ["encode", "--encoder", tiny_model, "--corpus", str(corpus), "--out", str(tmp_path / "v")]
    assert main([*args, "--ray", "127.0.0.1:18799", "--quiet"]) != 0
    assert "127.0.0.1:18799 does not answer" in capsys.readouterr().err
    words = ["encode", "--encoder", "splade", "--corpus", str(corpus), "--out", str(tmp_path / "w")]
    assert main([*words, "--ray", "127.0.0.1:18799", "--quiet"]) != 0  # refused before the network
    assert "writes word terms" in capsys.readouterr().err
    assert time.perf_counter() - start < 10 and not (tmp_path / "v").exists()
    bm25 = ["encode", "--encoder", "bm25", "--corpus", str(corpus), "--out", str(tmp_path / "b")]
    assert main([*bm25, "--ray", "127.0.0.1:18799", "--quiet"]) != 0
    assert "encode bm25 in one process" in capsys.readouterr().err


def test_encode_shard_and_serve_on_the_cluster(cluster, tiny_model, tmp_path, monkeypatch):
    from lsr.ray_encode import blocks_dir

    corpus = write_corpus(tmp_path / "corpus.jsonl", n=60)
    config = load_config(None, [*encoder_overrides(tiny_model), "encoder.shard_docs=10"])

    # what an interrupted run leaves: blocks 0 and 3 written (by the one block writer), the rest not
    t0 = time.perf_counter()
    _interrupted_run(config, corpus, tmp_path / "v-ray", blocks=(0, 3))
    kept = (blocks_dir(tmp_path / "v-ray") / "block-00000").stat().st_mtime_ns
    args = ["encode", "--encoder", tiny_model, "--corpus", str(corpus), "--out", str(tmp_path / "v-ray")]
    assert main([*args, "--ray", cluster, "--set", "encoder.shard_docs=10", "--quiet"]) == 0
    meta = Vectors(tmp_path / "v-ray").meta
    stage_seconds = meta["ray"].pop("stage_seconds")
    assert meta["ray"] == {"blocks": 6, "encoded": 4, "actors": 2}  # blocks 0 and 3 were not redone
    assert 0 < stage_seconds < meta["encode_seconds"]
    assert kept and not blocks_dir(tmp_path / "v-ray").exists()
    timings = {"ray encode": time.perf_counter() - t0}

    encode_corpus(config, corpus, tmp_path / "v-one")
    ray_v, one_v = Vectors(tmp_path / "v-ray"), Vectors(tmp_path / "v-one")
    assert list(ray_v.iter_ids()) == list(one_v.iter_ids()) and ray_v.n_docs == 60
    for a, b in zip(ray_v.batches(), one_v.batches(), strict=True):
        assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.term_ids, b.term_ids)
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-4, atol=1e-5)

    build_index_from_vectors(config, tmp_path / "v-one", tmp_path / "one")
    build_sharded(config, tmp_path / "v-ray", tmp_path / "four", 4)
    t0 = time.perf_counter()
    _serve_and_compare(cluster, tmp_path / "one", tmp_path / "four", monkeypatch)
    timings["serve, compare, kill"] = time.perf_counter() - t0
    print("phases (s):", {k: round(v, 1) for k, v in timings.items()})


def test_a_vocabulary_that_grows_is_refused(cluster, tiny_model, tmp_path):
    """bm25+MODEL: each actor's BM25 would number its own terms."""
    from lsr.ray_encode import encode_corpus_ray

    config = load_config(None, encoder_overrides(f"bm25+{tiny_model}"))
    with pytest.raises(LsrError, match=r"--ray: the bm25\+splade encoder's vocabulary grows"):
        encode_corpus_ray(config, write_corpus(tmp_path / "c.jsonl", n=5), tmp_path / "v", cluster)
    assert not (tmp_path / "v").exists()


def _interrupted_run(config, corpus: Path, out: Path, blocks: tuple[int, ...]) -> None:
    from lsr.data.corpus import open_corpus
    from lsr.encode import resume_key
    from lsr.encoders import make_encoder
    from lsr.ray_encode import blocks_dir, corpus_blocks, open_blocks, write_block

    docs = open_corpus(corpus)
    work = open_blocks(blocks_dir(out), resume_key(config, corpus, docs))
    encoder = make_encoder(config.encoder)
    for i, block in corpus_blocks(docs, config.encoder.shard_docs):
        if i in blocks:
            write_block(work, i, encoder.encode([doc.contents for doc in block]))


def _serve_and_compare(address: str, one_dir: Path, four_dir: Path, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from lsr.ray_serve import app_name, undeploy_sharded
    from lsr.service.app import create_app

    monkeypatch.delenv("LSR_API_KEY", raising=False)
    one = Searcher(one_dir)
    settings = ServiceConfig(indexes={"four": str(four_dir)}, ray=address, log_requests=False)
    with TestClient(create_app(settings)) as client:
        _wait(lambda: client.get("/readyz").status_code == 200, 360)  # Serve starts slowly on 2 busy cores
        for mode in ("exact", "safe"):
            for q in QUERIES[:8]:
                got = client.post("/v1/search", json={"query": q, "k": 20, "mode": mode}).json()
                # the service ranks ties as run files do (score desc, then doc id desc): so the reference
                deeper = one.hits(one.search(q, _plan(mode, k=60)), ())
                expected = trec_order({h.doc_id: h.score for h in deeper})[:20]
                assert [(h["id"], h["score"]) for h in got["hits"]] == expected
        _concurrent_clients(client, one)
        _kill_replica(app_name(four_dir, "shard-001"))
        # answers are full until the kill takes effect (ray.kill returns at once), then leave shard-001
        # out (partial) until Serve has replaced the replica and its actor, then are full again; none
        # is an error
        statuses, partial, full_after = [], 0, 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (partial and full_after):
            r = client.post("/v1/search", json={"query": QUERIES[0], "k": 20})
            statuses.append(r.status_code)
            if r.json().get("partial"):
                partial += 1
                assert r.json()["missing_shards"] == ["shard-001"]
            elif partial:
                full_after += 1
        assert set(statuses) == {200}, statuses
        print(f"after the kill: {len(statuses) - partial - full_after} full, {partial} partial, then full")
        assert partial and full_after, "the dead shard was never left out, or never came back"
        full = client.post("/v1/search", json={"query": QUERIES[0], "k": 20}).json()
        assert "partial" not in full
    undeploy_sharded(four_dir)


def _concurrent_clients(client, one: Searcher) -> None:
    """8 clients at once get the single index's answers, and their queries share shard calls."""
    queries = QUERIES * 2
    before = _shard_calls(client)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda q: client.post("/v1/search", json={"query": q, "k": 20}), queries))
    calls = _shard_calls(client) - before
    for q, r in zip(queries, answers, strict=True):
        expected = trec_order({h.doc_id: h.score for h in one.hits(one.search(q, _plan("exact", 60)), ())})
        assert r.status_code == 200 and [(h["id"], h["score"]) for h in r.json()["hits"]] == expected[:20]
    print(f"8 clients: {len(queries)} queries, {calls:.0f} shard calls (4 shards)")
    assert calls < 4 * len(queries)


def _shard_calls(client) -> float:
    lines = client.get("/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith("lsr_shard_calls{"))


def _plan(mode: str, k: int = 20):
    from lsr.searcher import Plan

    return Plan(k=k, mode=mode)


def _kill_replica(app: str) -> None:
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if app in a["name"]]
    assert names, f"no replica of {app}"
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=False)


def _wait(ready, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
