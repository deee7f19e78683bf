"""The ``lsr adapt`` config: a training config (:mod:`lsr.train.config`) plus an ``adapt`` section.

``configs/adapt.yaml`` is the shipped default (``lsr adapt`` reads it unless ``--config`` names
another file); ``--set section.key=value`` overrides any key. ``model.kind`` and ``model.init`` come
from ``--encoder``, ``prepare.dataset`` and ``data.prepared`` from ``--corpus`` and the work
directory, so the file leaves them out. Every key is checked, and the training sections are
cross-checked as a :class:`~lsr.train.config.TrainConfig`, before a model loads.

stdlib + PyYAML only (importing this module loads neither torch nor numpy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lsr.config import _positive, load_dataclass_config
from lsr.errors import ConfigError
from lsr.train.config import (
    DataConfig,
    DistillConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    PrepareConfig,
    RunConfig,
    TrainConfig,
)

METHODS = ("auto", "select", "train")
SELECT_KINDS = ("splade",)  # kinds whose folder's scoring settings adapt.method select chooses


@dataclass(frozen=True)
class AdaptSettings:
    """What ``lsr adapt`` adds to a training run: the method, input checks, the corpus sample, continued
    MLM."""

    # select: choose a SPLADE folder's tf saturation and query_idf on pseudo-queries, no training
    # (lsr.train.adapt_select); train: pseudo-queries, teachers and a short training run; auto: select
    # for SPLADE folders, train for the other kinds
    method: str = "auto"
    select_max_docs: int = 20000  # select: a larger corpus is sampled (seeded) down to this many documents
    select_queries: int = 5000  # select: pseudo-queries cut from the corpus (at most 5 per document)
    min_docs: int = 50  # fewer documents with text: refused (too small to adapt on)
    max_docs: int = 2000  # train: a larger corpus is sampled (seeded) down to this many documents
    language_docs: int = 1000  # documents read by the language check
    # the language check: share of words (Unicode \w+ runs) that the model's tokenizer keeps as one
    # known token (not [UNK], not split); English corpora score 0.84-0.94, Russian 0.07, Chinese 0
    min_known_words: float = 0.5
    mlm_steps: int = 0  # continued masked-language-model steps on the corpus text (0: no MLM phase)
    mlm_batch_size: int = 16  # texts per MLM step
    mlm_max_length: int = 128  # tokens per MLM text
    mlm_probability: float = 0.15  # tokens masked (80% [MASK], 10% random, 10% kept)
    mlm_lr: float = 2e-5
    mlm_freeze_head: bool = True  # keep the vocabulary projection (the SPLADE term space) fixed
    keep_work: bool = False  # keep the work directory (prepared data, checkpoints) after success
    # the best checkpoint scores below the start model on the dev split: publish the start model instead
    keep_start_if_worse: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"adapt.method = {self.method!r} must be one of {list(METHODS)}")
        for name in (
            "select_max_docs",
            "select_queries",
            "min_docs",
            "max_docs",
            "language_docs",
            "mlm_batch_size",
            "mlm_max_length",
        ):
            _positive("adapt", name, getattr(self, name))
        _positive("adapt", "mlm_steps", self.mlm_steps, allow_zero=True)
        _positive("adapt", "mlm_lr", self.mlm_lr)
        if not 0 <= self.min_known_words <= 1:
            raise ConfigError(f"adapt.min_known_words = {self.min_known_words!r} must lie in [0, 1]")
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"adapt.mlm_probability = {self.mlm_probability!r} must lie in (0, 1)")
        if self.max_docs < self.min_docs:
            raise ConfigError(f"adapt.max_docs = {self.max_docs} must be >= adapt.min_docs = {self.min_docs}")


@dataclass(frozen=True)
class AdaptConfig:
    """``adapt`` plus the sections of a training config (same keys, same checks)."""

    name: str = "adapt"
    adapt: AdaptSettings = field(default_factory=AdaptSettings)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.adapt.method == "select" and self.model.kind not in SELECT_KINDS:
            raise ConfigError(
                f"adapt.method = select chooses the tf and query_idf settings of a SPLADE folder; "
                f"model.kind {self.model.kind!r} adapts with adapt.method train (or auto)"
            )
        if self.prepare.use_labels:
            raise ConfigError("prepare.use_labels = true: lsr adapt reads no labels; set it to false")
        if not self.prepare.pseudo_titles and not self.prepare.pseudo_spans:
            raise ConfigError("prepare.pseudo_titles and prepare.pseudo_spans are both 0: no training query")
        if self.prepare.dev_fraction <= 0:
            raise ConfigError(
                "prepare.dev_fraction must be > 0: the held-out pseudo-queries select checkpoints"
            )
        self.train_config()  # the training sections' cross-checks

    def train_config(self) -> TrainConfig:
        """The training run's config (``data.prepared`` and ``model.init`` as set by ``lsr adapt``)."""
        return TrainConfig(
            self.name, self.prepare, self.data, self.model, self.loss, self.distill, self.optim, self.train
        )

    @property
    def method(self) -> str:
        """The method this config runs: ``adapt.method``, with auto resolved by the model's kind."""
        if self.adapt.method != "auto":
            return self.adapt.method
        return "select" if self.model.kind in SELECT_KINDS else "train"

    @property
    def min_docs(self) -> int:
        """The fewest documents with text an adapt run accepts: a negative list and a dev split need some."""
        return max(self.adapt.min_docs, self.prepare.negatives + 2)


def load_adapt_config(
    path: str | Path | None = "adapt", overrides: list[str] | tuple[str, ...] = ()
) -> AdaptConfig:
    """Defaults <- YAML file (``configs/adapt.yaml`` unless named) <- overrides, validated.

    Raises:
        ConfigError: unknown keys, wrong types, impossible values.
    """
    return load_dataclass_config(AdaptConfig, path, overrides)
