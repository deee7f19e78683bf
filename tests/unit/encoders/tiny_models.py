"""Tiny randomly initialized BERT checkpoints, built by the tests themselves (no download).

The vocabulary is a few dozen WordPiece tokens; the models have 2 layers of width 32,
so everything runs on the CPU in milliseconds while going through the same code paths
(tokenizer, padding, batching, the MLM head) as a real checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a and of in on with cat cats sat mat dog dogs bird fish vitamin d cancer risk coffee sleep "
    "quality adults screening lowers supplements protein cell cells gene study effect"
).split()
PIECES = (
    ["##s", "##ing", "##ed", "##er", "##ly"]
    + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    + [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    + [".", ",", "-"]
)
VOCAB = SPECIAL + list(dict.fromkeys(WORDS + PIECES))

DOCS = [
    ("d1", "Vitamin D", "vitamin d lowers cancer risk in adults"),
    ("d2", "Coffee", "coffee and sleep quality in adults"),
    ("d3", "", "cancer screening with vitamin supplements"),
    ("d4", "Cats", "the cat sat on the mat with the dog"),
    ("d5", "", "   "),  # whitespace only: an empty vector
    ("d6", "Cells", "protein gene cell study effect " * 6),  # long: truncated or windowed
    ("d7", "Birds", "a bird and a fish"),
]


def write_tokenizer(folder: Path, vocab: list[str] = VOCAB) -> None:
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    ids = {t: i for i, t in enumerate(vocab)}
    tk = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(str(folder))


def bert_config(vocab_size: int = len(VOCAB)):
    import transformers

    return transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )


def make_mlm(folder: Path, seed: int = 0, vocab: list[str] = VOCAB) -> Path:
    """A random BertForMaskedLM with a non-zero output bias, saved with its tokenizer."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.BertForMaskedLM(bert_config(len(vocab))).eval()
    with torch.no_grad():
        model.get_output_embeddings().bias.normal_(0.0, 0.5)
    model.save_pretrained(str(folder))
    write_tokenizer(folder, vocab)
    return folder


def make_backbone(folder: Path, seed: int = 1) -> Path:
    """A random BertModel (no MLM head), saved with its tokenizer."""
    import torch
    import transformers

    torch.manual_seed(seed)
    transformers.BertModel(bert_config()).save_pretrained(str(folder))
    write_tokenizer(folder)
    return folder


def write_corpus(path: Path, docs=DOCS) -> Path:
    path.write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs), encoding="utf-8"
    )
    return path


def query_config():
    """The transformer settings the query-runtime tests encode with (CPU, short sequences, 2 threads)."""
    import dataclasses

    from lsr.config import TransformerConfig

    return dataclasses.replace(TransformerConfig(device="cpu", max_length=32), threads=2)


def as_dicts(batch) -> list[dict]:
    """Each row of a sparse batch as {term id: weight}."""
    return [dict(zip(*(a.tolist() for a in batch.row(i)), strict=True)) for i in range(len(batch))]


def assert_close(a: list[dict], b: list[dict], atol: float) -> None:
    """The same terms in every row, weights within ``atol``."""
    import pytest

    for x, y in zip(a, b, strict=True):
        assert set(x) == set(y)
        for t in x:
            assert x[t] == pytest.approx(y[t], abs=atol)


def saved_unicoil(backbone, folder):
    """A uniCOIL on ``backbone`` with a fresh head (seeded, bias 0.05 so that weights are non-zero),
    saved to ``folder`` and loaded back as the query-runtime tests encode with it."""
    import torch

    from lsr.encoders.unicoil import UniCoilModel

    torch.manual_seed(3)
    model = UniCoilModel(backbone, query_config(), new_head=True)
    with torch.no_grad():
        model.head.bias.fill_(0.05)
    model.save_pretrained(folder)
    return UniCoilModel(folder, query_config())


SHIPPED_QUERIES = [
    "vitamin d deficiency and cancer",
    "0-dimensional biomaterials show inductive properties",
    "cat",
]


def shipped_words(model) -> None:
    """Give a loaded shipped uniCOIL the word terms of its folder's ``lsr_terms.json`` (as an index of
    it does), over a vocabulary of the analyzer's terms of :data:`SHIPPED_QUERIES`; a wordpiece model
    (no such file) keeps its wordpieces."""
    from lsr.encoders.words import WordTerms, make_word_analyzer, read_terms_file

    terms = read_terms_file(model.path)
    if terms is None:
        return
    analyzer = make_word_analyzer(terms["analyzer"])
    vocab = list(dict.fromkeys(t for q in SHIPPED_QUERIES for t in analyzer(q)))
    model.words = WordTerms(analyzer, {t: i for i, t in enumerate(vocab)})


def shipped(model_class, name: str):
    """The shipped model ``name`` (``lsr.encoders.default_model``) loaded by ``model_class`` on the CPU
    with one thread, as the query-runtime tests compare it; the test is skipped without one."""
    import dataclasses

    import pytest

    from lsr.config import TransformerConfig
    from lsr.encoders import default_model

    path = default_model(name)
    if path is None:
        pytest.skip(f"no shipped {name} model")
    return model_class(path, dataclasses.replace(TransformerConfig(device="cpu"), threads=1))


def check_token_weights(model, runtime, texts: list[str], atol: float) -> None:
    """``runtime.token_weights`` of ``texts`` as one padded batch equal ``model.token_weights`` (torch)
    of each sequence alone within ``atol``: one float32 array per sequence, its unpadded length, zero at
    its special tokens ([CLS], [SEP])."""
    import numpy as np
    import torch

    seqs, _ = model.text_tokenizer.tokenize(texts, 32, False)
    ids, mask = model._padded_numpy(seqs, np.arange(len(seqs)), 1)
    assert not mask.all()  # the batch has padding
    got = runtime.token_weights(ids, mask)
    assert len(got) == len(seqs)
    for seq, weights in zip(seqs, got, strict=True):
        one = torch.tensor([seq])
        with torch.inference_mode():
            want = model.token_weights(one, torch.ones_like(one, dtype=torch.bool))[0].numpy()
        assert weights.dtype == np.float32 and weights.shape == (len(seq),)
        np.testing.assert_allclose(weights, want, atol=atol)
        assert weights[0] == 0 and weights[-1] == 0 and (weights[1:-1] > 0).any()


def word_windows(tok, text: str, max_length: int, overlap: int | None = None):
    """A slow reference's view of ``text`` (``tok``: a Hugging Face tokenizer): its token ids, each
    token's whole word as a span of ``text`` (a word cut by a window is still analyzed whole), and the
    windows, each ``(start, [CLS] + up to max_length - 2 ids + [SEP])``, ``overlap`` tokens apart (None:
    the first window only, truncation)."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, words = enc["input_ids"], enc.word_ids()
    span: dict[int, tuple[int, int]] = {}
    for w, (s, e) in zip(words, enc["offset_mapping"], strict=True):
        a, b = span.get(w, (s, e))
        span[w] = (min(a, s), max(b, e))
    word_of = [text[span[w][0] : span[w][1]] for w in words]
    n = max_length - 2
    starts = [0]
    while overlap is not None and starts[-1] + n < len(ids):
        starts.append(starts[-1] + n - overlap)
    return ids, word_of, [(a, [tok.cls_token_id, *ids[a : a + n], tok.sep_token_id]) for a in starts]
