"""Tied scores in the service come in the order of run files and ``lsr eval`` (trec_eval's: score desc,
then doc id desc), on every page: an index of 40 documents in four groups of equal scores, whose ids
ascend with the internal ids (the index's own tie order is the reverse)."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from lsr.cli import main
from lsr.config import ServiceConfig
from lsr.data.trec import read_run
from lsr.service.app import create_app

N = 40
IDS = [f"d{i:02d}" for i in range(N)]
WEIGHT = {doc: float(4 - i % 4) for i, doc in enumerate(IDS)}  # four groups of ten equal scores


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("ties")
    vectors = root / "v.jsonl"
    vectors.write_text(
        "".join(json.dumps({"id": d, "vector": {"t": w, "u": 1.0}}) + "\n" for d, w in WEIGHT.items())
    )
    index = root / "idx"
    assert main(["index", "--vectors", str(vectors), "--out", str(index), "--quiet"]) == 0
    return root, index


@pytest.fixture(scope="module")
def client(built):
    settings = ServiceConfig(indexes={"t": str(built[1])}, warmup=False, log_requests=False)
    with TestClient(create_app(settings)) as c:
        for _ in range(200):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        yield c


def expected() -> list[str]:
    """The whole ranking by hand: weight desc, then id desc."""
    return sorted(IDS, key=lambda d: (WEIGHT[d], d), reverse=True)


def test_the_index_breaks_ties_the_other_way(built):
    from lsr.searcher import Plan, Queries, Searcher

    searcher = Searcher(built[1])
    result = searcher.search_batch(Queries(sparse=searcher.encode_vectors([{"t": 1.0}])), Plan(k=N))[0]
    keys = [searcher.index.doc_keys[d] for d in result.docs.tolist()]
    assert keys != expected() and sorted(keys) == sorted(IDS)  # else this test would prove nothing


@pytest.mark.parametrize("k", [1, 3, 7, 10])
def test_every_page_is_a_slice_of_the_trec_order(client, k):
    want = expected()
    for start in range(0, N, k):
        body = {"vector": {"t": 1.0}, "k": k, "from": start}
        hits = client.post("/v1/search", json=body).json()["hits"]
        assert [h["id"] for h in hits] == want[start : start + k], (k, start)
        assert [h["rank"] for h in hits] == list(range(start + 1, start + 1 + len(hits)))
        batch = client.post(
            "/v1/search/batch", json={"queries": [{"vector": {"t": 1.0}}], "k": k, "from": start}
        )
        assert [h["id"] for h in batch.json()["results"][0]["hits"]] == want[start : start + k]


def test_the_service_and_a_run_file_agree(client, built, tmp_path):
    root, index = built
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": "q", "vector": {"t": 1.0}}) + "\n")
    run = tmp_path / "run.trec"
    assert (
        main(["search", "--index", str(index), "--queries", str(queries), "--k", str(N), "--out", str(run)])
        == 0
    )
    in_file = list(read_run(run)["q"])
    hits = client.post("/v1/search", json={"vector": {"t": 1.0}, "k": N}).json()["hits"]
    assert [h["id"] for h in hits] == in_file == expected()
