"""Evaluation datasets: queries and qrels of one split, from a BEIR folder or an ``ir_datasets`` id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsr.data.corpus import load_queries, qrels_path
from lsr.data.trec import Qrels, read_qrels
from lsr.errors import ConfigError


@dataclass
class EvalDataset:
    name: str
    split: str
    queries: dict[str, str]
    qrels: Qrels


def load_eval_dataset(spec: str | Path, split: str = "test") -> EvalDataset:
    """A BEIR folder (queries filtered to ``qrels/<split>.tsv``), a staged name (``scifact``,
    ``ood-adi``) or an ``ir_datasets`` id.

    For an ``ir_datasets`` id the split is part of the id (e.g. ``beir/scifact/test``).
    """
    path = Path(spec)
    name = path.name
    if not path.is_dir() and isinstance(spec, str) and staged_folder(spec) is not None:
        path, name = resolve_dataset(spec, split).path or path, spec
    if path.is_dir():
        qrels = read_qrels(qrels_path(path, split))
        return EvalDataset(name, split, load_queries(path, split), qrels)
    from lsr.data.irds import IrdsDataset

    ds = IrdsDataset(str(spec))
    return EvalDataset(str(spec), split, ds.queries(), ds.qrels())


REPO = Path(__file__).resolve().parents[1]
RERANK_PROTOCOLS = {"dl19-rerank": "dl19", "dl20-rerank": "dl20"}
# the staged out-of-domain test collections (<shared data>/ood/NAME), named ood-NAME
OOD_COLLECTIONS = ("adi", "time", "med", "cacm", "lisa", "npl")
OOD_NAMES = {f"ood-{name}": name for name in OOD_COLLECTIONS}
# group names of ``--datasets``: each expands to its datasets, in this order
DATASET_GROUPS = {"ood": tuple(OOD_NAMES)}


def shared_data() -> Path:
    """The staged offline data: ``$LSR_SHARED_DATA``, default ``../shared/data`` beside the repository."""
    import os

    return Path(os.environ.get("LSR_SHARED_DATA") or REPO.parent / "shared" / "data")


def dl_pool() -> Path:
    """The TREC DL passage re-rank pool (``$LSR_DL_POOL``, default ``<shared data>/msmarco/dl-pool``)."""
    import os

    return Path(os.environ.get("LSR_DL_POOL") or shared_data() / "msmarco" / "dl-pool")


@dataclass(frozen=True)
class DatasetRef:
    """One evaluation dataset of ``lsr eval --datasets``: what to index and what to judge with.

    ``kind``: ``beir`` (a folder and a split), ``irds`` (an ``ir_datasets`` id, split inside the id) or
    ``rerank`` (TREC DL: re-rank the first-stage run's top ``depth`` of the pool's ``split``).
    """

    spec: str
    kind: str
    name: str
    split: str
    path: Path | None = None
    run: str = "bm25"
    depth: int = 100

    @property
    def corpus(self) -> str:
        return str(self.path) if self.path is not None else self.spec

    @property
    def folder(self) -> Path:
        """The folder of a ``beir`` or ``rerank`` dataset (queries, qrels, runs).

        Raises:
            ConfigError: an ``ir_datasets`` id, which has no folder (the message names the dataset).
        """
        if self.path is None:
            raise ConfigError(f"dataset {self.spec!r} ({self.kind}) has no folder of queries, qrels and runs")
        return self.path


def expand_datasets(specs: list[str]) -> list[str]:
    """``--datasets`` entries with each group name (``ood``) replaced by its datasets; repeats dropped,
    first occurrence kept."""
    out: list[str] = []
    for spec in specs:
        out.extend(DATASET_GROUPS.get(spec, (spec,)))
    return list(dict.fromkeys(out))


def staged_names() -> list[str]:
    """The dataset names ``--datasets`` knows besides folders and ids (groups included)."""
    beir = shared_data() / "beir"
    staged = sorted(p.name for p in beir.iterdir() if p.is_dir()) if beir.is_dir() else []
    return [*staged, *OOD_NAMES, *DATASET_GROUPS, *RERANK_PROTOCOLS]


def staged_folder(spec: str) -> Path | None:
    """The folder of a staged name (``scifact``, ``ood-adi``), or None for any other string."""
    if spec in OOD_NAMES:
        return shared_data() / "ood" / OOD_NAMES[spec]
    if "/" not in spec and spec and (shared_data() / "beir" / spec).is_dir():
        return shared_data() / "beir" / spec
    return None


def _ood(spec: str, split: str) -> DatasetRef:
    """A staged out-of-domain collection by name (``ood-adi``).

    Raises:
        FileNotFoundError: an unknown ``ood-`` name (the message lists the valid ones), or the
            collection is not staged.
    """
    if spec not in OOD_NAMES:
        raise FileNotFoundError(
            f"dataset {spec!r} is not an out-of-domain collection; valid: {', '.join(OOD_NAMES)} "
            f"(or the group 'ood' for all {len(OOD_NAMES)})"
        )
    path = shared_data() / "ood" / OOD_NAMES[spec]
    if not path.is_dir():
        raise FileNotFoundError(f"dataset {spec!r} needs {path} (set LSR_SHARED_DATA)")
    qrels_path(path, split)  # fails early, listing the splits
    return DatasetRef(spec, "beir", spec if split == "test" else f"{spec}/{split}", split, path)


def resolve_dataset(spec: str, split: str = "test") -> DatasetRef:
    """A BEIR folder, a name of a staged BEIR set (``scifact``), a staged out-of-domain collection
    (``ood-adi`` ... ``ood-npl``), ``dl19-rerank``/``dl20-rerank``, or an ``ir_datasets`` id
    (registered locally or known to ``ir_datasets``). Group names (``ood``) are expanded before, by
    :func:`expand_datasets`.

    Raises:
        FileNotFoundError: none of those (the message lists the forms and the staged names).
    """
    if spec in DATASET_GROUPS:
        raise FileNotFoundError(
            f"{spec!r} is a group of datasets ({', '.join(DATASET_GROUPS[spec])}); "
            "name them one by one here, or use it in lsr eval systems --datasets"
        )
    if spec.startswith("ood-") and not Path(spec).is_dir():
        return _ood(spec, split)
    if spec in RERANK_PROTOCOLS:
        pool = dl_pool()
        if not (pool / "qrels" / f"{RERANK_PROTOCOLS[spec]}.tsv").is_file():
            raise FileNotFoundError(f"dataset {spec!r} needs the TREC DL pool at {pool} (set LSR_DL_POOL)")
        return DatasetRef(spec, "rerank", spec, RERANK_PROTOCOLS[spec], pool)
    path = Path(spec)
    if not path.is_dir() and "/" not in spec and (shared_data() / "beir" / spec).is_dir():
        path = shared_data() / "beir" / spec
    if path.is_dir():
        qrels_path(path, split)  # fails early, listing the splits
        return DatasetRef(spec, "beir", path.name if split == "test" else f"{path.name}/{split}", split, path)
    from lsr.data.irds import LOCAL_HINT, local_folder

    if local_folder(spec) is None:
        try:
            import ir_datasets

            ir_datasets.load(spec)  # knows the id; downloads nothing yet
        except (ImportError, KeyError):
            raise FileNotFoundError(
                f"dataset {spec!r} is not a folder, a staged name ({', '.join(staged_names())}), "
                f"nor a known ir_datasets id; {LOCAL_HINT}"
            ) from None
    return DatasetRef(spec, "irds", spec, spec.rstrip("/").rsplit("/", 1)[-1])
