"""The JSON report and terminal table of ``lsr eval index``, views of one :class:`Evaluation`.

(``lsr eval systems`` / ``matrix`` render many evaluations: :mod:`lsr.eval.report`; the DL protocol:
:func:`lsr.eval.rerank.format_rerank_report`.)
"""

from __future__ import annotations

from typing import Any

from lsr import __version__
from lsr.eval.record import Evaluation


def index_report(ev: Evaluation) -> dict[str, Any]:
    """The report of a sparse (or hybrid) evaluation of one index: ``lsr eval index --out``."""
    i = ev.info
    return {
        "lsr_version": __version__,
        "dataset": i["dataset"],
        "index": i["index"],
        "search": i["search"],
        "metrics": ev.metrics,
        "eval_k": i["eval_k"],
        "latency_ms": i.get("sparse_latency_ms", ev.latency_ms),  # the hybrid's parts: "rerank"
        "throughput": i["throughput"],
        "index_bytes": ev.index_bytes,
        "postings_bytes": i["postings_bytes"],
        "bytes_per_posting": i["bytes_per_posting"],
        "doc_nnz_avg": ev.doc_nnz_avg,
        "query_nnz_avg": ev.query_nnz_avg,
        "flops": ev.flops,
        "encoder": i["encoder"],
        "config": {"index": i["index_config"], "eval": ev.config},
    } | ({"rerank": i["rerank"]} if "rerank" in i else {})


def dense_report(ev: Evaluation) -> dict[str, Any]:
    """The report of a dense-only evaluation: ``lsr eval index --first-stage dense-pq --out``."""
    i = ev.info
    return {
        "lsr_version": __version__,
        "system": ev.system,
        "dataset": i["dataset"],
        "index": i["index"],
        "metrics": ev.metrics,
        "eval_k": i["eval_k"],
        "latency_ms": ev.latency_ms,  # flat scan + top-k, query encoding excluded
        "query_encode_ms": i["query_encode_ms"],
        "run_seconds": i["run_seconds"],
        "dense": i["dense"],
        "config": {"eval": ev.config},
    }


def _table(title: str, rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(r[0]) for r in rows)
    return [title, "-" * len(title)] + [f"{name:<{width}}  {value:>10}" for name, value in rows]


def format_report(report: dict[str, Any]) -> str:
    """A small terminal table of :func:`index_report`."""
    rows = [(name, f"{value:.4f}") for name, value in report["metrics"].items()]
    lat = report["latency_ms"]
    if lat:
        rows += [
            ("latency p50 (ms)", f"{lat['p50']:.2f}"),
            ("latency p99 (ms)", f"{lat['p99']:.2f}"),
            ("queries/s (1 thread)", f"{lat['qps_one_thread']:.0f}"),
        ]
    rows += [
        (f"queries/s (full run, k={report['eval_k']})", f"{report['throughput']['run_qps']:.0f}"),
        ("index size (MiB)", f"{report['index_bytes'] / 2**20:.1f}"),
        ("bytes/posting", f"{report['bytes_per_posting']:.2f}"),
        ("doc nnz (avg)", f"{report['doc_nnz_avg']:.1f}"),
        ("query nnz (avg)", f"{report['query_nnz_avg']:.1f}"),
        ("FLOPS", f"{report['flops']:.3f}"),
    ]
    ds = report["dataset"]
    lines = _table(
        f"{ds['name']} ({ds['split']}, {ds['n_queries']} queries) on {report['index']['path']}", rows
    )
    if report.get("rerank"):
        lines.append(format_rerank_section(report["rerank"]))
    return "\n".join(lines)


def format_dense_report(report: dict[str, Any]) -> str:
    """A small terminal table of :func:`dense_report`."""
    rows = [(name, f"{value:.4f}") for name, value in report["metrics"].items()]
    lat, enc = report["latency_ms"], report["query_encode_ms"]
    if lat:
        rows += [
            ("scan latency p50 (ms)", f"{lat['p50']:.2f}"),
            ("scan latency p99 (ms)", f"{lat['p99']:.2f}"),
        ]
    if enc:
        rows += [("query encode p50 (ms)", f"{enc['p50']:.2f}")]
    rows += [("bytes/doc", f"{report['dense']['bytes_per_doc']:.0f}")]
    ds = report["dataset"]
    title = (
        f"{ds['name']} ({ds['split']}, {ds['n_queries']} queries), {report['system']} on "
        f"{report['index']['path']}"
    )
    return "\n".join(_table(title, rows))


def format_rerank_section(section: dict[str, Any]) -> str:
    """Lines for the terminal report of a hybrid (the dense re-rank stage)."""
    f, lat, enc = section["fusion"], section["latency_ms"], section["query_encode_ms"]
    lines = [
        f"re-rank: {section['stage']} ({section['dense_model']}, M = {section['m']}, "
        f"{section['bytes_per_doc']:.0f} bytes/doc), top {section['depth']}, {f['method']} "
        f"weight {f['weight']:.2f}"
    ]
    if "sparse_metrics" in section:
        sparse = section["sparse_metrics"]
        lines.append("sparse alone: " + ", ".join(f"{k} {v:.4f}" for k, v in sparse.items()))
    if lat:
        lines.append(
            f"re-rank latency p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms (1 thread, encoding excluded)"
        )
    if enc:
        lines.append(f"dense query encoding p50 {enc['p50']:.2f} ms, p99 {enc['p99']:.2f} ms (1 thread)")
    return "\n".join(lines)
