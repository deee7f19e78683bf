"""The pre-tokenized path (``lsr encode --ray`` tokenizes on CPU workers, lsr.ray_encode): the tokens of
a :class:`TextTokenizer` that travelled by pickle, through ``Tokens.to_bytes``/``from_bytes``, encode to
what the encoder's own ``encode`` gives for the texts, bit for bit (the same sequences make the same
batches), for SPLADE and uniCOIL, truncated and windowed."""

from __future__ import annotations

import dataclasses
import pickle
import random
from types import SimpleNamespace

import numpy as np
import pytest

from lsr.config import load_config

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import WORDS, saved_unicoil  # noqa: E402

from lsr.encoders import make_encoder  # noqa: E402
from lsr.encoders.transformer import TextTokenizer, Tokens, check_windows, untruncated  # noqa: E402
from lsr.errors import LsrError  # noqa: E402

EMPTY_ISH = ["", " ", "\n\t ", "\u3000 "]


def seeded_texts(seed: int = 7, n: int = 40) -> list[str]:
    """Short texts, long ones (several windows at max_length 16), empty or whitespace-only ones, and one
    with a lone surrogate (cleaned by the tokenizer)."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        if i % 5 == 0:
            texts.append(rng.choice(EMPTY_ISH))
        elif i % 5 == 1:
            texts.append(" ".join(rng.choices(WORDS, k=rng.randint(40, 120))))
        else:
            texts.append(" ".join(rng.choices(WORDS, k=rng.randint(1, 12))))
    return [*texts, "cat \ud800 dog"]


@pytest.fixture(scope="module")
def unicoil_folder(tiny_backbone, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unicoil") / "model"
    saved_unicoil(tiny_backbone, folder)
    return folder


def encoder(name: str, folder, long_docs: str):
    overrides = [f"encoder.name={name}", f"encoder.model={folder}", "encoder.transformer.device=cpu"]
    overrides += ["encoder.transformer.max_length=16", "encoder.transformer.batch_tokens=64"]
    overrides += [f"encoder.transformer.long_docs={long_docs}", "encoder.transformer.window_overlap=4"]
    return make_encoder(load_config(None, overrides).encoder)


def worker_tokens(built, texts: list[str]) -> Tokens:
    """What a Ray CPU worker hands an encoder actor: the pickled tokenizer's tokens, as bytes."""
    tokenizer = pickle.loads(pickle.dumps(built.text_tokenizer))
    return Tokens.from_bytes(tokenizer(texts).to_bytes())


@pytest.mark.parametrize("long_docs", ["truncate", "windows"])
@pytest.mark.parametrize("name", ["splade", "unicoil"])
def test_tokens_from_a_worker_encode_as_the_texts(name, long_docs, tiny_mlm, unicoil_folder):
    built = encoder(name, tiny_mlm if name == "splade" else unicoil_folder, long_docs)
    texts = seeded_texts()
    tokens = worker_tokens(built, texts)
    live = [i for i, t in enumerate(texts) if t.strip()]
    assert tokens.n_texts == len(texts) and tokens.live == live
    windows = len(tokens.seqs) - len(live)
    assert windows > 20 if long_docs == "windows" else windows == 0
    want, got = built.encode(texts), built.encode_tokens(tokens)
    assert len(got) == len(texts) and want.nnz > 0
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.term_ids, want.term_ids)
    np.testing.assert_array_equal(got.weights, want.weights)
    assert all(len(got.row(i)[0]) == 0 for i in range(len(texts)) if i not in live)


def test_no_texts_and_only_empty_texts(tiny_mlm):
    built = encoder("splade", tiny_mlm, "windows")
    assert len(built.encode_tokens(worker_tokens(built, []))) == 0
    empty = built.encode_tokens(worker_tokens(built, EMPTY_ISH))
    assert len(empty) == len(EMPTY_ISH) and empty.nnz == 0


@pytest.mark.parametrize("name", ["splade", "unicoil"])
def test_windows_hold_every_token_of_a_long_text(name, tiny_mlm, unicoil_folder):
    """Read in windows, a long text loses nothing: the windows' tokens, each window's overlap with the
    one before left out, are the text's tokens untruncated, in order (tokenizers 0.23.1-0.23.2 kept
    about one window: huggingface/tokenizers#2091)."""
    built = encoder(name, tiny_mlm if name == "splade" else unicoil_folder, "windows")
    text = " ".join(random.Random(3).choices(WORDS, k=200))
    whole = untruncated(built.model.backend).encode(text, add_special_tokens=False).ids
    seqs, _ = built.text_tokenizer.tokenize([text], 16, windows=True)
    assert len(seqs) > 10
    content = [s[1:-1] for s in seqs]  # [CLS] ... [SEP]
    joined = content[0] + [t for c in content[1:] for t in c[4:]]  # overlap 4
    assert joined == whole


class DroppingTokenizer:
    """A tokenizer whose truncation keeps no overflowing windows, as tokenizers 0.23.1-0.23.2 did."""

    def __init__(self, real):
        self.real = real

    @classmethod
    def from_str(cls, text):
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))

    def to_str(self):
        return self.real.to_str()

    def no_truncation(self):
        self.real.no_truncation()

    def enable_truncation(self, max_length, stride=0):
        self.real.enable_truncation(max_length, stride=stride)

    def encode(self, text):
        enc = self.real.encode(text)
        return SimpleNamespace(ids=enc.ids, offsets=enc.offsets, overflowing=[])


def test_a_tokenizer_that_drops_windows_is_refused_before_any_document(tiny_mlm):
    built = encoder("splade", tiny_mlm, "windows")
    dropping = DroppingTokenizer(untruncated(built.model.backend))
    cfg = built.model.cfg
    with pytest.raises(LsrError, match=r"tokenizers .* drops the windows.*long_docs=truncate"):
        TextTokenizer(dropping, cfg, built.model.max_positions)
    truncating = dataclasses.replace(cfg, long_docs="truncate")
    TextTokenizer(dropping, truncating, built.model.max_positions)  # windows unused: no check
    check_windows(untruncated(built.model.backend), 16, 4)  # the installed tokenizers: accepted
