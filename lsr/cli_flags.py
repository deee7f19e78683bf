"""Flags that several commands share (``lsr`` and its ``lsr eval`` modes): one definition each."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsr.data.formats import CorpusSource


def common_flags(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--set`` (repeatable) and ``--quiet``: every command takes them."""
    p.add_argument(
        "--config",
        metavar="FILE|NAME",
        help="YAML config file, or a shipped config name (bm25, toy); defaults otherwise",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set encoder.bm25.k1=1.2 (repeatable)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")


def search_mode_flags(p: argparse.ArgumentParser) -> None:
    """``--mode``, ``--budget``, ``--alpha``, ``--beta``: the sparse kernels (config ``search.*``)."""
    p.add_argument(
        "--mode",
        choices=("exact", "safe", "approx"),
        help="search.mode: exact scores every posting; safe uses block-max pruning with "
        "identical results; approx trades recall for speed with --budget (over the index's pruned "
        "lists when it has them: index.approx_lists)",
    )
    p.add_argument(
        "--budget",
        type=int,
        help="search.budget, approx: score at most about this many documents per query (whole blocks, "
        "best upper bound first; smaller: faster, lower recall), then rescore the best exactly; 0: none; "
        "on pruned lists it also keeps only the query's heaviest terms (0.6-0.9 of its weight below 8192)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        help="search.alpha in (0, 1], approx: stop when the k-th score "
        "exceeds alpha x the best block bound left",
    )
    p.add_argument(
        "--beta",
        type=float,
        help="search.beta in (0, 1], approx: keep this fraction of each query's terms, heaviest first",
    )


CORPUS_HELP = (
    "a BEIR folder, JSONL (.jsonl[.gz]; '-': stdin), CSV/TSV with a header row, Parquet, a folder of "
    ".txt/.md files, a Hugging Face save_to_disk folder, or an ir_datasets id"
)


def corpus_shape_flags(p: argparse.ArgumentParser) -> None:
    """--corpus-format and the field names, for the commands that read a corpus."""
    from lsr.data.formats import FORMATS  # light: stdlib only

    p.add_argument(
        "--corpus-format",
        choices=FORMATS,
        default="auto",
        help="the corpus shape (default auto: by suffix, or by a folder's contents)",
    )
    p.add_argument("--id-field", help="the id field or column (default: _id, id, docid or doc_id)")
    p.add_argument("--title-field", help="the title field or column (default: title, if present)")
    p.add_argument(
        "--text-field",
        "--text-fields",
        dest="text_field",
        help="the text field(s) or column(s), comma-separated (default: text, contents or body)",
    )


def corpus_source(args: argparse.Namespace) -> CorpusSource:
    """The corpus the flags name (a :class:`lsr.data.formats.CorpusSource`)."""
    from lsr.data.formats import CorpusSource, Fields

    fields = Fields.parse(args.id_field, args.title_field, args.text_field)
    return CorpusSource(args.corpus, args.corpus_format, fields)
