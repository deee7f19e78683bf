"""The training config: frozen dataclasses read from YAML, checked before any model loads.

``load_train_config(path, overrides)`` follows :func:`lsr.config.load_config`: defaults <- YAML file
<- ``--set section.key=value``; unknown keys and impossible values raise :class:`ConfigError`
naming the key. One file describes both steps:

* ``prepare`` (CPU, here): qrels pairs, dev hold-out, pseudo-queries, hard negatives mined with our
  own index, raw teacher scores -> the prepared dataset directory ``data.prepared``;
* ``model``, ``loss``, ``distill``, ``optim``, ``train``: the training run on that dataset.

stdlib + PyYAML only (importing this module loads neither torch nor numpy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lsr.config import MAX_QUERY_IDF, _one_of, _positive, load_dataclass_config
from lsr.errors import ConfigError

TEACHERS = ("dense", "bm25", "splade", "cross")


@dataclass(frozen=True)
class TeacherConfig:
    """One teacher retriever scored on every (query, candidate) pair at prepare time."""

    name: str = "bm25"  # dense (bi-encoder cosine) | bm25 | splade (dot product) | cross (cross-encoder)
    model: str = ""  # dense: "" = all-MiniLM-L6-v2; splade/cross: a model folder; bm25: unused

    def __post_init__(self) -> None:
        _one_of("prepare.teachers[]", "name", self.name, TEACHERS)
        if self.name in ("splade", "cross") and not self.model:
            raise ConfigError(f"prepare.teachers[].model is required for the {self.name} teacher")


@dataclass(frozen=True)
class PrepareConfig:
    """Building the prepared dataset (``lsr train-prepare``), on the CPU."""

    dataset: str = ""  # BEIR folder with corpus, queries and qrels/<train_split>.tsv
    train_split: str = "train"  # the only qrels read; never "test"
    use_labels: bool = True  # false: pseudo-queries only (no qrels pairs for training)
    dev_fraction: float = 0.2  # share of the train queries held out as the dev split
    dev_max_queries: int = 0  # cap the dev split; 0: no cap
    seed: int = 13
    pseudo_titles: int = 0  # pseudo-queries "title -> its document" (up to this many documents)
    pseudo_spans: int = 0  # pseudo-queries "a sentence -> its document" (up to this many documents)
    pseudo_min_words: int = 6  # shortest sentence taken as a pseudo-query
    mining_encoder: str = "bm25"  # --encoder spec of the index that mines hard negatives
    mining_depth: int = 50  # hits searched per query
    negatives: int = 16  # candidates kept per query after its positive (top of the mined list)
    teachers: tuple[TeacherConfig, ...] = (TeacherConfig("bm25"),)
    teacher_device: str = "auto"  # auto | cpu | cuda: where dense/splade/cross teachers run
    max_length: int = 256  # document tokens for the teachers

    def __post_init__(self) -> None:
        if self.train_split.strip().lower() == "test":
            raise ConfigError("prepare.train_split = 'test': training never reads test qrels")
        if not 0 <= self.dev_fraction < 1:
            raise ConfigError(f"prepare.dev_fraction = {self.dev_fraction!r} must lie in [0, 1)")
        for name in ("dev_max_queries", "pseudo_titles", "pseudo_spans"):
            _positive("prepare", name, getattr(self, name), allow_zero=True)
        for name in ("pseudo_min_words", "mining_depth", "negatives", "max_length"):
            _positive("prepare", name, getattr(self, name))
        if self.negatives > self.mining_depth:
            raise ConfigError(
                f"prepare.negatives = {self.negatives} must be <= prepare.mining_depth = {self.mining_depth}"
            )
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ConfigError(f"prepare.teachers names must be distinct, got {names}")


@dataclass(frozen=True)
class DataConfig:
    prepared: str = ""  # the prepared dataset directory (written by train-prepare, read by train)
    max_length: int = 256  # document tokens in training and dev encoding
    query_max_length: int = 64
    eval_max_length: int = 512  # document tokens when the dev corpus is encoded (as lsr index does)
    # train only on examples from these sources (qrels | title | span); empty: all. [title, span] trains
    # with no labels at all from a dataset prepared with labels (the dev split still selects checkpoints)
    sources: tuple[str, ...] = ()
    # selection suites: BEIR folders (zero-shot collections) scored on their ``suite_split`` qrels at every
    # evaluation; nothing trains on them. With suites, the best checkpoint is the one with the highest
    # mean of dev nDCG@10 and the suites' mean nDCG@10 (``select`` in the logs), not dev alone
    suites: tuple[str, ...] = ()
    suite_split: str = "test"

    def __post_init__(self) -> None:
        bad = sorted(set(self.sources) - {"qrels", "title", "span"})
        if bad:
            raise ConfigError(f"data.sources = {list(self.sources)!r} may only name qrels, title and span")
        for name, least in (("eval_max_length", 8), ("max_length", 8), ("query_max_length", 4)):
            value = getattr(self, name)
            if value < least:
                raise ConfigError(f"data.{name} = {value!r} must be >= {least}")


@dataclass(frozen=True)
class ModelConfig:
    """What is trained and how it starts."""

    # splade (siamese) | inference-free (SPLADE documents, query token table) | unicoil (siamese, one weight
    # per input token, no expansion)
    kind: str = "splade"
    # a *ForMaskedLM folder (e.g. models/splade-tiny), a BertModel folder (a fresh MLM head tied to its
    # input embeddings is added), or "minilm" (all-MiniLM-L6-v2 from lsr.dense.model)
    init: str = ""
    # inference-free query table: idf (training-corpus IDF) | binary (1 per token: the plain-FLOPS ablation)
    query_weights: str = "idf"
    learn_query_weights: bool = False  # train the table (its own learning rate: optim.query_table_lr)
    # bias of a fresh MLM head (a BertModel start such as MiniLM): its tied logits are positive for most
    # of the vocabulary at first; a negative bias starts training from sparser document vectors
    fresh_head_bias: float = 0.0
    # L0-style threshold: document weights below it are zeroed (straight-through gradient)
    threshold: float = 0.0
    learn_threshold: bool = False
    # query weights times idf(t)^p of the collection scored (training: token IDF of the training corpus;
    # evaluation: posting-list IDF of the suite's encoded documents, as encoder.query_idf does in an index):
    # the model learns weights that leave collection statistics to the collection it is used on. Saved
    # into the model folder's lsr_query.json, so an index built with the model applies the same power.
    query_idf: float = 0.0
    # unicoil, splade: wordpiece (one weight per tokenizer piece) | words (each piece's weight to the BM25
    # analyzer's terms of its word, and a SPLADE's whole-word tokens to their own terms, lsr.encoders.words;
    # the vocabulary is the analyzed training corpus's terms, each evaluation suite's its own); saved as the
    # model folder's lsr_terms.json
    terms: str = "wordpiece"
    # terms: words: documents' weights x BM25's tf saturation, tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl))
    # (lsr.encoders.words.Saturation; avgdl: the training corpus's mean analyzed length, kept in
    # lsr_terms.json); tf_k1 0: off (a term weighs its largest token weight)
    tf_k1: float = 0.0
    tf_b: float = 0.0

    def __post_init__(self) -> None:
        _one_of("model", "kind", self.kind, ("splade", "inference-free", "unicoil"))
        _one_of("model", "terms", self.terms, ("wordpiece", "words"))
        if self.terms == "words" and self.kind == "inference-free":
            raise ConfigError(
                "model.terms = words applies to model.kind = unicoil or splade, not inference-free"
            )
        _positive("model", "tf_k1", self.tf_k1, allow_zero=True)
        if not 0 <= self.tf_b <= 1:
            raise ConfigError(f"model.tf_b = {self.tf_b!r} must be in [0, 1]")
        if self.tf_k1 > 0 and self.terms != "words":
            raise ConfigError(f"model.tf_k1 = {self.tf_k1!r} applies to model.terms = words only")
        if self.tf_b > 0 and self.tf_k1 == 0:
            raise ConfigError(f"model.tf_b = {self.tf_b!r} needs model.tf_k1 > 0 (tf saturation on)")
        _one_of("model", "query_weights", self.query_weights, ("idf", "binary"))
        if self.kind != "inference-free" and self.learn_query_weights:
            raise ConfigError("model.learn_query_weights applies to model.kind = inference-free only")
        _positive("model", "threshold", self.threshold, allow_zero=True)
        if not 0 <= self.query_idf <= MAX_QUERY_IDF:
            raise ConfigError(
                f"model.query_idf = {self.query_idf!r} must be in [0, {MAX_QUERY_IDF:g}] (0: off)"
            )


@dataclass(frozen=True)
class LossConfig:
    """Weights of the ranking losses (0 turns one off) and the FLOPS regularizer."""

    nll: float = 0.0  # in-batch negatives (+ the batch's hard negatives) contrastive NLL
    kl: float = 1.0  # KL(teacher || student) over each query's candidate list
    margin_mse: float = 0.0  # MarginMSE: (student margin - teacher margin)^2, positive vs each negative
    temperature: float = 1.0  # student and teacher scores are divided by this in KL / NLL
    flops_doc: float = 1e-3  # lambda of FLOPS on documents
    flops_query: float = 1e-3  # lambda of FLOPS on queries (splade and unicoil: encoded by the model)
    flops_warmup: int = 500  # lambda * min(1, step / T)^2
    # flops: the SPLADE regularizer; df: DF-FLOPS (arXiv 2505.15070), each term's FLOPS cost scaled by a
    # penalty of its document frequency (a running estimate over the training batches' documents)
    doc_regularizer: str = "flops"
    df_alpha: float = 0.1  # DF ratio at which the DF-FLOPS penalty is 0.5
    df_beta: float = 2.0  # steepness of the DF-FLOPS penalty
    df_momentum: float = 0.99  # running DF estimate: df <- m * df + (1 - m) * batch DF
    # the l0 mask loss (arXiv 2504.14839): documents with at most this many non-zeros are left out of the
    # document regularizer (FLOPS or DF-FLOPS); 0: every document counts
    l0_mask_nnz: int = 0

    def __post_init__(self) -> None:
        for name in ("nll", "kl", "margin_mse", "flops_doc", "flops_query", "flops_warmup"):
            _positive("loss", name, getattr(self, name), allow_zero=True)
        _positive("loss", "temperature", self.temperature)
        _one_of("loss", "doc_regularizer", self.doc_regularizer, ("flops", "df"))
        if not 0 < self.df_alpha < 1:
            raise ConfigError(f"loss.df_alpha = {self.df_alpha!r} must lie in (0, 1)")
        _positive("loss", "df_beta", self.df_beta)
        if not 0 <= self.df_momentum < 1:
            raise ConfigError(f"loss.df_momentum = {self.df_momentum!r} must lie in [0, 1)")
        mask = self.l0_mask_nnz
        if isinstance(mask, bool) or not isinstance(mask, int) or mask < 0:
            raise ConfigError(f"loss.l0_mask_nnz = {self.l0_mask_nnz!r} must be an integer >= 0 (0: no mask)")
        if self.nll == self.kl == self.margin_mse == 0:
            raise ConfigError("loss.nll, loss.kl and loss.margin_mse are all 0: nothing to train on")


@dataclass(frozen=True)
class DistillConfig:
    """The heterogeneous ensemble teacher: per-query normalization, weighted mean, scale."""

    weights: dict = field(default_factory=lambda: {"bm25": 1.0})  # teacher name -> weight
    normalize: str = "minmax"  # minmax | zscore | none (per query, over its candidate list)
    scale: float = 30.0  # the aggregated score is multiplied by this (the teacher's logit scale)

    def __post_init__(self) -> None:
        if not isinstance(self.weights, dict) or not self.weights:
            raise ConfigError(f"distill.weights = {self.weights!r} must map teacher names to weights")
        for k, v in self.weights.items():
            if k not in TEACHERS:
                raise ConfigError(f"distill.weights key = {k!r} is not one of {list(TEACHERS)}")
            if not isinstance(v, (int, float)):  # the weights are a free mapping: no type check on load
                raise ConfigError(f"distill.weights.{k} = {v!r} must be a finite number")
            _positive("distill.weights", k, v, allow_zero=True)
        if sum(self.weights.values()) <= 0:
            raise ConfigError("distill.weights sum to 0")
        _one_of("distill", "normalize", self.normalize, ("minmax", "zscore", "none"))
        _positive("distill", "scale", self.scale)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-5
    query_table_lr: float = 1e-3  # the inference-free query table (learn_query_weights)
    threshold_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up, then linear decay to 0 at train.steps
    grad_clip: float = 1.0  # 0: off
    accumulate: int = 1  # micro-batches per optimizer step

    def __post_init__(self) -> None:
        for name in ("lr", "query_table_lr", "threshold_lr"):
            _positive("optim", name, getattr(self, name))
        for name in ("weight_decay", "warmup_steps", "grad_clip"):
            _positive("optim", name, getattr(self, name), allow_zero=True)
        _positive("optim", "accumulate", self.accumulate)


@dataclass(frozen=True)
class RunConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # queries per micro-batch
    negatives: int = 7  # hard negatives per query per step (sampled from the prepared candidates)
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    log_every: int = 20
    eval_every: int = 200  # dev nDCG@10 + checkpoint every N steps (and at the end)
    eval_batch_docs: int = 128  # documents per dev-encoding batch
    max_dev_queries: int = 0  # 0: the whole dev split
    threads: int = 0  # CPU torch threads; 0: torch's default

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "eval_every", "eval_batch_docs"):
            _positive("train", name, getattr(self, name))
        for name in ("negatives", "max_dev_queries", "threads"):
            _positive("train", name, getattr(self, name), allow_zero=True)
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"train.device = {self.device!r} is not auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class TrainConfig:
    name: str = "run"
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.model.kind != "inference-free" and self.model.query_weights != "idf":
            raise ConfigError("model.query_weights applies to model.kind = inference-free only")
        if self.loss.kl or self.loss.margin_mse:
            have = {t.name for t in self.prepare.teachers}
            used = {k for k, v in self.distill.weights.items() if v > 0}
            if not used <= have:
                raise ConfigError(
                    f"distill.weights names teachers {sorted(used - have)} that "
                    f"prepare.teachers does not score ({sorted(have)})"
                )
            if self.train.negatives < 1:
                raise ConfigError("loss.kl / loss.margin_mse need train.negatives >= 1")
        if self.train.negatives > self.prepare.negatives:
            raise ConfigError(
                f"train.negatives = {self.train.negatives} must be <= prepare.negatives = "
                f"{self.prepare.negatives} (the candidates kept per query)"
            )


def load_train_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Defaults <- YAML file <- ``section.key=value`` overrides, validated (no torch, no model load).

    Raises:
        ConfigError: unknown keys, wrong types, impossible values.
    """
    return load_dataclass_config(TrainConfig, path, overrides)
