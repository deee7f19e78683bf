"""`lsr verify` over every artifact kind: exit code 0 on a sound one, 1 with the damaged file named."""

from __future__ import annotations

import numpy as np
import pytest
from test_bad_input import index, write_beir

from lsr.cli import main
from lsr.index.io import ArtifactError
from lsr.index.segments import open_index


def flip(path, offset=-1):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def built(tmp_path):
    corpus = write_beir(tmp_path / "beir")
    assert index(corpus, tmp_path / "idx") == 0
    return corpus, tmp_path / "idx"


def test_sound_index_verifies(built, capsys):
    _, out = built
    assert main(["verify", str(out)]) == 0
    assert "ok: 2 artifact(s)" in capsys.readouterr().out


def test_flipped_impact_is_found_with_its_file(built, capsys):
    _, out = built
    flip(out / "impacts.npy")
    assert main(["verify", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"DAMAGED {out / 'impacts.npy'}: fails its checksum" in printed and "1 problem(s)" in printed


def test_live_index_verifies_segments_and_tombstones(built, tmp_path, capsys):
    corpus, out = built
    more = write_beir(tmp_path / "more", docs=[{"_id": "n1", "title": "new", "text": "vitamin news"}])
    assert main(["add", "--index", str(out), "--corpus", str(more), "--quiet"]) == 0
    (tmp_path / "ids.txt").write_text("d1\n")
    delete = ["delete", "--index", str(out), "--ids", str(tmp_path / "ids.txt"), "--quiet"]
    assert main([*delete, "--set", "index.max_deleted=0.9"]) == 0  # tombstones, no rewrite
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "ok: 5 artifact(s)" in capsys.readouterr().out  # the manifest, two segments and their block-max
    (tombstones,) = out.glob("del-*.npy")
    flip(tombstones)
    assert main(["verify", str(out)]) == 1
    assert f"DAMAGED {tombstones}" in capsys.readouterr().out
    with pytest.raises(ArtifactError, match="fails its checksum"):
        open_index(out)


def test_vectors_directory_verifies(built, tmp_path, capsys):
    corpus, _ = built
    vec = tmp_path / "vec"
    assert main(["encode", "--encoder", "bm25", "--corpus", str(corpus), "--out", str(vec), "--quiet"]) == 0
    assert main(["verify", str(vec)]) == 0
    shard = next(vec.glob("shard-*.weights.npy"))
    flip(shard)
    assert main(["verify", str(vec)]) == 1
    assert f"DAMAGED {shard}: fails its checksum" in capsys.readouterr().out


def test_not_an_artifact(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 1
    assert "meta.json: is missing" in capsys.readouterr().out


def test_structural_damage_is_named_by_verify_and_search(built, capsys):
    _, out = built
    doc_ids = np.load(out / "doc_ids.npy")
    doc_ids[-1] = 10**6
    np.save(out / "doc_ids.npy", doc_ids)
    assert main(["verify", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "doc_ids.npy: fails its checksum" in printed and "holds a doc id outside [0, n_docs)" in printed
    assert main(["search", "--index", str(out), "vitamin"]) == 2
    assert "doc_ids.npy holds a doc id outside" in capsys.readouterr().err


def test_pruned_lists_from_the_cli(tmp_path, capsys):
    """`index.approx_lists` builds approx/ (verified with its block-max data) for integer impacts with
    the forward index and for float32 impacts (bm25's default) without one; approx search answers
    from it."""
    corpus = write_beir(tmp_path / "beir")
    lists = ["--set", "index.approx_lists=1"]
    for name, extra in (("uint8", ["--set", "index.impact_dtype=uint8"]), ("float32", [])):
        out = tmp_path / name
        assert index(corpus, out, *lists, *extra) == 0
        opened = open_index(out)
        assert opened.approx is not None and opened.impacts.dtype == np.dtype(name)
        assert main(["verify", str(out)]) == 0
        assert "ok: 4 artifact(s)" in capsys.readouterr().out  # the index, approx/, their block-max data
        assert main(["search", "--index", str(out), "--mode", "approx", "vitamin"]) == 0
        assert "d1" in capsys.readouterr().out
