"""The PQ artifact and ADC kernels (lsr.index.pq) against slow references and faiss."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lsr.index.io import ArtifactError, save_array, write_meta
from lsr.index.pq import (
    DENSE_FORMAT,
    DenseCodes,
    adc_reference,
    adc_scan,
    adc_scores,
    build_lut,
    check_m,
    decode_reference,
    ids_digest,
    pq_encode,
    valid_m,
)
from lsr.index.topk import top_k


def _random_pq(seed: int, n: int = 50, m: int = 4, ksub: int = 16, dsub: int = 3):
    rng = np.random.default_rng(seed)
    books = rng.normal(size=(m, ksub, dsub)).astype(np.float32)
    codes = rng.integers(0, ksub, size=(n, m)).astype(np.uint8)
    query = rng.normal(size=m * dsub).astype(np.float32)
    return books, codes, query


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ksub", [1, 4, 256])
def test_adc_matches_decode_then_dot(seed, ksub):
    books, codes, query = _random_pq(seed, ksub=ksub)
    lut = build_lut(query, books)
    assert lut.shape == (4, ksub)
    ref_lut = np.einsum("mkd,md->mk", books.astype(np.float64), query.reshape(4, -1).astype(np.float64))
    np.testing.assert_allclose(lut, ref_lut, rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(seed)
    cands = rng.integers(0, len(codes), size=20).astype(np.int64)  # repeats allowed
    np.testing.assert_allclose(
        adc_scores(lut, codes, cands), adc_reference(query, books, codes, cands), rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(adc_scan(lut, codes), adc_reference(query, books, codes), rtol=1e-5, atol=1e-4)


def test_adc_edge_cases():
    books, codes, query = _random_pq(0)
    lut = build_lut(query, books)
    assert adc_scores(lut, codes, np.zeros(0, np.int64)).shape == (0,)
    empty_codes = np.zeros((0, 4), np.uint8)
    assert adc_scan(lut, empty_codes).shape == (0,)
    zero = build_lut(np.zeros_like(query), books)
    assert not adc_scan(zero, codes).any()  # an all-zero query scores every document 0


def test_pq_encode_picks_the_nearest_centroid_like_faiss():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(700, 16)).astype(np.float32)
    index = faiss.IndexPQ(16, 4, 8)
    index.pq.cp.min_points_per_centroid = 1
    index.train(x)
    books = faiss.vector_to_array(index.pq.centroids).reshape(4, 256, 4)
    ours = pq_encode(x, books)
    theirs = index.sa_encode(x)
    assert ours.dtype == np.uint8 and ours.shape == (700, 4)
    # equal up to exact distance ties, which random floats do not produce
    assert (ours == theirs).mean() > 0.999
    # and each code is the argmin of the brute-force distances
    dist = ((x.reshape(700, 4, 1, 4) - books[None]) ** 2).sum(-1)
    assert np.array_equal(ours, dist.argmin(-1))
    recon = decode_reference(books, ours)
    assert recon.shape == (700, 16)


def test_pq_encode_rejects_mismatched_dims():
    books, _, _ = _random_pq(0)
    with pytest.raises(ValueError, match="do not match"):
        pq_encode(np.zeros((3, 5), np.float32), books)


def test_check_m_lists_valid_values():
    check_m(384, 48)
    assert valid_m(12) == [1, 2, 3, 4, 6, 12]
    with pytest.raises(ValueError, match=r"M = 5 .* dimension 12; valid M: \[1, 2, 3, 4, 6, 12\]"):
        check_m(12, 5)
    with pytest.raises(ValueError, match="valid M"):
        check_m(12, 0)


@pytest.mark.parametrize("seed", range(3))
def test_top_k_matches_a_full_sort_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=40).astype(np.float32)  # many ties
    for k in (1, 7, 40, 100):
        docs, s = top_k(scores, k)
        ref = sorted(range(len(scores)), key=lambda d: (-scores[d], d))[:k]
        assert docs.tolist() == ref
        assert s.tolist() == scores[ref].tolist()
    assert len(top_k(np.zeros(0, np.float32), 5)[0]) == 0


def test_ids_digest_depends_on_order_and_content():
    assert ids_digest(["a", "b"]) != ids_digest(["b", "a"])
    assert ids_digest(["ab"]) != ids_digest(["a", "b"])
    assert ids_digest(["a", "b"]) == ids_digest(iter(["a", "b"]))


def _write_dense(path, n=6, m=2, ksub=4, dim=4, meta_extra=None, codes=None):
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, ksub, size=(n, m)).astype(np.uint8) if codes is None else codes
    books = rng.normal(size=(m, ksub, dim // m)).astype(np.float32)
    arrays = {"codes": save_array(path, "codes", codes), "codebooks": save_array(path, "codebooks", books)}
    meta = {"format": DENSE_FORMAT, "format_version": 1, "n_docs": n, "m": m, "dim": dim, "arrays": arrays}
    write_meta(path, meta | (meta_extra or {}))
    return codes, books


def test_dense_codes_load_and_score(tmp_path):
    codes, books = _write_dense(tmp_path / "dense")
    dc = DenseCodes.load(tmp_path / "dense")
    q = np.arange(4, dtype=np.float32)
    np.testing.assert_allclose(
        dc.score(q, np.array([5, 0, 5])), adc_reference(q, books, codes, [5, 0, 5]), rtol=1e-6
    )
    assert dc.bytes_per_doc == 2
    with pytest.raises(IndexError, match=r"\[0, 6\)"):
        dc.score(q, np.array([6]))
    with pytest.raises(ArtifactError, match="no float vectors"):
        dc.score_float(q, np.array([0]))


def test_dense_codes_refuse_corrupt_or_foreign(tmp_path):
    _write_dense(tmp_path / "a", meta_extra={"m": 3})  # meta disagrees with the arrays
    with pytest.raises(ArtifactError, match="codes .* != uint8"):
        DenseCodes.load(tmp_path / "a")
    _write_dense(tmp_path / "b", meta_extra={"format": "lsr-index"})
    with pytest.raises(ArtifactError, match="'lsr-index', not 'lsr-dense'"):
        DenseCodes.load(tmp_path / "b")
    _write_dense(tmp_path / "c")
    (tmp_path / "c" / "meta.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        DenseCodes.load(tmp_path / "c")
    _write_dense(tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    del meta["dim"], meta["meta_crc32"], meta["checksums"]  # as a pre-checksum artifact
    (tmp_path / "d" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="dim"):
        DenseCodes.load(tmp_path / "d")
    _write_dense(tmp_path / "e")
    np.save(tmp_path / "e" / "codes.npy", np.zeros((6, 2), np.int32))  # wrong dtype on disk
    with pytest.raises(ArtifactError, match="rebuild"):
        DenseCodes.load(tmp_path / "e")
