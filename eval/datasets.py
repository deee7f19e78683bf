"""Evaluation datasets: queries and qrels of one split, from a BEIR folder or an ``ir_datasets`` id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsr.data.corpus import load_queries, qrels_path
from lsr.data.trec import Qrels, read_qrels


@dataclass
class EvalDataset:
    name: str
    split: str
    queries: dict[str, str]
    qrels: Qrels


def load_eval_dataset(spec: str | Path, split: str = "test") -> EvalDataset:
    """A BEIR folder (queries filtered to ``qrels/<split>.tsv``) or an ``ir_datasets`` id.

    For an ``ir_datasets`` id the split is part of the id (e.g. ``beir/scifact/test``).
    """
    path = Path(spec)
    if path.is_dir():
        qrels = read_qrels(qrels_path(path, split))
        return EvalDataset(path.name, split, load_queries(path, split), qrels)
    from lsr.data.irds import IrdsDataset

    ds = IrdsDataset(str(spec))
    return EvalDataset(str(spec), split, ds.queries(), ds.qrels())
