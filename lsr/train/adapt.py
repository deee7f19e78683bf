"""``lsr adapt``: unsupervised domain adaptation of a sparse model to a corpus, with no labels.

Steps, each kept in the work directory (``--work``, default ``OUT.work`` beside ``--out``) so that a
crashed run resumes (``--resume``) after the last finished step:

1. checks (:mod:`lsr.train.adapt_checks`): the model folder's kind, ``--out``, the corpus (empty, too
   small, another language); the corpus (sampled to ``adapt.max_docs``) is written to ``corpus.jsonl``;
2. ``prepared/``: :func:`lsr.train.data.prepare_corpus_dataset`: title and sentence pseudo-queries,
   hard negatives mined with BM25 over the corpus, raw teacher scores (all-MiniLM-L6-v2 dense and
   BM25 by default, mixed by the trainer as a per-query normalized ensemble); the pseudo-queries of a
   held-out share of the documents are the dev split that selects the checkpoint;
3. ``mlm/``: continued masked-language-model training on the corpus text (:mod:`lsr.train.mlm`;
   ``adapt.mlm_steps``, 0 skips it; only for kinds with an MLM head, not uniCOIL);
4. the start model on the dev split (nDCG@10, doc/query nnz, FLOPS), and the MLM output: when the dev
   nDCG@10 drops after the MLM phase, training starts from the start model instead;
5. ``run/``: :func:`lsr.train.trainer.train` from the MLM output (or the start model), with its
   checkpoints (resumed from ``run/checkpoint``);
6. the best checkpoint (``run/best``) with a model card (``README.md``) and ``lsr_adapt.json`` (what it
   was adapted from and on, the corpus sha256, steps, seconds, dev numbers before and after) is
   renamed into ``--out``; the work directory is removed unless ``adapt.keep_work``.

Needs torch and transformers (training), PyStemmer (BM25 mining) and the dense extra (the teacher).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsr import __version__
from lsr.config import to_dict
from lsr.data.corpus import Doc
from lsr.encoders.query_idf import MODEL_FILE as QUERY_FILE
from lsr.encoders.splade import DOC_FILE
from lsr.errors import LsrError
from lsr.index.io import publish_directory, write_json
from lsr.train.adapt_checks import MLM_KINDS, check_language, corpus_digest, read_corpus
from lsr.train.adapt_config import AdaptConfig

logger = logging.getLogger(__name__)

FORMAT = "lsr-adapted-model"
FORMAT_VERSION = 1
STATE_FILE = "adapt_state.json"
# adapt_state.json keys that must match for --resume (the rest of the config is the trainer's to check)
_RESUME_KEYS = ("encoder", "kind", "corpus_sha256", "prepare", "adapt_data")


@dataclass
class _Inputs:
    """What one adapt run reads, after the checks."""

    cfg: AdaptConfig
    corpus: str
    docs: list[Doc]
    n_read: int
    digest: dict[str, str]
    known_words: float


def default_work_dir(out: str | Path) -> Path:
    """``OUT.work`` beside ``OUT``."""
    out = Path(out)
    return out.parent / f"{out.name}.work"


def adapt(
    cfg: AdaptConfig,
    corpus: str,
    out: str | Path,
    work: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Adapt ``cfg.model.init`` (of ``cfg.model.kind``) to ``corpus``; returns the record written to
    ``OUT/lsr_adapt.json``.

    Raises:
        LsrError: ``out`` holds files and ``overwrite`` is false; an empty, too small or
            foreign-language corpus; a work directory left by another run (without ``resume``) or
            by a run on other inputs; ``resume`` with nothing to resume.
    """
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise LsrError(f"{out} already exists and is not empty; pass --overwrite to replace it")
    inputs = check_inputs(cfg, corpus)
    if cfg.method == "select":
        return _select(inputs, out, start, progress)
    work_dir = Path(work) if work else default_work_dir(out)
    state = _open_work(work_dir, inputs, resume, overwrite)
    record = _run_steps(inputs, work_dir, state, progress)
    record["seconds"]["total"] = round(time.perf_counter() - start, 2)
    _publish(inputs, work_dir, out, record)
    if not cfg.adapt.keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
    return record


def check_inputs(cfg: AdaptConfig, corpus: str) -> _Inputs:
    """Read and check the corpus (size, language) against the start model; nothing is written."""
    if cfg.model.kind not in MLM_KINDS and cfg.adapt.mlm_steps:
        logger.info("%s models have no MLM head: no continued MLM phase", cfg.model.kind)
    max_docs = cfg.adapt.select_max_docs if cfg.method == "select" else cfg.adapt.max_docs
    docs, n_read = read_corpus(corpus, cfg.min_docs, max_docs, cfg.prepare.seed)
    share = check_language(Path(cfg.model.init), docs, cfg.adapt.language_docs, cfg.adapt.min_known_words)
    logger.info(
        "corpus %s: %d documents with text (%d read); %.0f%% known words",
        corpus,
        len(docs),
        n_read,
        100 * share,
    )
    return _Inputs(cfg, str(corpus), docs, n_read, corpus_digest(corpus, docs), share)


# --- the work directory ----------------------------------------------------------------------------------


def _state(inputs: _Inputs) -> dict[str, Any]:
    cfg = inputs.cfg
    return {
        "format": "lsr-adapt-work",
        "encoder": str(cfg.model.init),
        "kind": cfg.model.kind,
        "corpus": inputs.corpus,
        "corpus_sha256": inputs.digest["sha256"],
        "prepare": to_dict(cfg.prepare),
        "adapt_data": {k: getattr(cfg.adapt, k) for k in ("max_docs", "mlm_steps", "mlm_freeze_head")},
        "seconds": {},
    }


def _open_work(work: Path, inputs: _Inputs, resume: bool, overwrite: bool) -> dict[str, Any]:
    """The work directory's state: a new one, or (``resume``) the one of the same inputs."""
    new = _state(inputs)
    state_file = work / STATE_FILE
    if resume:
        if not state_file.is_file():
            raise LsrError(f"--resume: {work} holds no adapt run to resume")
        old = json.loads(state_file.read_text(encoding="utf-8"))
        diff = [k for k in _RESUME_KEYS if old.get(k) != new[k]]
        if diff:
            raise LsrError(
                f"refusing to resume: {work} was made from other inputs ({', '.join(diff)} differ); "
                "pass --overwrite to start over"
            )
        logger.info("resuming the adapt run in %s", work)
        return old
    if work.exists() and any(work.iterdir()):
        if not overwrite:
            raise LsrError(
                f"{work} holds a previous adapt run; pass --resume to continue it or --overwrite to "
                "start over"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    _write_corpus(work / "corpus.jsonl", inputs.docs)
    write_json(state_file, new)
    return new


def _write_corpus(path: Path, docs: list[Doc]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _done(work: Path, state: dict[str, Any], step: str, seconds: float) -> None:
    state["seconds"][step] = round(seconds, 2)
    write_json(work / STATE_FILE, state)


# --- the steps ---------------------------------------------------------------------------------------------


def _run_steps(inputs: _Inputs, work: Path, state: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Prepare, continued MLM, dev before, training: each skipped when the work directory holds it."""
    from lsr.encoders.transformer import pick_device
    from lsr.train.data import load_prepared

    cfg = inputs.cfg
    device = pick_device(cfg.train.device, key="train.device")
    _prepare(cfg, work, state, progress)
    data = load_prepared(work / "prepared")
    mlm = _mlm(inputs, work, state, device, progress)
    before = _dev_before(cfg, work, data, state)
    if mlm is not None:  # the MLM phase is kept only if the dev split does not drop after it
        mlm["dev"] = _dev_of(cfg, work, data, state, "dev_after_mlm", work / "mlm")
        mlm["kept"] = mlm["dev"].get("ndcg@10", 0.0) >= before.get("ndcg@10", 0.0)
        if not mlm["kept"]:
            logger.warning("adapt: dev nDCG@10 dropped after continued MLM; training from the start model")
    init = work / "mlm" if mlm and mlm["kept"] else Path(cfg.model.init)
    summary = _train(_train_config(cfg, work, init), work, state, progress)
    return _record(inputs, data.meta, state, mlm, before, summary, str(device))


def _prepare(cfg: AdaptConfig, work: Path, state: dict[str, Any], progress: bool) -> None:
    from lsr.train.data import prepare_corpus_dataset

    if (work / "prepared" / "meta.json").is_file():
        return
    t0 = time.perf_counter()
    logger.info("adapt: pseudo-queries, BM25 negatives, teacher scores -> %s", work / "prepared")
    prepare_corpus_dataset(
        cfg.prepare, work / "corpus.jsonl", work / "prepared", overwrite=True, progress=progress
    )
    _done(work, state, "prepare", time.perf_counter() - t0)


def _mlm(
    inputs: _Inputs, work: Path, state: dict[str, Any], device: Any, progress: bool
) -> dict[str, Any] | None:
    """The continued-MLM phase (its summary), or None when it does not apply."""
    cfg = inputs.cfg
    if not cfg.adapt.mlm_steps or cfg.model.kind not in MLM_KINDS:
        return None
    if (work / "mlm" / "config.json").is_file() and "mlm" in state:
        return state["mlm"]
    from lsr.train.mlm import continued_mlm

    logger.info("adapt: %d steps of continued MLM on the corpus", cfg.adapt.mlm_steps)
    texts = [d.contents for d in inputs.docs]
    summary = continued_mlm(
        Path(cfg.model.init), texts, work / "mlm", cfg.adapt, device, cfg.train.seed, progress
    )
    state["mlm"] = summary
    _done(work, state, "mlm", summary["seconds"])
    return summary


def _train_config(cfg: AdaptConfig, work: Path, init: Path) -> Any:
    train_cfg = cfg.train_config()
    return dataclasses.replace(
        train_cfg,
        data=dataclasses.replace(train_cfg.data, prepared=str(work / "prepared")),
        model=dataclasses.replace(train_cfg.model, init=str(init)),
    )


def _dev_before(cfg: AdaptConfig, work: Path, data: Any, state: dict[str, Any]) -> dict[str, float]:
    """The start model on the dev split."""
    return _dev_of(cfg, work, data, state, "dev_before", Path(cfg.model.init))


def _dev_of(
    cfg: AdaptConfig, work: Path, data: Any, state: dict[str, Any], key: str, init: Path
) -> dict[str, float]:
    """The model in folder ``init`` on the dev split (computed once, kept in the work directory's state)."""
    if key in state:
        return state[key]
    from lsr.encoders.transformer import pick_device
    from lsr.train.model import build_model
    from lsr.train.trainer import evaluate_dev

    t0 = time.perf_counter()
    model_cfg = dataclasses.replace(cfg.model, init=str(init))
    model = build_model(model_cfg, data.doc_texts).to(pick_device(cfg.train.device, key="train.device"))
    state[key] = evaluate_dev(model, data, cfg.train_config())
    _done(work, state, key, time.perf_counter() - t0)
    logger.info("adapt: %s: %s", key, {k: round(v, 4) for k, v in state[key].items()})
    return state[key]


def _train(train_cfg: Any, work: Path, state: dict[str, Any], progress: bool) -> dict[str, Any]:
    """The trainer, resumed from ``run/checkpoint`` when there is one (a run that crashed before its
    first checkpoint starts over)."""
    from lsr.train.trainer import train

    run = work / "run"
    resume = (run / "checkpoint" / "state.json").is_file()
    if run.exists() and not resume:
        shutil.rmtree(run)
    summary = train(train_cfg, run, resume=resume, progress=progress)
    _done(work, state, "train", summary["seconds"])
    return summary


# --- method select ----------------------------------------------------------------------------------------


def _select(inputs: _Inputs, out: Path, start: float, progress: bool) -> dict[str, Any]:
    """``adapt.method: select`` (lsr.train.adapt_select): the folder's settings chosen on the corpus."""
    from lsr.train import adapt_select

    cfg = inputs.cfg
    folder = Path(cfg.model.init)
    sel = adapt_select.select(
        folder,
        inputs.docs,
        cfg.adapt.select_queries,
        cfg.prepare.seed,
        cfg.adapt.keep_start_if_worse,
        progress,
    )
    nnz = {"doc_nnz": sel["doc_nnz"]}
    record = {
        **_corpus_fields(inputs),
        "method": "select",
        "select": sel,
        "kept_start": sel["kept_start"],
        "dev": {
            "before": {"ndcg@10": sel["start"]["ndcg@10"], **nnz},
            "after": {"ndcg@10": sel["chosen"]["ndcg@10"], **nnz},
        },
        "seconds": {**sel["seconds"], "total": round(time.perf_counter() - start, 2)},
        "labels_used": False,
        "lsr_version": __version__,
        "config": to_dict(cfg),
    }
    adapt_select.write_folder(folder, out, sel["chosen"], record, select_card(record))
    return record


def _corpus_fields(inputs: _Inputs) -> dict[str, Any]:
    """The record's first fields: its format, and what was adapted from and on."""
    cfg = inputs.cfg
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": cfg.model.kind,
        "adapted_from": str(cfg.model.init),
        "corpus": inputs.corpus,
        "corpus_file": inputs.digest["file"],
        "corpus_sha256": inputs.digest["sha256"],
        "corpus_docs": inputs.n_read,
        "docs_used": len(inputs.docs),
        "known_word_share": round(inputs.known_words, 4),
    }


def _setting(entry: dict[str, Any]) -> str:
    tf = entry["tf"]
    saturation = "none" if tf is None else f"k1 {tf['k1']:g}, b {tf['b']:g}, avgdl {tf['avgdl']:g}"
    return f"tf saturation {saturation}; query_idf {entry['query_idf']:g}"


def select_card(record: dict[str, Any]) -> str:
    """README.md of a folder adapted with ``adapt.method: select``."""
    sel = record["select"]
    lines = [
        f"# {Path(record['adapted_from']).name}, adapted to {Path(record['corpus']).name}",
        "",
        f"The {record['kind']} model `{record['adapted_from']}` with its scoring settings chosen by "
        f"`lsr adapt` (method select: unsupervised, no queries or relevance labels were read, no weight "
        f"changed) for the corpus `{record['corpus']}` ({record['docs_used']} of {record['corpus_docs']} "
        f"documents used; sha256 `{record['corpus_sha256'][:16]}...`).",
        "",
        "## Use",
        "",
        "```bash",
        f"lsr index --corpus CORPUS --encoder {record['kind']}:FOLDER --out INDEX",
        "```",
        "",
        "## How",
        "",
        f"{sel['pseudo_queries']} pseudo-queries: windows of "
        f"{sel['window_words'][0]}-{sel['window_words'][1]} words cut from the corpus's documents, "
        "each relevant to its document with the window taken out; "
        f"{len(sel['grid'])} settings of the documents' tf saturation (`lsr_doc.json`) and the query IDF "
        "power (`lsr_query.json`) ranked on them (nDCG@10, exact scores):",
        "",
        "| | setting | pseudo-query nDCG@10 |",
        "|---|---|---|",
        f"| start | {_setting(sel['start'])} | {sel['start']['ndcg@10']:.4f} |",
        f"| chosen | {_setting(sel['chosen'])} | {sel['chosen']['ndcg@10']:.4f} |",
    ]
    if sel["kept_start"]:
        lines += ["", "No setting scored above the start's: the folder keeps its own settings."]
    lines += ["", "`lsr_adapt.json` holds the full record (every setting's score, the config).", ""]
    return "\n".join(lines)


# --- the output --------------------------------------------------------------------------------------------


def _record(
    inputs: _Inputs,
    prepared: dict[str, Any],
    state: dict[str, Any],
    mlm: dict[str, Any] | None,
    before: dict[str, float],
    summary: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    """``lsr_adapt.json``: what the model was adapted from and on, how, and the dev numbers."""
    cfg = inputs.cfg
    counts = prepared.get("counts", {})
    return {
        **_corpus_fields(inputs),
        "method": "train",
        "pseudo_queries": {
            "title": counts.get("pseudo_titles", 0),
            "span": counts.get("pseudo_spans", 0),
            "dev": counts.get("dev_queries", 0),
        },
        "teachers": prepared.get("teachers", []),
        "mlm": mlm,
        "steps": summary["steps"],
        "best_step": summary["best"].get("step"),
        "seconds": {**state["seconds"]},
        "device": device,
        "dev": {"before": before, "after": summary["best"]},
        "labels_used": False,
        "lsr_version": __version__,
        "config": to_dict(cfg),
    }


def _publish(inputs: _Inputs, work: Path, out: Path, record: dict[str, Any]) -> None:
    """``run/best`` (or, when ``adapt.keep_start_if_worse`` and the dev split says the adaptation did
    not help, the start model) + the adapt card and record, written beside ``out`` and renamed into
    place."""
    before, after = record["dev"]["before"], record["dev"]["after"]
    record["kept_start"] = inputs.cfg.adapt.keep_start_if_worse and after.get("ndcg@10", 0.0) < before.get(
        "ndcg@10", 0.0
    )
    tmp = out.parent / f".{out.name}.adapt-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if record["kept_start"]:
        logger.warning("adapt: the dev split scores the start model higher; the start model is kept")
        shutil.copytree(inputs.cfg.model.init, tmp, ignore=shutil.ignore_patterns("lsr_adapt.json"))
    else:
        shutil.copytree(work / "run" / "best", tmp)
        trained = json.loads((tmp / "lsr_train.json").read_text(encoding="utf-8"))
        # the trainer started from the work directory's MLM model, which is removed: name the real start
        trained.update(init=record["adapted_from"], prepared_dataset=record["corpus"], adapted=True)
        write_json(tmp / "lsr_train.json", trained)
        for name in (QUERY_FILE, DOC_FILE):  # the start model's query_idf and documents' tf carry over
            if (Path(inputs.cfg.model.init) / name).is_file():
                shutil.copy2(Path(inputs.cfg.model.init) / name, tmp / name)
    write_json(tmp / "lsr_adapt.json", record)
    (tmp / "README.md").write_text(model_card(record), encoding="utf-8")
    publish_directory(tmp, out)


def _fmt(dev: dict[str, Any], key: str, digits: int) -> str:
    value = dev.get(key)
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def model_card(record: dict[str, Any]) -> str:
    """README.md of an adapted model folder."""
    kind, before, after = record["kind"], record["dev"]["before"], record["dev"]["after"]
    enc = f"{kind}:FOLDER"
    query = " --set encoder.inference_free.query_weights=model" if kind == "inference-free" else ""
    mlm = record["mlm"]
    mlm_line = f"{mlm['steps']} steps, loss {mlm['loss_first']} -> {mlm['loss_last']}" if mlm else "none"
    if mlm and not mlm.get("kept", True):
        mlm_line += " (dropped: the dev split scored lower after it; training started from the start model)"
    pq = record["pseudo_queries"]
    worse = after.get("ndcg@10", 0.0) < before.get("ndcg@10", 0.0)
    lines = [
        f"# {Path(record['adapted_from']).name}, adapted to {Path(record['corpus']).name}",
        "",
        f"A {kind} learned sparse encoder adapted with `lsr adapt` (unsupervised: no queries or relevance "
        "labels were read) from",
        f"`{record['adapted_from']}` to the corpus `{record['corpus']}` "
        f"({record['docs_used']} of {record['corpus_docs']} documents used; "
        f"sha256 `{record['corpus_sha256'][:16]}...`).",
        "",
        "## Use",
        "",
        "```bash",
        f"lsr index --corpus CORPUS --encoder {enc}{query} --out INDEX",
        "```",
        "",
        "## How",
        "",
        f"* continued MLM on the corpus text: {mlm_line}",
        f"* pseudo-queries: {pq['title']} titles and {pq['span']} sentences of the corpus; hard negatives "
        f"mined with BM25; teachers {record['teachers']} (per-query normalized ensemble)",
        f"* training: {record['steps']} steps, best dev at step {record['best_step']}, on "
        f"{record['device']}; {record['seconds'].get('total', 0):.0f} s in all",
        "",
        f"## Dev split ({pq['dev']} held-out pseudo-queries, each with its own document as the relevant one)",
        "",
        "| model | nDCG@10 | doc nnz | query nnz | FLOPS |",
        "|---|---|---|---|---|",
    ]
    for name, dev in (("start", before), ("adapted", after)):
        lines.append(
            f"| {name} | {_fmt(dev, 'ndcg@10', 4)} | {_fmt(dev, 'doc_nnz', 1)} | "
            f"{_fmt(dev, 'query_nnz', 1)} | {_fmt(dev, 'flops', 3)} |"
        )
    if record.get("kept_start"):
        lines += [
            "",
            "**The start model is kept**: the adapted model scored below it on the dev split "
            "(adapt.keep_start_if_worse), so this folder holds the start model's weights.",
        ]
    elif worse:
        lines += ["", "**Warning**: the adapted model scores below its start on the dev split."]
    lines += ["", "`lsr_adapt.json` holds the full record (config, seconds per step).", ""]
    return "\n".join(lines)
