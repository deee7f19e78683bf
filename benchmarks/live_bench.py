"""Live index benchmark: ingest rate of pre-encoded adds, search latency over 1, 10 and 50 segments
against one merged segment, with 10% of the documents deleted before and after a merge, and with
metadata filters allowing 50/10/1/0.1% of the documents, with and without filter indexes (a
selective filter's own index; the build time and bytes too), recall against filtered exhaustive
search.

    python -m benchmarks.live_bench --docs 50000 --out benchmarks/results/live.json
    python -m benchmarks.live_bench --only filters     # or --only segments, tiered, ingest
    python -m benchmarks.live_bench --docs 50000 --only tiered --cap-mb 8
    python -m benchmarks.live_bench --docs 1000000 --queries 50 --only filters \
        --out benchmarks/results/live-filters-1m.json

Ingest of text (``--only ingest``): 500 SciFact documents added in batches of 100 to an index of
1,000, with BM25 and with the inference-free encoder (models/splade-tiny encodes the documents).

Synthetic SPLADE-like collection (benchmarks.synthetic), uint8 impacts, block size 16, one thread.
A live index of S segments is the first 1/S of the documents as a plain index plus S - 1 adds of
equal size. Latency: per query the fastest of 5 runs (the machine is shared), then mean, p50 and
p99 over the queries, top-10, after a warm-up pass. Tiered (``--only tiered``): one segment of 90%
of the documents plus 9 equal adds, its block maxima all merged, merged within ``--cap-mb`` (the
big segment then read from its own block-max arrays), and none merged: the merged maxima's build
time and bytes on opening the generation, safe and exact latency, against one segment.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.synthetic import SyntheticConfig, generate
from lsr.index import BuildOptions, Index, SearchParams, SparseBatch, build_index
from lsr.index.docstore import DocStoreWriter
from lsr.index.io import directory_bytes
from lsr.index.rescore import rescored_search
from lsr.index.search import FILTER_INDEX_AFTER, FILTER_INDEX_BYTES, FILTER_INDEX_MIN_COST, FilterCache
from lsr.index.segments import MERGED_BOUNDS_MB, SegmentedIndex, open_index
from lsr.index.writer import IndexWriter, MergePolicy

NO_POLICY = MergePolicy(max_segments=10_000, max_deleted=1.0)


def _slice(batch: SparseBatch, start: int, end: int) -> SparseBatch:
    return batch.slice(start, end)


def build_live(
    root: Path, docs: SparseBatch, ids: list[str], vocab: list[str], n_segments: int
) -> tuple[Path, dict[str, float]]:
    """A live index of ``n_segments`` equal segments; returns it and the add rates (docs/s): over all
    adds, and over the first and the last five (the rate must not fall as segments pile up)."""
    path = root / f"live-{n_segments}"
    cut = np.linspace(0, len(docs), n_segments + 1).astype(int)
    first = _slice(docs, 0, cut[1])
    build_index(lambda: [first], len(vocab), ids[: cut[1]], vocab, path, BuildOptions(block_size=16))
    seconds = []
    with IndexWriter(path, NO_POLICY) as w:
        for s, e in zip(cut[1:-1], cut[2:], strict=True):
            start = time.perf_counter()
            w.add(_slice(docs, s, e), ids[s:e], vocab)
            seconds.append(time.perf_counter() - start)
    per_add = len(docs) / n_segments
    rates = {"add_docs_per_s": (len(docs) - cut[1]) / max(sum(seconds), 1e-9)} if seconds else {}
    if len(seconds) >= 10:
        rates["first5_docs_per_s"] = 5 * per_add / sum(seconds[:5])
        rates["last5_docs_per_s"] = 5 * per_add / sum(seconds[-5:])
    return path, rates


def latency(path: Path, queries: SparseBatch, mode: str) -> dict[str, float]:
    index = open_index(path)
    rows = [queries.row(i) for i in range(len(queries))]
    return _timed(lambda terms, weights: index.search(terms, weights, 10, mode=mode), rows)


def build_tiered(root: Path, docs: SparseBatch, ids: list[str], vocab: list[str], n_small: int) -> Path:
    """A tiered generation: one big segment of 90% of the docs (a merge policy's merged segment) and
    ``n_small`` adds of equal size after it."""
    path = root / f"tiered-{n_small}"
    cut = np.concatenate([[0], np.linspace(len(docs) * 9 // 10, len(docs), n_small + 1)]).astype(int)
    first = _slice(docs, 0, cut[1])
    build_index(lambda: [first], len(vocab), ids[: cut[1]], vocab, path, BuildOptions(block_size=16))
    with IndexWriter(path, NO_POLICY) as w:
        for s, e in zip(cut[1:-1], cut[2:], strict=True):
            w.add(_slice(docs, s, e), ids[s:e], vocab)
    return path


TIERED_PLANS = ("merged", "cap", "own")


def tiered(path: Path, queries: SparseBatch, cap_mb: float) -> list[dict[str, Any]]:
    """The tiered generation searched with all block maxima merged, merged within ``cap_mb`` (the
    big segment read from its own arrays) and none merged: per plan the merged maxima's build time
    and bytes on a fresh open (each commit that adds a segment opens one), and safe / exact p50."""
    rows = []
    rows_of = [queries.row(i) for i in range(len(queries))]
    for plan in ("merged", *TIERED_PLANS):  # the first: warm-up (compiled kernels loaded)
        index = open_index(path)
        assert isinstance(index, SegmentedIndex)
        index.merged_bounds_mb = {"merged": float("inf"), "cap": cap_mb, "own": 0.0}[plan]
        start = time.perf_counter()
        merged = index.merged_bounds
        seconds = time.perf_counter() - start
        chosen, own = index.bound_plan
        row: dict[str, Any] = {"plan": plan, "cap_mb": index.merged_bounds_mb, "merged_segments": len(chosen)}
        row.update(
            {
                "own_segments": len(own),
                "merged_bounds_ms": seconds * 1000,
                "merged_bounds_mb": merged.nbytes / 1e6,
            }
        )
        for mode in ("safe", "exact"):
            row[mode] = _timed(lambda t, w, m=mode, ix=index: ix.search(t, w, 10, mode=m), rows_of)
        rows.append(row)
        del merged
        index.close()
    return rows[1:]


def merged_bounds(path: Path) -> dict[str, float]:
    """The build time and bytes of a generation's merged block maxima (two or more segments; built by
    the first block-max search of a freshly opened generation)."""
    index = open_index(path)
    if not isinstance(index, SegmentedIndex) or not index._one_call:
        return {}
    start = time.perf_counter()
    merged = index.merged_bounds
    seconds = time.perf_counter() - start
    index.close()
    return {"merged_bounds_ms": seconds * 1000, "merged_bounds_mb": merged.nbytes / 1e6}


SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)
INGEST_CORPUS = "../shared/data/beir/scifact"
INGEST_ENCODERS = ("bm25", "inference-free:models/splade-tiny")
N_BUCKETS = 1000
FILTER_INDEXES = ("none", "float32")  # without and with the forward index (index.rescore)


def build_filtered(root: Path, docs: SparseBatch, ids: list[str], vocab: list[str], forward: str) -> Path:
    """One plain index whose docs carry two int fields in [0, 1000): ``bucket``, drawn uniformly at
    random (``bucket < 10`` allows 1% of the documents, spread over the whole collection), and ``day``,
    rising with the doc order as in a collection indexed over time (``500 <= day < 510`` allows 1%,
    one contiguous run of documents). ``forward``: "none", or "float32" (the forward index of exact
    weights, config ``index.rescore: float32``, the default of ``lsr index``: searches rescore)."""
    bucket = np.random.default_rng(1).integers(0, N_BUCKETS, size=len(docs))
    day = np.arange(len(docs)) * N_BUCKETS // len(docs)
    store = root / f"store-{forward}"
    store.mkdir()
    writer = DocStoreWriter(store)
    for key, b, d in zip(ids, bucket.tolist(), day.tolist(), strict=True):
        writer.add(key, "", "", {"bucket": b, "day": d})
    writer.close()
    path = root / f"filtered-{forward}"
    options = BuildOptions(block_size=16, fields={"bucket": "int", "day": "int"}, forward=forward)
    build_index(
        lambda: [docs], len(vocab), ids, vocab, path, options, extra_files=DocStoreWriter.files(store)
    )
    return path


def filters(path: Path, queries: SparseBatch) -> list[dict[str, Any]]:
    """Safe search with filters allowing 50/10/1/0.1% of the docs (random: ``bucket < N``; clustered:
    a ``day`` range in the middle of the collection), each filter twice in the same run: without
    filter indexes (the filter cache's byte budget 0: blocks, postings or forward) and with them
    (the default: a selective filter's own index, lsr.index.subindex, built on its second use).
    Per filter: latency of a repeated filter, the path the cost model took for the queries
    (lsr.index.search.Filtered.costs), the first use (the mask evaluated) and the second (the filter
    index built), the build's time and bytes, and recall against filtered exhaustive search (the
    exact kernel over the allowed docs' mask, rescored exactly on a rescoring index; not the path
    under test)."""
    index = Index.load(path)
    fields = index.fields
    assert fields is not None
    rows = [queries.row(i) for i in range(len(queries))]
    unfiltered = _filtered_search(index, None)
    out: list[dict[str, Any]] = [{"filter": "none", "safe": _timed(unfiltered, rows)}]
    _compile_filter_index(index, rows[0])
    for kind, field in (("random", "bucket"), ("clustered", "day")):
        for frac in SELECTIVITIES:
            width = int(frac * N_BUCKETS)
            lo = 0 if kind == "random" else (N_BUCKETS - width) // 2
            spec = {"range": {field: {"gte": lo, "lt": lo + width}}}
            mask = np.ascontiguousarray(fields.mask(spec), dtype=np.uint8)
            row: dict[str, Any] = {"filter": kind, "selectivity": frac, "allowed": int(mask.sum())}
            search = _filtered_search(index, spec)
            index.filter_cache.max_bytes = 0
            index.filter_cache.clear()
            row["without_index"] = {"paths": _paths(index, rows, spec), "safe": _timed(search, rows)}
            index.filter_cache.max_bytes = FILTER_INDEX_BYTES
            index.filter_cache.clear()
            row.update(_first_uses(index, rows[0], spec))
            row["recall"] = _filtered_recall(index, rows, spec, mask)
            row["paths"] = _paths(index, rows, spec)
            row["safe"] = _timed(search, rows)
            row.update(_filter_index(index, spec))
            out.append(row)
    _baseline(out, _timed(unfiltered, rows))
    return out


def _baseline(out: list[dict[str, Any]], again: dict[str, float]) -> None:
    """The unfiltered search timed again after the filters (a disturbance of the first run would
    skew every ratio): the faster p50 of the two is the baseline of the "vs none" ratios."""
    out[0]["safe_runs"] = [out[0]["safe"], again]
    out[0]["safe"] = min(out[0]["safe_runs"], key=lambda r: r["p50_ms"])
    for row in out[1:]:
        for part in (row, row["without_index"]):
            part["speedup"] = out[0]["safe"]["p50_ms"] / part["safe"]["p50_ms"]


def _compile_filter_index(index: Index, row: tuple[np.ndarray, np.ndarray]) -> None:
    """Compile the gathering kernels and the searches of a filter index (numba caches them on disk,
    but the first run on a machine compiles), so that build times measure the build."""
    spec = {"range": {"bucket": {"gte": 500, "lt": 501}}}
    cache = index.filter_cache
    cache.build_after, cache.min_cost = 1, 0.0  # built whatever the size
    index.search(*row, 10, mode="safe", filter=spec)
    cache.build_after, cache.min_cost = FILTER_INDEX_AFTER, FILTER_INDEX_MIN_COST
    cache.clear()


def _filtered_search(index: Index, spec: Any) -> Any:
    return lambda t, w: index.search(t, w, 10, mode="safe", filter=spec)


def _first_uses(index: Index, row: tuple[np.ndarray, np.ndarray], spec: Any) -> dict[str, float]:
    """A new filter's first search (its mask evaluated) and second (its own index built, when the
    cost model asks for one for this query), in ms."""
    out: dict[str, float] = {}
    for name in ("first_use_ms", "second_use_ms"):
        start = time.perf_counter()
        index.search(*row, 10, mode="safe", filter=spec)
        out[name] = (time.perf_counter() - start) * 1000
    return out


def _filter_index(index: Index, spec: Any) -> dict[str, Any]:
    """The filter's own index, if it has one: its build time (ms), bytes and postings."""
    sub = index.filter_cache.entries[FilterCache.key_of(spec)].sub
    if sub is None:
        return {}
    info = {"build_ms": sub.build_s * 1000, "mb": sub.nbytes / 1e6, "docs": sub.index.n_docs}
    return {"filter_index": {**info, "postings": int(sub.index.term_ptr[-1])}}


def _paths(index: Index, rows: list[tuple[np.ndarray, np.ndarray]], spec: Any) -> dict[str, int]:
    """How many of the queries each path served (the cost model's choice)."""
    counts: dict[str, int] = {}
    for terms, weights in rows:
        t, _ = index._check_query(terms, weights)
        path = index._route(spec, t)[1]
        counts[path] = counts.get(path, 0) + 1
    return counts


def _filtered_recall(
    index: Index, rows: list[tuple[np.ndarray, np.ndarray]], spec: Any, mask: np.ndarray
) -> float:
    hits = total = 0
    for terms, weights in rows:
        got = index.search(terms, weights, 10, mode="safe", filter=spec)
        t, w = index._check_query(terms, weights)
        if index.rescore:
            ref, _ = rescored_search(index, t, w, 10, SearchParams("exact"), mask)
        else:
            ref, _ = index.search_raw(t, w, 10, SearchParams("exact"), live=mask)
        hits += len(set(got.docs.tolist()) & set(ref.tolist()))
        total += len(ref)
    return hits / max(total, 1)


def _timed(search: Any, rows: list[tuple[np.ndarray, np.ndarray]], repeats: int = 5) -> dict[str, float]:
    """Per query the fastest of ``repeats`` runs (the machine is shared: the minimum is the least
    disturbed), then the mean, p50 and p99 over the queries, in ms."""
    best = np.full(len(rows), np.inf)
    for _ in range(repeats):
        for i, (terms, weights) in enumerate(rows):
            start = time.perf_counter()
            search(terms, weights)
            best[i] = min(best[i], time.perf_counter() - start)
    ms = best * 1000
    return {
        "mean_ms": float(np.mean(ms)),
        "p50_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def ingest(corpus: str, encoder: str, n_base: int, n_add: int, batch: int, root: Path) -> dict[str, Any]:
    """Text documents added to a live index with its own encoder (``LiveIndex.add_documents``, each
    batch encoded, written as a segment, fsynced and committed; the merge policy on): documents/s."""
    from lsr.cli import main as lsr_main
    from lsr.data.corpus import open_corpus
    from lsr.live import LiveIndex

    docs = [d for d in open_corpus(corpus) if d.contents.strip()][: n_base + n_add]
    base = root / f"base-{encoder.replace(':', '-').replace('/', '-')}.jsonl"
    base.write_text(
        "".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in docs[:n_base])
    )
    path = root / f"ingest-{base.stem}"
    assert (
        lsr_main(["index", "--corpus", str(base), "--encoder", encoder, "--out", str(path), "--quiet"]) == 0
    )
    live = LiveIndex(path)
    live.add_documents(docs[n_base : n_base + 1])  # the first write makes the index live (BM25: its lengths)
    start = time.perf_counter()
    for s in range(n_base + 1, n_base + n_add, batch):
        live.add_documents(docs[s : min(s + batch, n_base + n_add)])
    seconds = time.perf_counter() - start
    info = live.info()
    return {
        "encoder": encoder,
        "base_docs": n_base,
        "added": n_add - 1,
        "batch": batch,
        "docs_per_s": (n_add - 1) / seconds,
        "segments": len(info["segments"]),
        "generation": info["generation"],
    }


def run(
    n_docs: int,
    n_queries: int,
    segments: list[int],
    only: str | None = None,
    forwards: tuple[str, ...] = FILTER_INDEXES,
    cap_mb: float = MERGED_BOUNDS_MB,
) -> dict[str, Any]:
    coll = generate(SyntheticConfig(n_docs=n_docs, n_queries=n_queries, chunk_docs=min(50_000, n_docs)))
    docs, vocab, ids = coll.docs, coll.vocab, coll.doc_ids
    root = Path(tempfile.mkdtemp(prefix="live-bench-"))
    out: dict[str, Any] = {"n_docs": n_docs, "n_queries": n_queries}
    try:
        if only in (None, "segments"):
            out["rows"] = []
            for n in segments:
                path, rates = build_live(root, docs, ids, vocab, n)
                row: dict[str, Any] = {"segments": n, **rates, **merged_bounds(path)}
                row.update({mode: latency(path, coll.queries, mode) for mode in ("exact", "safe")})
                out["rows"].append(row)
            out["deleted"] = _delete_heavy(root / f"live-{segments[-1]}", ids, coll.queries)
        if only in (None, "tiered"):
            one, _ = build_live(root, docs, ids, vocab, 1)
            path = build_tiered(root, docs, ids, vocab, 9)
            out["tiered"] = {
                "one_segment": latency(one, coll.queries, "safe"),
                "index_mb": directory_bytes(path) / 1e6,
                "rows": tiered(path, coll.queries, cap_mb),
            }
        if only in (None, "filters"):
            out["filters"] = {
                forward: filters(build_filtered(root, docs, ids, vocab, forward), coll.queries)
                for forward in forwards
            }
        if only in (None, "ingest"):
            out["ingest"] = [ingest(INGEST_CORPUS, enc, 1000, 501, 100, root) for enc in INGEST_ENCODERS]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _delete_heavy(path: Path, ids: list[str], queries: SparseBatch) -> dict[str, Any]:
    """10% of the docs deleted: latency before and after a full merge."""
    rng = np.random.default_rng(0)
    doomed = [ids[i] for i in rng.choice(len(ids), size=len(ids) // 10, replace=False)]
    with IndexWriter(path, NO_POLICY) as w:
        w.delete(doomed)
        before = {mode: latency(path, queries, mode) for mode in ("exact", "safe")}
        start = time.perf_counter()
        w.merge()
        merge_s = time.perf_counter() - start
    after = {mode: latency(path, queries, mode) for mode in ("exact", "safe")}
    return {"deleted": len(doomed), "before_merge": before, "after_merge": after, "merge_s": merge_s}


MERGED_KEYS = ("merged_bounds_ms", "merged_bounds_mb")


def tables(result: dict[str, Any]) -> str:
    """The segments and filters results as markdown tables (safe p50, ms)."""
    lines = []
    if "rows" in result:
        base = result["rows"][0]["safe"]["p50_ms"]
        lines += [
            "| segments | exact p50 | safe p50 | safe / first row | merged bounds ms | MB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in result["rows"]:
            safe = row["safe"]["p50_ms"]
            merged = [f"{row[key]:.1f}" if key in row else "-" for key in MERGED_KEYS]
            lines.append(
                f"| {row['segments']} | {row['exact']['p50_ms']:.3f} | {safe:.3f} | {safe / base:.2f} | "
                + " | ".join(merged)
                + " |"
            )
    if "tiered" in result:
        lines += _tiered_lines(result["tiered"])
    for forward, rows in result.get("filters", {}).items():
        lines += [
            "",
            f"forward index: {forward}",
            "| filter | allowed | recall | paths | safe p50 | vs none | without filter index: paths | "
            "p50 | vs none | index build ms | MB |",
        ]
        lines.append("|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|")
        for row in rows:
            lines.append(_filter_line(row))
    return "\n".join(lines)


def _tiered_lines(tiered: dict[str, Any]) -> list[str]:
    base = tiered["one_segment"]["p50_ms"]
    lines = [
        "",
        f"tiered: 1 segment of 90% + 9 small, {tiered['index_mb']:.0f} MB on disk; 1 segment safe p50 "
        f"{base:.3f} ms",
        "| plan | cap MB | merged / own segments | build ms | MB | safe p50 | vs 1 segment | exact p50 |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in tiered["rows"]:
        safe = row["safe"]["p50_ms"]
        lines.append(
            f"| {row['plan']} | {row['cap_mb']:g} | {row['merged_segments']} / {row['own_segments']} | "
            f"{row['merged_bounds_ms']:.1f} | {row['merged_bounds_mb']:.1f} | {safe:.3f} | "
            f"{safe / base:.2f}x | {row['exact']['p50_ms']:.3f} |"
        )
    return lines


def _filter_line(row: dict[str, Any]) -> str:
    name = row["filter"] + (f" {row['selectivity']:.1%}" if "selectivity" in row else "")
    without = row.get("without_index", {})
    built = row.get("filter_index", {})
    cells = [
        name,
        row.get("allowed", "-"),
        row.get("recall", "-"),
        _path_counts(row.get("paths", {})),
        f"{row['safe']['p50_ms']:.3f}",
        f"{row.get('speedup', 1.0):.2f}x",
        _path_counts(without.get("paths", {})),
        f"{without['safe']['p50_ms']:.3f}" if without else "-",
        f"{without['speedup']:.2f}x" if without else "-",
        f"{built['build_ms']:.1f}" if built else "-",
        f"{built['mb']:.1f}" if built else "-",
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _path_counts(paths: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in paths.items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--segments", default="1,10,50")
    parser.add_argument("--only", choices=["segments", "tiered", "filters", "ingest"], help="run one part")
    parser.add_argument(
        "--cap-mb",
        type=float,
        default=MERGED_BOUNDS_MB,
        help="tiered: the merged block maxima's cap of the 'cap' plan (SegmentedIndex.merged_bounds_mb)",
    )
    parser.add_argument("--out", help="JSON results file")
    parser.add_argument(
        "--forward",
        default=",".join(FILTER_INDEXES),
        help="filters: the indexes to build, comma-separated (none: without the forward index; "
        "float32: with it); one per run halves a run's time",
    )
    args = parser.parse_args()
    import numba

    numba.set_num_threads(1)
    segments = [int(s) for s in args.segments.split(",")]
    result = run(args.docs, args.queries, segments, args.only, tuple(args.forward.split(",")), args.cap_mb)
    text = json.dumps(result, indent=2)
    print(text)
    print(tables(result))
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
