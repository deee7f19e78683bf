"""``lsr adapt`` input checks, all run before any model is trained (no torch).

* **model**: ``--encoder`` names a kind ``lsr adapt`` trains (:data:`ADAPT_KINDS`) and a folder of
  that kind: for splade and inference-free a Hugging Face folder whose ``config.json`` names a
  ``*ForMaskedLM`` architecture (a dense ``BertModel`` or sentence-transformers folder has no MLM head
  to read terms from), for unicoil one with its token-weight head; and not a folder that records
  another kind (``lsr_train.json``; an ``idf.json`` query table marks an
  inference-free model, a ``unicoil_head.safetensors`` a uniCOIL one). A SPLADE folder may start an
  inference-free model (as ``inference-free:models/splade-tiny`` does at index time), not the reverse.
* **corpus**: read with the project's corpus readers (a BEIR folder, ``corpus.jsonl[.gz]``, an
  ``ir_datasets`` id); documents without text are left out; no document left is an empty corpus,
  fewer than the minimum (``adapt.min_docs``, at least ``prepare.negatives + 2``) too small to adapt
  on; a larger corpus than ``adapt.max_docs`` is sampled (seeded).
* **language**: the share of words (Unicode ``\\w+`` runs, over the first ``adapt.language_docs``
  documents) that the model's tokenizer keeps whole, as one known token (not ``[UNK]``, not split into
  word pieces). Measured with the default models' bert-base-uncased vocabulary: English corpora
  0.84 (SciFact) to 0.94 (ood/adi), French 0.61, German 0.47, Russian 0.07, Chinese 0 (a run of CJK
  characters is one word and splits into one piece per character). Below ``adapt.min_known_words``
  (0.5) the corpus is refused: the model's vocabulary does not cover its language.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsr.data.corpus import CORPUS_NAMES, Doc, find_file, open_corpus
from lsr.encoders import REGISTRY, default_model
from lsr.errors import ConfigError, LsrError

ADAPT_KINDS = ("splade", "inference-free", "unicoil")  # kinds with a training path (model.kind)
MLM_KINDS = ("splade", "inference-free")  # kinds whose model has an MLM head (continued MLM applies)
_WORD = re.compile(r"\w+")
_KIND_MARKERS = (("idf.json", "inference-free"), ("unicoil_head.safetensors", "unicoil"))


def resolve_encoder(spec: str) -> tuple[str, Path]:
    """``(kind, model folder)`` of an ``--encoder`` value: ``KIND``, ``KIND:FOLDER`` or a folder (splade).

    Raises:
        ConfigError: an unknown or untrainable kind, a missing folder, a folder of another kind.
    """
    kind, sep, folder = spec.partition(":")
    if not sep and kind not in REGISTRY and Path(spec).is_dir():
        kind, folder = "splade", spec
    if kind not in REGISTRY:
        raise ConfigError(
            f"--encoder {spec!r}: unknown encoder {kind!r}; lsr adapt takes {list(ADAPT_KINDS)}"
        )
    if kind not in ADAPT_KINDS:
        raise ConfigError(
            f"--encoder {spec!r}: lsr adapt trains {list(ADAPT_KINDS)} models"
            + (" (bm25 has no model to adapt)" if kind == "bm25" else f", not {kind}")
        )
    path = Path(folder).expanduser() if folder else default_model(kind)
    if path is None:
        raise ConfigError(f"--encoder {kind}: no default model is installed; name a folder: {kind}:FOLDER")
    if kind == "inference-free" and (path / "lsr_terms.json").is_file():
        kind = "unicoil"  # a word-terms uniCOIL's documents (the default inference-free): adapt that uniCOIL
    check_model_folder(kind, path)
    return kind, path.resolve()


def check_model_folder(kind: str, path: Path) -> None:
    """Refuse a folder that is missing, records another kind, or lacks the kind's head (the MLM head
    of splade / inference-free, the token-weight head of unicoil)."""
    if not path.is_dir():
        raise ConfigError(f"--encoder {kind}:{path}: no such model folder")
    config = path / "config.json"
    if not config.is_file():
        raise ConfigError(f"--encoder {kind}:{path}: not a Hugging Face model folder (no config.json)")
    found = _recorded_kind(path)
    if found and found != kind and not (found == "splade" and kind == "inference-free"):
        raise ConfigError(
            f"--encoder {kind}:{path}: the folder holds a {found} model; use --encoder {found}:{path}"
        )
    if kind == "unicoil":
        _check_unicoil_head(path)
        return
    archs = _read_json(config).get("architectures") or []
    if archs and not any(str(a).endswith("ForMaskedLM") for a in archs):
        dense = " (a dense sentence-transformers model)" if (path / "modules.json").is_file() else ""
        raise ConfigError(
            f"--encoder {kind}:{path}: the folder holds a {', '.join(map(str, archs))}{dense}, which has no "
            f"masked-language-model head; {kind} needs a *ForMaskedLM (SPLADE) model folder"
        )


def _check_unicoil_head(path: Path) -> None:
    """A uniCOIL folder holds its token-weight head (``unicoil_head.safetensors``, or pyserini's
    ``tok_proj`` beside the encoder weights)."""
    from lsr.encoders.unicoil import find_head  # torch: only for this kind

    if find_head(path) is None:
        raise ConfigError(
            f"--encoder unicoil:{path}: no uniCOIL token-weight head in the folder "
            "(unicoil_head.safetensors or tok_proj weights); adapt a trained uniCOIL model"
        )


def _recorded_kind(path: Path) -> str | None:
    """The kind a model folder says it is: its training record, else a kind's own file, else None."""
    for record in ("lsr_train.json", "lsr_adapt.json"):
        if (path / record).is_file():
            kind = _read_json(path / record).get("kind")
            if kind:
                return str(kind)
    for name, kind in _KIND_MARKERS:
        if (path / name).is_file():
            return kind
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def start_model_overrides(path: Path) -> list[str]:
    """``--set`` overrides carrying the start model's own settings: its query table kind (training
    record) and, for a uniCOIL of word terms (``lsr_terms.json``), ``model.terms: words`` and its tf
    saturation."""
    from lsr.encoders.words import read_terms_file

    terms = read_terms_file(path)
    words = [] if terms is None else ["model.terms=words"]
    if terms is not None and "tf" in terms:  # the same saturation, its reference length the new corpus's
        words += [f"model.tf_k1={terms['tf']['k1']}", f"model.tf_b={terms['tf']['b']}"]
    record = path / "lsr_train.json"
    if not record.is_file():
        return words
    model = _read_json(record).get("config", {}).get("model", {})
    return words + ([f"model.query_weights={model['query_weights']}"] if model.get("query_weights") else [])


# --- the corpus ----------------------------------------------------------------------------------------


def read_corpus(spec: str | Path, min_docs: int, max_docs: int, seed: int) -> tuple[list[Doc], int]:
    """``(documents with text, documents read)``; a corpus over ``max_docs`` is sampled (seeded).

    Raises:
        LsrError: an empty corpus, or fewer than ``min_docs`` documents with text.
    """
    docs = list(open_corpus(spec))
    with_text = [d for d in docs if d.contents.strip()]
    if not with_text:
        what = f"{len(docs)} documents, all without text" if docs else "no document"
        raise LsrError(f"corpus {spec}: empty ({what}); lsr adapt needs at least {min_docs} documents")
    if len(with_text) < min_docs:
        raise LsrError(
            f"corpus {spec}: {len(with_text)} document{'s' if len(with_text) > 1 else ''} with text is too "
            f"small to adapt on; lsr adapt needs at least {min_docs} (adapt.min_docs)"
        )
    if len(with_text) > max_docs:
        keep = sorted(random.Random(seed).sample(range(len(with_text)), max_docs))
        with_text = [with_text[i] for i in keep]
    return with_text, len(docs)


def corpus_digest(spec: str | Path, docs: Sequence[Doc]) -> dict[str, str]:
    """sha256 of the corpus file (a BEIR folder's ``corpus.jsonl[.gz]`` or the file itself), or, for
    any other shape (a folder of text files, an ``ir_datasets`` id, stdin), of the documents as read
    (id, title, text)."""
    path = Path(spec)
    file = find_file(path, CORPUS_NAMES) if path.is_dir() else path if path.is_file() else None
    digest = hashlib.sha256()
    if file is not None:
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return {"file": str(file.resolve()), "sha256": digest.hexdigest()}
    for d in docs:
        digest.update(f"{d.id}\t{d.title}\t{d.text}\n".encode())
    return {"file": "", "sha256": digest.hexdigest(), "of": "documents as read"}


def known_word_share(tokenizer: Any, texts: Sequence[str], unk: int | None, max_words: int = 50000) -> float:
    """Share of the words of ``texts`` that ``tokenizer`` (a ``tokenizers.Tokenizer``) keeps whole:
    one token, not the unknown token ``unk``. 1.0 when the texts hold no word."""
    words = [w for t in texts for w in _WORD.findall(t)][:max_words]
    if not words:
        return 1.0
    encoded = tokenizer.encode_batch(words, add_special_tokens=False)
    whole = sum(len(e.ids) == 1 and e.ids[0] != unk for e in encoded)
    return whole / len(words)


def check_language(model_path: Path, docs: Sequence[Doc], n_docs: int, min_share: float) -> float:
    """The known-word share of the first ``n_docs`` documents; refused below ``min_share``.

    Raises:
        LsrError: the model's vocabulary does not cover the corpus's language.
    """
    from lsr.encoders.transformer import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    texts = [d.contents for d in docs[:n_docs]]
    share = known_word_share(tokenizer.backend_tokenizer, texts, tokenizer.unk_token_id)
    if share < min_share:
        raise LsrError(
            f"the corpus looks like another language than the model's: only {share:.0%} of its words are "
            f"one known token of {model_path.name}'s vocabulary (at least {min_share:.0%} needed, "
            "adapt.min_known_words; English corpora score 84-94%); adapt a model whose vocabulary covers it"
        )
    return share
