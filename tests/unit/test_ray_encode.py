"""The driver side of ``lsr encode --ray`` without a cluster: blocks are written into the vectors in
corpus order as they finish (in any order), the stage is waited on only while the next block is missing
(never when a resumed encode finds every block there), and a block the stage never wrote is named.
The Ray stage itself runs in tests/integration/test_ray_cluster.py."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lsr.data.corpus import Doc, open_corpus
from lsr.encoders.hf import rows_to_batch
from lsr.errors import DataFormatError, LsrError
from lsr.ray_encode import (
    block_name,
    finished_blocks,
    read_blocks,
    reader_corpus,
    write_block,
    write_blocks,
)

DOCS = [Doc(f"d{i}", f"title {i}", f"text {i}") for i in range(10)]
BLOCK = 3  # blocks 0-3, the last one of a single document


class Writer:
    """What write_blocks calls of a VectorWriter."""

    def __init__(self) -> None:
        self.added: list[tuple[str, list[int], str]] = []

    def add(self, doc_id, term_ids, weights, title, text, metadata) -> None:
        self.added.append((doc_id, term_ids.tolist(), text))


def block_rows(i: int):
    """Block ``i``'s rows: document n has the one term n, weight n + 1."""
    docs = range(i * BLOCK, min(len(DOCS), (i + 1) * BLOCK))
    return rows_to_batch([(np.array([n], np.int32), np.array([n + 1.0], np.float32)) for n in docs])


class Stage:
    """Writes the blocks in ``order``, one per wait() (as actors finish them, out of order)."""

    def __init__(self, work, order):
        self.work, self.order, self.waits = work, list(order), 0

    def wait(self) -> bool:
        self.waits += 1
        if not self.order:
            return False
        i = self.order.pop(0)
        write_block(self.work, i, block_rows(i))
        return True


def expected():
    return [(d.id, [n], d.text) for n, d in enumerate(DOCS)]


@pytest.mark.parametrize("seed", range(4))
def test_blocks_finishing_in_any_order_are_written_in_corpus_order(tmp_path, seed):
    write_block(tmp_path, 1, block_rows(1))  # a resumed encode: block 1 is there
    order = [0, 2, 3]
    random.Random(seed).shuffle(order)
    stage, writer = Stage(tmp_path, order), Writer()
    assert write_blocks(DOCS, BLOCK, tmp_path, writer, stage.wait) == 4  # type: ignore[arg-type]
    assert writer.added == expected()
    assert stage.waits == 3 and not stage.order  # never waited once every block was there


def test_a_resume_with_every_block_there_never_waits(tmp_path):
    for i in range(4):
        write_block(tmp_path, i, block_rows(i))
    (tmp_path / f".{block_name(2)}.tmp-0000").mkdir()  # a block a crashed actor was writing
    assert finished_blocks(tmp_path) == {0, 1, 2, 3}
    stage, writer = Stage(tmp_path, []), Writer()
    assert write_blocks(DOCS, BLOCK, tmp_path, writer, stage.wait) == 4  # type: ignore[arg-type]
    assert writer.added == expected() and stage.waits == 0


def test_a_block_the_stage_never_wrote_is_named(tmp_path):
    stage = Stage(tmp_path, [0, 1, 3])
    with pytest.raises(LsrError, match="block-00002 is missing.*block 2"):
        write_blocks(DOCS, BLOCK, tmp_path, Writer(), stage.wait)  # type: ignore[arg-type]


def test_a_block_of_another_size_is_refused(tmp_path):
    write_block(tmp_path, 0, block_rows(1))
    write_block(tmp_path, 1, block_rows(3))  # one row for three documents
    with pytest.raises(LsrError, match="holds 1 rows for 3 documents"):
        write_blocks(DOCS, BLOCK, tmp_path, Writer(), Stage(tmp_path, []).wait)  # type: ignore[arg-type]


def write_jsonl(path, n: int, bad_line: int | None = None):
    with open(path, "w") as f:
        for i in range(n):
            f.write(
                "{not json\n" if i == bad_line else json.dumps({"_id": f"d{i}", "text": f"text {i}"}) + "\n"
            )
    return path


def test_the_reader_emits_the_blocks_to_do_and_stops_at_a_bad_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "c.jsonl", 10)
    corpus = reader_corpus("c.jsonl", [])
    assert corpus == tmp_path / "c.jsonl"  # absolute: a Ray worker's working directory is another
    rows = list(read_blocks({}, corpus, BLOCK, done={1}))
    assert [int(r["block"][0]) for r in rows] == [0, 2, 3]
    assert json.loads(rows[1]["texts"][0]) == ["text 6", "text 7", "text 8"]
    bad = write_jsonl(tmp_path / "bad.jsonl", 10, bad_line=7)
    assert [int(r["block"][0]) for r in read_blocks({}, bad, BLOCK, done=set())] == [0, 1]
    # the driver's own read raises where lsr encode would
    with pytest.raises(DataFormatError, match="bad.jsonl:8"):
        write_blocks(open_corpus(bad), BLOCK, tmp_path, Writer(), Stage(tmp_path, [0, 1]).wait)  # type: ignore[arg-type]


def test_the_driver_loads_its_encoder_on_the_cpu_and_describes_the_configured_device():
    """A driver (a CPU-only head node, say) whose config names a GPU still starts: its copy of the
    encoder only checks the folder, tokenizes nothing and writes the meta, which names the config's
    device, as the actors run it."""
    from lsr.config import load_config
    from lsr.encoders import encoder_overrides
    from lsr.encoders.transformer import section, with_long_docs
    from lsr.ray_encode import driver_encoder

    config = load_config(None, [*encoder_overrides("splade"), "encoder.transformer.device=cuda:0"])
    encoder = driver_encoder(config.encoder)
    assert encoder.model.device.type == "cpu"
    configured = with_long_docs(config.encoder, encoder.model_path).transformer  # long_docs auto resolved
    assert encoder.describe()["transformer"] == section(configured)
    assert section(config.encoder.transformer)["device"] == "cuda:0"
