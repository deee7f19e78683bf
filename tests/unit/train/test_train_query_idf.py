"""model.query_idf: query weights times idf(t)^p in training (the training corpus's token IDF) and in the
suite evaluations (the posting-list IDF of the suite's encoded documents), saved into the model folder so
that an index built with the model scores queries the way the trainer did."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lsr.encoders import query_idf  # noqa: E402
from lsr.errors import ConfigError  # noqa: E402
from lsr.train import trainer as train_loop  # noqa: E402
from lsr.train.config import ModelConfig, load_train_config  # noqa: E402


def test_posting_idf_is_the_index_table_of_the_same_documents():
    rng = np.random.default_rng(7)
    docs = rng.random((40, 30)) * (rng.random((40, 30)) < 0.3)  # some terms in no document at all
    docs_t = torch.from_numpy(docs).float()
    for power in (0.5, 1.0, 2.0):
        expected = query_idf.idf_table((docs > 0).sum(axis=0), 40, power)
        got = train_loop.posting_idf(docs_t, power).numpy()
        assert np.allclose(got, expected, rtol=1e-6)


def test_losses_score_queries_times_idf_and_regularize_the_weights_alone():
    cfg = load_train_config(overrides=["train.negatives=1", "loss.kl=0", "loss.nll=1", "model.kind=unicoil"])
    g = torch.Generator().manual_seed(3)
    q, d = torch.rand(2, 6, generator=g), torch.rand(4, 6, generator=g)
    idf = torch.rand(6, generator=g) * 3
    with_idf = train_loop._losses(cfg, q, d, {}, step=1000, q_idf=idf)
    premultiplied = train_loop._losses(cfg, q * idf, d, {}, step=1000)
    plain = train_loop._losses(cfg, q, d, {}, step=1000)
    assert torch.equal(with_idf["nll"], premultiplied["nll"])
    assert not torch.equal(with_idf["nll"], plain["nll"])
    assert torch.equal(with_idf["flops_query"], plain["flops_query"])


def test_query_idf_outside_its_range_is_refused():
    for bad in (-0.5, 4.5):
        with pytest.raises(ConfigError, match=r"model\.query_idf = "):
            ModelConfig(kind="unicoil", query_idf=bad)
