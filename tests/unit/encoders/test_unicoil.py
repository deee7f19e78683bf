"""uniCOIL on a tiny random BERT: one ReLU(head) weight per input token, max over repeats, no expansion."""

from __future__ import annotations

import dataclasses

import pytest

from lsr.config import PruneConfig, TransformerConfig, load_config
from lsr.errors import ConfigError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import VOCAB  # noqa: E402

from lsr.encoders.unicoil import HEAD_FILE, UniCoilEncoder, UniCoilModel  # noqa: E402

TEXTS = ["the cat sat on the mat", "vitamin d lowers cancer risk", "", "dogs dogs dogs"]
SPECIAL_IDS = {VOCAB.index(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}


def cfg(**kw):
    return dataclasses.replace(TransformerConfig(device="cpu", max_length=32), **kw)


@pytest.fixture(scope="module")
def unicoil_folder(tiny_backbone, tmp_path_factory):
    """A backbone with a fresh head, saved in lsr's own format."""
    torch.manual_seed(3)
    model = UniCoilModel(tiny_backbone, cfg(), new_head=True)
    with torch.no_grad():
        model.head.bias.fill_(0.05)  # most tokens get a positive weight
    out = tmp_path_factory.mktemp("unicoil") / "model"
    model.save_pretrained(out)
    return out


def oracle(folder, texts):
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    bert = transformers.AutoModel.from_pretrained(str(folder)).eval()
    from safetensors.torch import load_file

    head = load_file(str(folder / HEAD_FILE))
    rows = []
    for text in texts:
        if not text.strip():
            rows.append({})
            continue
        ids = tok(text, truncation=True, max_length=32)["input_ids"]
        with torch.no_grad():
            hidden = bert(input_ids=torch.tensor([ids])).last_hidden_state[0]
            weights = torch.relu(hidden @ head["tok_proj.weight"].T + head["tok_proj.bias"]).flatten()
        row: dict[int, float] = {}
        for token, w in zip(ids, weights.tolist(), strict=True):
            if token not in SPECIAL_IDS and w > 0:
                row[token] = max(row.get(token, 0.0), w)
        rows.append(row)
    return rows


def as_dicts(batch):
    return [dict(zip(*(a.tolist() for a in batch.row(i)), strict=True)) for i in range(len(batch))]


def test_weights_match_the_oracle_and_never_expand(unicoil_folder):
    model = UniCoilModel(unicoil_folder, cfg(batch_tokens=32))
    got = as_dicts(model.encode(TEXTS, PruneConfig()))
    want = oracle(unicoil_folder, TEXTS)
    tok = transformers.AutoTokenizer.from_pretrained(str(unicoil_folder))
    for text, g, w in zip(TEXTS, got, want, strict=True):
        assert set(g) <= set(tok(text)["input_ids"]) - SPECIAL_IDS  # only the text's own tokens
        assert g.keys() == w.keys()
        for t in g:
            assert g[t] == pytest.approx(w[t], abs=1e-5)
    assert got[2] == {} and len(got[3]) == 1  # "dogs" three times: one term, its largest weight
    assert got[0] and got[1]


def test_pyserini_style_checkpoint_loads(unicoil_folder, tmp_path):
    """castorini's uniCOIL: one state dict with ``bert.*`` and ``tok_proj.*`` keys."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "castorini-like"
    folder.mkdir()
    state = {f"bert.{k}": v for k, v in load_file(str(unicoil_folder / "model.safetensors")).items()}
    state.update(load_file(str(unicoil_folder / HEAD_FILE)))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((unicoil_folder / name).read_bytes())
    a = as_dicts(UniCoilModel(unicoil_folder, cfg()).encode(TEXTS, PruneConfig()))
    b = as_dicts(UniCoilModel(folder, cfg()).encode(TEXTS, PruneConfig()))
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and all(x[t] == pytest.approx(y[t], abs=1e-6) for t in x)


def test_backbone_without_head_is_refused_unless_new_head(tiny_backbone):
    with pytest.raises(ConfigError, match="no uniCOIL head"):
        UniCoilModel(tiny_backbone, cfg())
    assert UniCoilModel(tiny_backbone, cfg(), new_head=True).head.weight.shape == (1, 32)


def test_encoder_describe(unicoil_folder):
    cfg = load_config(None, ["encoder.name=unicoil", f"encoder.model={unicoil_folder}"])
    enc = UniCoilEncoder(cfg.encoder)
    meta = enc.describe()
    assert meta["name"] == "unicoil" and meta["vocab_size"] == len(VOCAB) and "splade" not in meta
