"""Open-time invariants (lsr.index.kernels.check) against slow, obviously correct references on seeded
random indexes and random damage; the errors name the damaged file."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from corpora import build_with_blockmax, random_corpus

from lsr.index import Index
from lsr.index.checksum import file_crc32
from lsr.index.io import ArtifactError, CorruptArtifactError
from lsr.index.kernels.check import _check_blockmax, _check_postings
from lsr.verify import verify

NO_JIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"
BMX = ("row_of", "dense_base", "dense_off", "tb_ptr", "tb_block", "tb_base", "tb_off", "dense_before")


def postings_ok(term_ptr, doc_ids, impacts, n_docs) -> bool:
    """The reference: every term's list lies inside the arrays, doc ids ascend inside [0, n_docs)."""
    if len(term_ptr) == 0 or term_ptr[0] != 0 or term_ptr[-1] != len(doc_ids):
        return False
    for t in range(len(term_ptr) - 1):
        s, e = int(term_ptr[t]), int(term_ptr[t + 1])
        if not 0 <= s <= e <= len(doc_ids):
            return False
        docs = [int(d) for d in doc_ids[s:e]]
        ascending = all(a < b for a, b in zip(docs, docs[1:], strict=False))
        if any(not 0 <= d < n_docs for d in docs) or not ascending:
            return False
        if any(not (0 < float(v) < np.inf) for v in impacts[s:e]):
            return False
    return True


def runs_of(t, term_ptr, a, n_blocks):
    """The (block, start, end) runs the block-max kernels score for term t, computed as they do."""
    start, end = int(term_ptr[t]), int(term_ptr[t + 1])
    r = int(a["row_of"][t])
    if r >= 0:
        pos = [
            start + int(a["dense_base"][r, b >> 8]) + int(a["dense_off"][r, b]) for b in range(n_blocks + 1)
        ]
        return [(b, pos[b], pos[b + 1]) for b in range(n_blocks)]
    e0, e1 = int(a["tb_ptr"][t]), int(a["tb_ptr"][t + 1])

    def at(p):
        return int(a["tb_base"][p >> 8]) + int(a["tb_off"][p]) + int(a["dense_before"][t])

    return [(int(a["tb_block"][p]), at(p), at(p + 1) if p + 1 < e1 else end) for p in range(e0, e1)]


def blockmax_ok(term_ptr, doc_ids, block_size, n_blocks, a) -> bool:
    """The reference: each term's runs cover its postings exactly once, in order, each inside its block."""
    n_terms, n_dense, n_sparse = len(a["row_of"]), len(a["dense_base"]), len(a["tb_block"])
    if a["tb_ptr"][0] != 0 or a["tb_ptr"][-1] != n_sparse or np.any(np.diff(a["tb_ptr"]) < 0):
        return False
    dense_terms = [t for t in range(n_terms) if a["row_of"][t] >= 0]
    if any(a["row_of"][t] < -1 for t in range(n_terms)) or [a["row_of"][t] for t in dense_terms] != list(
        range(n_dense)
    ):
        return False
    for t in range(n_terms):
        if a["row_of"][t] >= 0 and a["tb_ptr"][t + 1] != a["tb_ptr"][t]:
            return False
        start, end = int(term_ptr[t]), int(term_ptr[t + 1])
        covered = []
        for b, s, e in runs_of(t, term_ptr, a, n_blocks):
            if not start <= s <= e <= end or not 0 <= b < n_blocks:
                return False
            covered.extend(range(s, e))
            if any(int(doc_ids[j]) // block_size != b for j in range(s, e)):
                return False
        if covered != list(range(start, end)):
            return False
        blocks = [b for b, s, e in runs_of(t, term_ptr, a, n_blocks) if e > s]
        if a["row_of"][t] < 0 and (
            blocks != sorted(set(blocks)) or any(e <= s for _, s, e in runs_of(t, term_ptr, a, n_blocks))
        ):
            return False
    return True


def kernel_blockmax(term_ptr, doc_ids, block_size, n_blocks, a):
    return _check_blockmax(term_ptr, doc_ids, block_size, n_blocks, *(a[name] for name in BMX))[0]


@pytest.fixture(params=[(1, 0.3), (3, 0.01), (16, 0.125)], ids=["B1", "B3-sparse", "B16"])
def index(request, tmp_path):
    block_size, dense_fraction = request.param
    rng = np.random.default_rng(block_size)
    corpus = random_corpus(rng, 90, 25, 8, integer=True)
    return build_with_blockmax(tmp_path, corpus, 25, "uint8", block_size, dense_fraction=dense_fraction)


def test_sound_indexes_pass_both(index):
    arrays = (np.asarray(index.term_ptr), np.asarray(index.doc_ids), np.asarray(index.impacts))
    assert postings_ok(*arrays, index.n_docs)
    assert _check_postings(*arrays, index.n_docs) == (0, 0)
    bmx = {name: np.asarray(getattr(index.blockmax, name)) for name in BMX}
    bm = index.blockmax
    assert blockmax_ok(arrays[0], arrays[1], bm.block_size, bm.n_blocks, bmx)
    assert kernel_blockmax(arrays[0], arrays[1], bm.block_size, bm.n_blocks, bmx) == 0


def _damage(rng, arr):
    out = np.array(arr, copy=True)
    flat = out.reshape(-1)
    if flat.size == 0:
        return out
    i = int(rng.integers(flat.size))
    info = np.iinfo(flat.dtype) if flat.dtype.kind in "iu" else None
    delta = int(rng.choice([-2, -1, 1, 2, 1000]))
    if info is not None:
        flat[i] = (
            int(np.clip(int(flat[i]) + delta, info.min, info.max))
            if rng.random() < 0.8
            else int(rng.integers(info.min, info.max, endpoint=True))
        )
    else:
        flat[i] = rng.choice([0.0, -1.0, np.nan, np.inf, float(flat[i]) * 2])
    return out


def test_random_damage_kernel_agrees_with_reference(index):
    rng = np.random.default_rng(7)
    postings = [np.asarray(index.term_ptr), np.asarray(index.doc_ids), np.asarray(index.impacts)]
    bm = index.blockmax
    bmx = {name: np.asarray(getattr(bm, name)) for name in BMX}
    n_trials = 40 if NO_JIT else 300
    for trial in range(n_trials):
        if trial % 2 == 0:  # damage the postings
            which = int(rng.integers(3))
            damaged = list(postings)
            damaged[which] = _damage(rng, postings[which])
            want = postings_ok(*damaged, index.n_docs)
            assert (_check_postings(*damaged, index.n_docs)[0] == 0) == want, (trial, which)
        else:  # damage the block-max arrays of sound postings
            name = BMX[int(rng.integers(len(BMX)))]
            a = {**bmx, name: _damage(rng, bmx[name])}
            want = blockmax_ok(postings[0], postings[1], bm.block_size, bm.n_blocks, a)
            got = kernel_blockmax(postings[0], postings[1], bm.block_size, bm.n_blocks, a) == 0
            assert got == want, (trial, name)


def _rewrite(path, name, mutate):
    """Change one array on disk keeping its size, as a flipped bit would."""
    arr = np.load(path / name)
    mutate(arr)
    np.save(path / name, arr)


@pytest.mark.parametrize(
    "name, mutate, message",
    [
        ("doc_ids.npy", lambda a: a.__setitem__(-1, 10**6), "doc_ids.npy holds a doc id outside [0, n_docs)"),
        ("doc_ids.npy", lambda a: a.__setitem__(slice(0, 2), a[1::-1].copy()), "do not ascend within a term"),
        (
            "term_ptr.npy",
            lambda a: a.__setitem__(3, a[4] + 1),
            "term_ptr.npy term_ptr is not a non-decreasing",
        ),
        ("impacts.npy", lambda a: a.__setitem__(0, 0), "impacts.npy holds an impact that is not finite"),
        ("blockmax/row_of.npy", lambda a: a.__setitem__(0, 99), "row_of.npy does not number the dense terms"),
    ],
)
def test_structural_damage_is_refused_on_open_by_name(index, name, mutate, message):
    _rewrite(index.path, name, mutate)
    with pytest.raises(
        CorruptArtifactError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        Index.load(index.path)
    assert not verify(index.path).ok


def test_value_damage_is_found_by_verify_only(index):
    _rewrite(
        index.path,
        "blockmax/dense_max.npy" if len(index.blockmax.dense_max) else "blockmax/tb_max.npy",
        lambda a: a.__setitem__(0, a[0] // 2),
    )
    Index.load(index.path)  # structure intact: opens
    report = verify(index.path)
    assert not report.ok and "fails its checksum" in report.problems[0][1]
    assert report.problems[0][0].parent.name == "blockmax"


def test_truncation_is_refused_on_open(index):
    with open(index.path / "impacts.npy", "r+b") as f:
        f.truncate(f.seek(0, 2) - 1)
    with pytest.raises(CorruptArtifactError, match=r"impacts.npy has \d+ bytes, its checksum entry says"):
        Index.load(index.path)


def test_meta_flip_is_refused_on_open(index):
    meta = json.loads((index.path / "meta.json").read_text())
    meta["impacts"]["scale"] *= 2  # valid JSON, wrong value
    (index.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptArtifactError, match="meta.json fails its checksum"):
        Index.load(index.path)


def test_index_without_checksums_opens_with_a_note(index, caplog):
    for meta_path in (index.path / "meta.json", index.path / "blockmax" / "meta.json"):
        meta = json.loads(meta_path.read_text())
        del meta["meta_crc32"], meta["checksums"]
        meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        loaded = Index.load(index.path)
    assert loaded.search([0], [1.0], k=3).docs.tolist() == index.search([0], [1.0], k=3).docs.tolist()
    assert "carries no checksums" in caplog.text
    report = verify(index.path)
    assert report.ok and any("carries no checksums" in n for n in report.notes)


def test_checksums_cover_every_file_and_match(index):
    meta = json.loads((index.path / "meta.json").read_text())
    files = meta["checksums"]["files"]
    on_disk = sorted(p.name for p in index.path.iterdir() if p.is_file() and p.name != "meta.json")
    assert sorted(files) == on_disk
    for name, entry in files.items():
        assert entry == {"size": (index.path / name).stat().st_size, "crc32": file_crc32(index.path / name)}


def test_file_crc32_streams_in_chunks(tmp_path, monkeypatch):
    import zlib

    from lsr.index import checksum

    data = np.random.default_rng(0).bytes(3 * 1000 + 17)
    (tmp_path / "f").write_bytes(data)
    monkeypatch.setattr(checksum, "CHUNK_BYTES", 1000)
    assert checksum.file_crc32(tmp_path / "f") == f"{zlib.crc32(data):08x}"


def test_artifact_error_is_our_error_type():
    from lsr import errors

    assert issubclass(errors.CorruptArtifactError, ArtifactError)


def test_sealed_meta_that_lost_its_seal_is_corrupt(index):
    text = (index.path / "meta.json").read_text()
    (index.path / "meta.json").write_text(text.replace('"meta_crc32"', '"meta_crc3r"'))  # one byte
    with pytest.raises(CorruptArtifactError, match="has checksums but no meta_crc32"):
        Index.load(index.path)
    assert not verify(index.path).ok
