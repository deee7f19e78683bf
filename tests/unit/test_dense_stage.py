"""The dense stage: build (faiss PQ) from a tiny random BertModel, open, re-rank, fuse, CLI, bad input."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("transformers")

from lsr.cli import main
from lsr.config import load_config
from lsr.dense.fusion import fuse
from lsr.dense.stage import DenseStage, build_dense_stage, store_fusion, train_pq
from lsr.dense.tune import tune_fusion
from lsr.errors import LsrError
from lsr.index import SearchResult
from lsr.index.io import ArtifactError
from lsr.index.pq import adc_reference, adc_scores, build_lut, decode_reference, pq_encode
from lsr.pipeline import index_corpus
from lsr.searcher import Plan, Queries, Searcher

_TINY = Path(__file__).parent / "encoders" / "tiny_models.py"  # the tiny checkpoints of the encoder tests
_spec = importlib.util.spec_from_file_location("tiny_models", _TINY)
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

DOCS = [*tiny.DOCS, ("d8", "Dogs", "the dog and the dogs sat"), ("d9", "Risk", "coffee lowers cancer risk")]
QUERIES = {"q1": "vitamin d cancer", "q2": "coffee sleep", "q3": "cat on the mat", "q4": "dogs"}
QRELS = {"train": [("q1", "d1"), ("q2", "d2"), ("q3", "d4")], "test": [("q4", "d8"), ("q1", "d3")]}


def write_beir(folder: Path, docs=DOCS) -> Path:
    folder.mkdir(parents=True)
    tiny.write_corpus(folder / "corpus.jsonl", docs)
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items())
    )
    (folder / "qrels").mkdir()
    for split, rows in QRELS.items():
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in rows)
        )
    return folder


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    return tiny.make_backbone(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_beir(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def hybrid_index(tmp_path_factory, data, backbone) -> Path:
    out = tmp_path_factory.mktemp("idx") / "bm25"
    index_corpus(load_config("bm25"), data, out)
    build_dense_stage(out, data, str(backbone), pq_m=8, keep_float=True)
    return out


def test_build_writes_a_self_describing_dense_stage(hybrid_index, backbone):
    meta = json.loads((hybrid_index / "dense" / "meta.json").read_text())
    assert meta["format"] == "lsr-dense" and meta["format_version"] == 1
    assert (meta["dim"], meta["m"], meta["n_docs"], meta["bytes_per_doc"]) == (32, 8, len(DOCS), 8)
    # 9 documents cannot train 256 centroids: 3 bits (8 centroids), recorded with the reason
    assert meta["nbits"] == 3 and meta["ksub"] == 8 and "falls back" in meta["notes"][0]
    assert meta["model"]["path"] == str(backbone) and meta["fusion"]["method"] == "convex-minmax"
    stage = DenseStage.open(hybrid_index)
    assert stage.codes.codes.shape == (len(DOCS), 8) and stage.codes.codes.max() < 8
    assert stage.codes.vectors.shape == (len(DOCS), 32)
    # the codes are the stored vectors' nearest centroids: ADC approximates the exact inner product
    q = stage.encode_queries(["vitamin d cancer"])[0]
    exact = stage.codes.score_float(q, np.arange(len(DOCS)))
    assert np.allclose(
        stage.codes.score(q, np.arange(len(DOCS))),
        adc_reference(q, stage.codes.codebooks, np.asarray(stage.codes.codes)),
        atol=1e-5,
    )
    assert np.abs(stage.codes.scan(q) - exact).max() < 0.5


def test_searcher_rerank_fuses_sparse_and_dense(hybrid_index):
    s = Searcher(hybrid_index)

    def search(**plan):
        return s.hits(s.search("vitamin cancer risk", Plan(k=5, **plan)))

    sparse = search()
    assert search(rerank="none") == sparse
    hybrid = search(rerank="dense", depth=100)
    # by hand: the sparse top-100 (all matches), ADC scores, min-max convex fusion with weight 0.5
    res = s.index.search(*s.encode_texts(["vitamin cancer risk"]).row(0), k=100)
    q = s.dense.encode_queries(["vitamin cancer risk"])[0]
    fused = fuse(res.scores, s.dense.codes.score(q, res.docs), "convex-minmax", 0.5)
    order = np.lexsort((np.arange(len(fused)), -fused))[:5]
    assert [h.doc_id for h in hybrid] == [s.index.doc_keys[d] for d in res.docs[order]]
    np.testing.assert_allclose([h.score for h in hybrid], fused[order], rtol=1e-6)
    only_sparse = search(rerank="dense", fusion_weight=0.0)
    assert [h.doc_id for h in only_sparse] == [h.doc_id for h in sparse]


def test_rerank_keeps_the_tail_below_the_depth(hybrid_index):
    s = Searcher(hybrid_index)
    plan = Plan(k=5, rerank="dense", depth=3)
    first = [
        SearchResult(s.internal_ids(["d1", "d3", "d9", "d2", "d4"]), np.array([5.0, 4.0, 3.0, 2.0, 1.0]))
    ]
    queries = s.encode(Queries(texts=["vitamin cancer"]), plan)
    run = s.to_run(["q"], s.rerank(queries, first, plan))
    ranked = sorted(run["q"], key=lambda d: -run["q"][d])
    assert set(ranked[:3]) == {"d1", "d3", "d9"} and ranked[3:] == ["d2", "d4"]
    with pytest.raises(LsrError, match="not in index"):
        s.internal_ids(["nope"])


def test_index_without_dense_stage_is_named(tmp_path, data):
    index_corpus(load_config("bm25"), data, tmp_path / "plain")
    s = Searcher(tmp_path / "plain")
    assert s.dense is None
    with pytest.raises(LsrError, match=f"index {tmp_path / 'plain'} has no dense stage"):
        s.search("coffee", Plan(rerank="dense"))


def test_m_must_divide_the_dimension_and_nothing_is_written(tmp_path, data, backbone):
    index_corpus(load_config("bm25"), data, tmp_path / "i")
    with pytest.raises(ValueError, match=r"M = 5 .* dimension 32; valid M: \[1, 2, 4, 8, 16, 32\]"):
        build_dense_stage(tmp_path / "i", data, str(backbone), pq_m=5)
    assert not (tmp_path / "i" / "dense").exists()
    assert DenseStage.open(tmp_path / "i") is None


def test_refuses_a_corpus_that_is_not_the_index_s(tmp_path, data, backbone):
    index_corpus(load_config("bm25"), data, tmp_path / "i")
    other = write_beir(tmp_path / "other", DOCS[:-1] + [("zz", "", "fish")])
    with pytest.raises(LsrError, match=r"is not the corpus of index .* 1 corpus ids not in the index"):
        build_dense_stage(tmp_path / "i", other, str(backbone), pq_m=8)


def test_refuses_dense_codes_of_another_corpus(tmp_path, hybrid_index, backbone):
    other = write_beir(tmp_path / "other", DOCS[:-1])
    index_corpus(load_config("bm25"), other, tmp_path / "j")
    shutil.copytree(hybrid_index / "dense", tmp_path / "j" / "dense")  # codes of 9 docs, index of 8
    with pytest.raises(ArtifactError, match=r"another corpus.*\(9 docs.*\(8 docs"):
        DenseStage.open(tmp_path / "j")
    # same count, other ids: the digest catches it
    renamed = write_beir(tmp_path / "renamed", DOCS[:-1] + [("d10", "Risk", "coffee lowers risk")])
    index_corpus(load_config("bm25"), renamed, tmp_path / "k")
    shutil.copytree(hybrid_index / "dense", tmp_path / "k" / "dense")
    with pytest.raises(ArtifactError, match="another corpus"):
        _ = Searcher(tmp_path / "k").dense


def test_refuses_corrupt_or_foreign_dense_meta(tmp_path, hybrid_index):
    shutil.copytree(hybrid_index, tmp_path / "i")
    meta_path = tmp_path / "i" / "dense" / "meta.json"
    meta_path.write_text('{"format": "lsr-index", "format_version": 1}')
    with pytest.raises(ArtifactError, match="not 'lsr-dense'"):
        DenseStage.open(tmp_path / "i")
    meta_path.write_text("garbage")
    with pytest.raises(ArtifactError, match="corrupt"):
        DenseStage.open(tmp_path / "i")


def test_too_few_documents():
    with pytest.raises(LsrError, match="at least 2 document vectors to train, got 1"):
        train_pq(np.ones((1, 32), np.float32), 8)
    with pytest.raises(LsrError, match="OPQ needs at least 256 document vectors to train, got 9"):
        train_pq(np.random.default_rng(0).normal(size=(9, 32)).astype(np.float32), 8, opq=True)


def test_opq_rotation_is_orthonormal_and_scores_match():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 32)).astype(np.float32)
    books, rot, nbits, _ = train_pq(x, 8, opq=True)
    assert nbits == 8 and books.shape == (8, 256, 4)
    np.testing.assert_allclose(rot @ rot.T, np.eye(32), atol=1e-4)
    # inner products survive the rotation: ADC of the rotated query on the rotated codes is the dot of
    # the query with the decoded vector rotated back
    codes = pq_encode(x @ rot.T, books)
    q = rng.normal(size=32).astype(np.float32)
    back = decode_reference(books, codes) @ rot
    np.testing.assert_allclose(
        adc_scores(build_lut((rot @ q).astype(np.float32), books), codes, np.arange(600)),
        back @ q,
        rtol=1e-4,
        atol=1e-3,
    )


def test_tune_fusion_stores_the_weight_and_search_uses_it(hybrid_index, data):
    from lsr.eval.hybrid import tuning_set

    cfg = load_config(None)
    res = tune_fusion(
        Searcher(hybrid_index),
        tuning_set(data, "train", cfg),
        Plan.from_config(cfg.search),
        ("convex-minmax", "rrf"),
    )
    stage = DenseStage.open(hybrid_index)
    assert stage.fusion["method"] == res["method"] and stage.fusion["weight"] == res["weight"]
    assert stage.fusion["tuned_on"]["split"] == "train" and set(stage.fusion["weights"]) == {
        "convex-minmax",
        "rrf",
    }
    assert max(res["grid"][res["method"]].values()) == res["tuned_on"]["value"]
    assert stage.resolve_fusion("auto", -1.0) == (res["method"], res["weight"])
    assert stage.resolve_fusion("convex-minmax", 0.25) == ("convex-minmax", 0.25)
    store_fusion(hybrid_index, "convex-minmax", 0.5)  # back to the default for the other tests


def test_cli_index_search_eval(tmp_path, data, backbone, capsys):
    idx = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(data),
                "--encoder",
                "bm25",
                "--out",
                str(idx),
                "--dense",
                str(backbone),
                "--pq",
                "4",
                "--keep-float",
                "--quiet",
            ]
        )
        == 0
    )
    assert "PQ M = 4 x 3 bits = 4 bytes/doc, float vectors kept" in capsys.readouterr().out
    assert main(["search", "--index", str(idx), "coffee cancer risk", "--rerank", "dense", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    run = tmp_path / "run.trec"
    assert (
        main(
            [
                "search",
                "--index",
                str(idx),
                "--queries",
                str(data),
                "--split",
                "test",
                "--rerank",
                "dense",
                "--k",
                "2",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    lines = run.read_text().splitlines()
    assert len(lines) == 4 and {ln.split()[0] for ln in lines} == {"q1", "q4"}
    out = tmp_path / "rep.json"
    assert (
        main(
            [
                "eval",
                "index",
                "--index",
                str(idx),
                "--dataset",
                str(data),
                "--split",
                "test",
                "--rerank-stage",
                "dense",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    rep = json.loads(out.read_text())
    sec = rep["rerank"]
    assert sec["depth"] == 100 and sec["bytes_per_doc"] == 4 and sec["fusion"]["method"] == "convex-minmax"
    assert sec["latency_ms"]["n_queries"] == 2 and "p50" in sec["query_encode_ms"]
    assert "ndcg@10" in sec["sparse_metrics"]
    assert (
        main(
            [
                "eval",
                "index",
                "--index",
                str(idx),
                "--dataset",
                str(data),
                "--split",
                "test",
                "--first-stage",
                "dense-pq",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["dense"]["bytes_per_doc"] == 4
    # an existing dense stage is not replaced without --overwrite; a bad M leaves it intact
    assert main(["index", "--dense-for", str(idx), "--dense", str(backbone), "--pq", "4"]) == 2
    assert main(["index", "--dense-for", str(idx), "--dense", str(backbone), "--pq", "5", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "valid M: [1, 2, 4, 8, 16, 32]" in err
    assert DenseStage.open(idx).meta["m"] == 4
    # --dense-for re-quantizes from the stored float vectors (no corpus needed: the docstore)
    assert (
        main(
            [
                "index",
                "--dense-for",
                str(idx),
                "--dense",
                str(backbone),
                "--pq",
                "8",
                "--overwrite",
                "--quiet",
            ]
        )
        == 0
    )
    assert DenseStage.open(idx).meta["m"] == 8
    assert main(["tune-fusion", "--index", str(idx), "--dataset", str(data), "--quiet"]) == 0
    assert "stored in" in capsys.readouterr().out
    assert DenseStage.open(idx).fusion["tuned"] is True


def test_dl_rerank_protocol_with_the_dense_stage(tmp_path, data, hybrid_index):
    from lsr.eval.rerank import rerank_eval

    pool = tmp_path / "pool"
    shutil.copytree(data, pool)
    (pool / "runs").mkdir()
    (pool / "runs" / "bm25.test.trec").write_text(
        "".join(
            f"{q} Q0 {d} {r + 1} {10 - r} bm25\n"
            for q in ("q1", "q4")
            for r, d in enumerate(["d3", "d8", "d1", "d9", "d2"])
        )
    )

    def report(weight: float) -> dict:
        cfg = load_config(None, [f"search.fusion_weight={weight}"])
        return rerank_eval(pool, cfg, hybrid_index, "bm25", ["test"], 5, rerank="dense")["splits"]["test"]

    half, sparse_only = report(0.5), report(0.0)
    sec = half["rerank"]
    assert sec["depth"] == 5 and sec["fusion"]["weight"] == 0.5 and sec["latency_ms"]["n_queries"] == 2
    # weight 0 keeps the sparse re-rank order: its metrics are the sparse ones
    assert sparse_only["metrics"] == sparse_only["rerank"]["sparse_metrics"] == sec["sparse_metrics"]


def test_concurrent_searches_equal_sequential_ones(hybrid_index):
    """Many threads on one searcher, hybrid (dense query encoding) and plain, as the service runs them."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [*QUERIES.values(), "vitamin cancer risk", "the dog and the cat", "coffee lowers risk"]
    plans = [Plan(k=5), Plan(k=5, rerank="dense", depth=100), Plan(k=3, rerank="dense-float", depth=4)]
    jobs = [(t, p) for t in texts for p in plans] * 4

    def run(searcher, job):
        r = searcher.search(*job)
        return r.docs.tolist(), r.scores.tolist()

    sequential = Searcher(hybrid_index)
    expected = [run(sequential, job) for job in jobs]
    fresh = Searcher(hybrid_index)  # lazy encoders and dense stage opened by the racing threads
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda job: run(fresh, job), jobs))
    assert got == expected


def test_dense_stage_codes_beyond_the_codebooks_are_refused(tmp_path, hybrid_index):
    from lsr.index.io import CorruptArtifactError
    from lsr.verify import verify

    shutil.copytree(hybrid_index, tmp_path / "i")
    assert verify(tmp_path / "i").ok and verify(tmp_path / "i" / "dense").ok
    codes = np.load(tmp_path / "i" / "dense" / "codes.npy")
    codes[0, 0] = 200  # the codebooks hold 8 centroids: the ADC kernels would read past them
    np.save(tmp_path / "i" / "dense" / "codes.npy", codes)
    with pytest.raises(CorruptArtifactError, match="codes hold centroid 200 of 8"):
        DenseStage.open(tmp_path / "i")
    problems = verify(tmp_path / "i").problems
    assert [p.name for p, _ in problems] == ["codes.npy", "dense"] or problems[0][0].name == "codes.npy"
