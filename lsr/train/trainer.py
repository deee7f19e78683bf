"""``lsr train``: the training loop, dev evaluation, checkpoints, the best model folder.

One step: ``batch_size`` training examples (a query, its positive, ``train.negatives`` hard negatives
sampled from its prepared candidates) -> query and document vectors (bf16 autocast on CUDA) ->
the weighted ranking losses (in-batch NLL, KL, MarginMSE against the ensemble teacher) + FLOPS on
documents (and splade queries) with its quadratic warm-up -> AdamW (``optim.accumulate`` micro-batches
per step, gradient clipping, linear warm-up then linear decay; the inference-free query table and a
learned threshold have their own learning rates).

Every ``train.eval_every`` steps (and at the end): dev nDCG@10 over the whole prepared corpus
(documents encoded by the current model, scores as a dense matmul over the vocabulary), average
document / query non-zeros and FLOPS; the best model so far goes to ``OUT/best`` (a folder the lsr
encoders load), the full training state to ``OUT/checkpoint`` (``--resume`` continues from it; a
checkpoint of another model or config is refused). ``OUT/train_log.jsonl`` holds one JSON line per
log or eval event; ``OUT/summary.json`` the final numbers.

Needs torch, transformers, tokenizers, numpy: not ranx, PyStemmer or ir_datasets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsr.config import to_dict
from lsr.encoders import query_idf
from lsr.encoders.transformer import pick_device
from lsr.errors import ConfigError, LsrError
from lsr.index.io import publish_directory, write_json
from lsr.train import losses as L
from lsr.train.config import TrainConfig
from lsr.train.data import DevQuery, DevSuite, Example, PreparedData, load_prepared, load_suite
from lsr.train.mlm import WARMUP_FILE
from lsr.train.model import SparseEncoderModel, build_model, corpus_idf, save_model

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "lsr-train-checkpoint"
CHECKPOINT_VERSION = 1
# config keys that may change between a checkpoint and its resumption
RESUMABLE_KEYS = {
    "train.steps",
    "train.log_every",
    "train.eval_every",
    "train.device",
    "train.bf16",
    "train.threads",
    "train.max_dev_queries",
    "train.eval_batch_docs",
    "data.prepared",
    "prepare",
}


# --- dev evaluation ----------------------------------------------------------------------------------


def ndcg_at_k(ranked: list[list[str]], rels: list[dict[str, int]], k: int = 10) -> float:
    """Mean nDCG@k with linear gains (trec_eval and ranx's ``ndcg``); queries without a relevant
    document are left out."""
    values = []
    for docs, judged in zip(ranked, rels, strict=True):
        ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
        if not ideal:
            continue
        dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(docs[:k]) if judged.get(d, 0) > 0)
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        values.append(dcg / idcg)
    return float(np.mean(values)) if values else 0.0


def _autocast(device: torch.device, bf16: bool) -> Any:
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def encode_corpus_dense(
    model: SparseEncoderModel, texts: list[str], max_length: int, batch: int, bf16: bool
) -> torch.Tensor:
    """``[N, V]`` document vectors (float32 on the model's device), encoded in length order."""
    device = model.device
    out = torch.zeros(len(texts), model.vocab_size, device=device)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    with _autocast(device, bf16):
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            out[torch.as_tensor(idx, device=device)] = model.encode_docs(
                [texts[i] for i in idx], max_length
            ).float()
    return out


def _rank(
    model: SparseEncoderModel,
    docs: torch.Tensor,
    doc_ids: list[str],
    queries: list[DevQuery],
    cfg: TrainConfig,
    k: int,
) -> dict[str, float]:
    """nDCG@k of ``queries`` over the encoded ``docs`` (exact float dot products), query nnz, FLOPS."""
    ranked: list[list[str]] = []
    q_nnz, q_df = 0.0, torch.zeros(model.vocab_size, device=docs.device)
    idf = posting_idf(docs, cfg.model.query_idf) if cfg.model.query_idf > 0 else None
    with _autocast(model.device, cfg.train.bf16):
        for s in range(0, len(queries), 128):
            part = queries[s : s + 128]
            q = model.encode_queries([x.query for x in part], cfg.data.query_max_length).float()
            q_nnz += float((q > 0).sum())
            q_df += (q > 0).float().sum(dim=0)
            top = ((q if idf is None else q * idf) @ docs.T).topk(min(k, docs.shape[0]), dim=1)
            ranked += [[doc_ids[i] for i in row] for row in top.indices.cpu().tolist()]
    doc_df = (docs > 0).float().mean(dim=0)
    return {
        "ndcg@10": ndcg_at_k(ranked, [x.rels for x in queries], k),
        "query_nnz": q_nnz / len(queries),
        "flops": float((q_df / len(queries)) @ doc_df),
    }


def posting_idf(docs: torch.Tensor, power: float) -> torch.Tensor:
    """``idf(t) ** power`` with df(t) = t's non-zeros in the encoded ``docs`` [N, V]: the posting-list
    IDF that ``encoder.query_idf`` applies in an index of these documents, by its own table function."""
    df = (docs > 0).sum(dim=0).cpu().numpy()
    return torch.from_numpy(query_idf.idf_table(df, docs.shape[0], power)).to(docs.device)


def corpus_token_idf(model: SparseEncoderModel, texts: list[str], power: float) -> torch.Tensor:
    """``idf(t) ** power`` over the input tokens of ``texts`` (float32[vocab] on the model's device): the
    training-time stand-in for the posting-list IDF (equal to it for uniCOIL, which writes no other term)."""
    idf = corpus_idf(model.tokenizer, texts, model.vocab_size)
    return torch.from_numpy(idf.astype(np.float64) ** power).float().to(model.device)


@torch.no_grad()
def evaluate_dev(
    model: SparseEncoderModel,
    data: PreparedData,
    cfg: TrainConfig,
    k: int = 10,
    suites: list[DevSuite] | tuple[DevSuite, ...] = (),
) -> dict[str, float]:
    """Dev nDCG@10 over the whole prepared corpus, doc/query non-zeros and FLOPS; with ``suites``, each
    suite's nDCG@10 (``suite/NAME``), their mean and ``select`` (the mean of dev and the suites' mean)."""
    dev = data.dev[: cfg.train.max_dev_queries] if cfg.train.max_dev_queries else data.dev
    result = evaluate_suite(model, DevSuite("dev", data.doc_ids, data.doc_texts, dev), cfg, k)
    if suites:
        per = {s.name: evaluate_suite(model, s, cfg, k) for s in suites}
        result.update({f"suite/{name}": r["ndcg@10"] for name, r in per.items()})
        result["suite_mean"] = float(np.mean([r["ndcg@10"] for r in per.values()]))
        result["select"] = (result.get("ndcg@10", result["suite_mean"]) + result["suite_mean"]) / 2
    return result


@torch.no_grad()
def evaluate_suite(
    model: SparseEncoderModel, suite: DevSuite, cfg: TrainConfig, k: int = 10
) -> dict[str, float]:
    """Doc non-zeros of ``suite``'s encoded documents; nDCG@10, query nnz and FLOPS of its queries over
    them (when it has queries)."""
    was_training = model.training
    model.eval()
    with model.word_vocabulary(suite.doc_texts, cfg.data.eval_max_length):
        docs = _encode(model, suite.doc_texts, cfg)
        result = {"doc_nnz": float((docs > 0).sum(dim=1).float().mean())}
        if suite.queries:
            result.update(_rank(model, docs, suite.doc_ids, suite.queries, cfg, k))
    model.train(was_training)
    return result


def _encode(model: SparseEncoderModel, texts: list[str], cfg: TrainConfig) -> torch.Tensor:
    return encode_corpus_dense(
        model, texts, cfg.data.eval_max_length, cfg.train.eval_batch_docs, cfg.train.bf16
    )


# --- the loop ------------------------------------------------------------------------------------------


class Batcher:
    """Seeded epochs over the training examples; negatives sampled per example and step."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []
        self.pos = 0
        self.epoch = 0

    def next(self, size: int) -> list[int]:
        out: list[int] = []
        while len(out) < size:
            if self.pos >= len(self.order):
                self.order = self.rng.permutation(self.n).tolist()
                self.pos = 0
                self.epoch += 1
            take = min(size - len(out), len(self.order) - self.pos)
            out += self.order[self.pos : self.pos + take]
            self.pos += take
        return out

    def state(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order,
            "pos": self.pos,
            "epoch": self.epoch,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order, self.pos, self.epoch = list(state["order"]), int(state["pos"]), int(state["epoch"])


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and key != "distill.weights":
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    keys = sorted(set(a) | set(b))
    return [
        k
        for k in keys
        if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS and k.split(".")[0] not in RESUMABLE_KEYS
    ]


def _param_groups(model: SparseEncoderModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    decay, no_decay, table, tau = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name == "table":
            table.append(p)
        elif name == "mask.tau":
            tau.append(p)
        elif p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay},
        {"params": no_decay, "lr": cfg.optim.lr, "weight_decay": 0.0},
    ]
    if table:
        groups.append({"params": table, "lr": cfg.optim.query_table_lr, "weight_decay": 0.0})
    if tau:
        groups.append({"params": tau, "lr": cfg.optim.threshold_lr, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def _schedule(cfg: TrainConfig) -> Any:
    warm, total = cfg.optim.warmup_steps, cfg.train.steps

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    return factor


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = False) -> dict[str, Any]:
    """Run the training of ``cfg`` into ``out``; returns the summary (also written to summary.json)."""
    out = Path(out)
    state_meta = _checkpoint_to_resume(
        cfg, out, resume
    )  # a foreign checkpoint is refused before any model loads
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = pick_device(cfg.train.device, key="train.device")
    random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    data = _training_data(cfg)
    model = build_model(cfg.model, data.doc_texts).to(device)
    model.train()
    if state_meta is not None and state_meta["fingerprint"] != model.fingerprint():
        raise LsrError(
            f"refusing to resume: the checkpoint in {out} holds a model of another shape "
            f"(fingerprint {state_meta['fingerprint']}, this model {model.fingerprint()})"
        )
    run = _Run.start(cfg, data, model, out, device)
    out.mkdir(parents=True, exist_ok=True)
    if state_meta is not None:
        run.restore(state_meta)
    else:
        (out / "config.json").write_text(json.dumps(run.cfg_dict, indent=2) + "\n", encoding="utf-8")
    seconds = _loop(run, progress)
    return _write_summary(run, seconds)


def _checkpoint_to_resume(cfg: TrainConfig, out: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint's ``state.json`` when resuming (None otherwise), after the run-directory checks."""
    ckpt_dir = out / "checkpoint"
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(
            f"{out} already holds a training run; pass --resume to continue it, or choose another --out"
        )
    if resume and not (ckpt_dir / "state.json").is_file():
        if not (out / "config.json").is_file():
            raise LsrError(f"--resume: {ckpt_dir} holds no checkpoint")
        # a run stopped before its first checkpoint: nothing to resume, so it starts over
        logger.warning("--resume: %s holds no checkpoint yet; starting the run over from step 0", out)
        (out / "train_log.jsonl").unlink(missing_ok=True)
        resume = False
    if not cfg.data.prepared:
        raise ConfigError("data.prepared is empty: name the directory written by lsr train-prepare")
    if not resume:
        return None
    state_meta = json.loads((ckpt_dir / "state.json").read_text(encoding="utf-8"))
    if state_meta.get("format") != CHECKPOINT_FORMAT:
        raise LsrError(f"{ckpt_dir} is not an lsr training checkpoint")
    _check_same_config(state_meta["config"], to_dict(cfg), out)
    return state_meta


def _check_same_config(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    """A checkpoint resumes only with the same model section and no change outside RESUMABLE_KEYS."""
    old_model, new_model = old["model"], new["model"]
    if old_model != new_model:
        diff = [k for k in new_model if old_model.get(k) != new_model[k]]
        was = ", ".join(f"{k}={old_model.get(k)!r}" for k in diff)
        now = ", ".join(f"{k}={new_model[k]!r}" for k in diff)
        raise LsrError(
            f"refusing to resume: the checkpoint in {out} trains another model (model {was}; "
            f"this config: {now}); use another --out"
        )
    diff = _config_differences(old, new)
    if diff:
        raise LsrError(
            f"refusing to resume: the config differs from the checkpoint's in {diff}; only "
            f"{sorted(RESUMABLE_KEYS)} may change"
        )


def _training_data(cfg: TrainConfig) -> PreparedData:
    """The prepared dataset, its training examples limited to ``data.sources``, teachers checked."""
    data = load_prepared(cfg.data.prepared)
    if cfg.data.sources:
        kept = [e for e in data.train if e.source in cfg.data.sources]
        if not kept:
            raise LsrError(
                f"data.sources = {list(cfg.data.sources)}: no training example of {data.path} "
                f"comes from them (sources there: {sorted({e.source for e in data.train})})"
            )
        logger.info(
            "data.sources %s: %d of %d training examples", list(cfg.data.sources), len(kept), len(data.train)
        )
        data.train[:] = kept
    _check_teachers(cfg, data)
    return data


@dataclass
class _Run:
    """One training run: its inputs, the model and optimizer, and the state a checkpoint holds."""

    cfg: TrainConfig
    cfg_dict: dict[str, Any]
    data: PreparedData
    out: Path
    device: torch.device
    model: SparseEncoderModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    batcher: Batcher
    neg_rng: random.Random
    suites: list[DevSuite] = field(default_factory=list)
    df: torch.Tensor | None = None  # DF-FLOPS: the running document-frequency estimate per term
    q_idf: torch.Tensor | None = None  # model.query_idf: the training corpus's idf^p per term
    step: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"ndcg@10": -1.0, "step": 0})
    seconds_before: float = 0.0  # training time of the runs this one resumes

    @classmethod
    def start(
        cls, cfg: TrainConfig, data: PreparedData, model: SparseEncoderModel, out: Path, device: torch.device
    ) -> _Run:
        optimizer = torch.optim.AdamW(_param_groups(model, cfg), fused=device.type == "cuda")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
        batcher = Batcher(len(data.train), cfg.train.seed)
        neg_rng = random.Random(cfg.train.seed + 1)
        suites = [load_suite(folder, cfg.data.suite_split) for folder in cfg.data.suites]
        run = cls(cfg, to_dict(cfg), data, out, device, model, optimizer, scheduler, batcher, neg_rng, suites)
        if model.words is not None:  # terms: words: the training corpus's terms are the vocabulary
            max_length = max(cfg.data.max_length, cfg.data.eval_max_length)
            df = model.word_document_frequencies(data.doc_texts, max_length)
            logger.info("terms: words: %d terms in the training corpus", len(df))
            if cfg.model.tf_k1 > 0:
                logger.info("terms: words: documents' tf saturation %s", model.set_saturation(data.doc_texts))
            if cfg.model.query_idf > 0:
                idf = query_idf.idf_table(df, len(data.doc_texts), cfg.model.query_idf)
                run.q_idf = torch.from_numpy(idf).to(device)
        elif cfg.model.query_idf > 0:
            run.q_idf = corpus_token_idf(model, data.doc_texts, cfg.model.query_idf)
        return run

    @property
    def log_path(self) -> Path:
        return self.out / "train_log.jsonl"

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoint"

    def restore(self, state_meta: dict[str, Any]) -> None:
        """Model, optimizer, schedule, random states and counters from ``OUT/checkpoint``."""
        state = torch.load(self.ckpt_dir / "state.pt", map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.df = state.get("df")
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.step, self.best = state_meta["step"], state_meta["best"]
        self.seconds_before = state_meta.get("seconds", 0.0)
        self.batcher.load(state_meta["batcher"])
        self.neg_rng.setstate(_tuplify(state_meta["neg_rng"]))
        _truncate_log(self.log_path, self.step)
        logger.info(
            "resumed from step %d (best dev nDCG@10 %.4f at step %d)",
            self.step,
            self.best["ndcg@10"],
            self.best["step"],
        )


def _loop(run: _Run, progress: bool) -> float:
    """Optimizer steps up to ``train.steps``, with logs, dev evaluations and checkpoints; the seconds."""
    cfg = run.cfg
    start = time.perf_counter()
    acc: dict[str, float] = {}
    acc_n = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.train.steps, initial=run.step, desc=f"train {cfg.name}", unit="step")
    while run.step < cfg.train.steps:
        run.optimizer.zero_grad(set_to_none=True)
        for _ in range(cfg.optim.accumulate):
            for k, v in _micro_batch(run).items():
                acc[k] = acc.get(k, 0.0) + v
            acc_n += 1
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        run.step += 1
        if bar is not None:
            bar.update(1)
        end = run.step == cfg.train.steps
        if run.step % cfg.train.log_every == 0 or end:
            _log_train(
                run, {k: v / acc_n for k, v in acc.items()}, run.seconds_before + time.perf_counter() - start
            )
            acc, acc_n = {}, 0
        if run.step % cfg.train.eval_every == 0 or end:
            _evaluate_and_save(run, run.seconds_before + time.perf_counter() - start)
    if bar is not None:
        bar.close()
    return run.seconds_before + time.perf_counter() - start


def _micro_batch(run: _Run) -> dict[str, float]:
    """Forward and backward of ``batch_size`` examples with sampled negatives; their statistics."""
    cfg, data = run.cfg, run.data
    batch = [data.train[i] for i in run.batcher.next(cfg.train.batch_size)]
    cand_pos = [[0, *sorted(run.neg_rng.sample(range(1, len(e.cands)), cfg.train.negatives))] for e in batch]
    doc_texts = [
        data.doc_texts[_doc_index(data, e.cands[j])]
        for e, cp in zip(batch, cand_pos, strict=True)
        for j in cp
    ]
    with _autocast(run.device, cfg.train.bf16):
        q = run.model.encode_queries([e.query for e in batch], cfg.data.query_max_length)
        d = run.model.encode_docs(doc_texts, cfg.data.max_length)
    q, d = q.float(), d.float()
    penalty = _df_penalty(run, d) if cfg.loss.doc_regularizer == "df" else None
    raw = _teacher_raw_scores(cfg, batch, cand_pos, run.device)
    parts = _losses(cfg, q, d, raw, run.step, penalty, run.q_idf)
    loss = parts["loss"]
    if not torch.isfinite(loss):
        raise LsrError(
            f"step {run.step}: the loss is {float(loss)} (parts: "
            f"{ {k: float(v) for k, v in parts.items()} }); lower optim.lr"
        )
    (loss / cfg.optim.accumulate).backward()
    with torch.no_grad():
        stats = {k: float(v) for k, v in parts.items()}
        stats["doc_nnz"] = float((d > 0).sum(dim=1).float().mean())
        stats["query_nnz"] = float((q > 0).sum(dim=1).float().mean())
        stats["batch_flops"] = float((q > 0).float().mean(0) @ (d > 0).float().mean(0))
    return stats


def _teacher_raw_scores(
    cfg: TrainConfig, batch: list[Example], cand_pos: list[list[int]], device: torch.device
) -> dict[str, torch.Tensor]:
    """Raw prepared scores ``[batch, 1 + negatives]`` per weighted teacher ({} when no loss needs them)."""
    if not (cfg.loss.kl or cfg.loss.margin_mse):
        return {}
    return {
        name: torch.tensor(
            [[e.scores[name][j] for j in cp] for e, cp in zip(batch, cand_pos, strict=True)], device=device
        )
        for name, weight in cfg.distill.weights.items()
        if weight > 0
    }


def _df_penalty(run: _Run, d: torch.Tensor) -> torch.Tensor:
    """DF-FLOPS term penalties from the running DF estimate, updated with this batch's documents."""
    batch_df = (d.detach() > 0).float().mean(dim=0)
    m = run.cfg.loss.df_momentum
    run.df = batch_df if run.df is None else m * run.df + (1 - m) * batch_df
    return L.df_penalty(run.df, run.cfg.loss.df_alpha, run.cfg.loss.df_beta)


def _losses(
    cfg: TrainConfig,
    q: torch.Tensor,
    d: torch.Tensor,
    raw: dict[str, torch.Tensor],
    step: int,
    df_penalty: torch.Tensor | None = None,
    q_idf: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted ranking losses + FLOPS of one micro-batch: each part and their sum ``loss``. With
    ``q_idf`` (model.query_idf) the scores use the query weights times it; FLOPS the weights alone."""
    n_cand = 1 + cfg.train.negatives
    parts: dict[str, torch.Tensor] = {}
    loss = torch.zeros((), device=q.device)
    scored = q if q_idf is None else q * q_idf
    # before the NLL: the order of the graph's nodes is the order gradients add up in (bitwise results)
    student = L.candidate_scores(scored, d, n_cand)
    if cfg.loss.nll:
        parts.update(L.in_batch_nll(scored, d, n_cand, cfg.loss.temperature))
        loss = loss + cfg.loss.nll * parts["nll"]
    if raw:
        weights = {k: v for k, v in cfg.distill.weights.items() if v > 0}
        teacher = L.ensemble_teacher(raw, weights, cfg.distill.normalize, cfg.distill.scale)
        if cfg.loss.kl:
            parts.update(L.kl_distill(student, teacher, cfg.loss.temperature))
            loss = loss + cfg.loss.kl * parts["kl"]
        if cfg.loss.margin_mse:
            parts.update(L.margin_mse(student, teacher))
            loss = loss + cfg.loss.margin_mse * parts["margin_mse"]
    d_reg = L.l0_masked(d, cfg.loss.l0_mask_nnz)
    parts["flops_doc"] = L.flops(d_reg) if df_penalty is None else L.df_flops(d_reg, df_penalty)
    loss = loss + _flops_lambda_doc(cfg, step) * parts["flops_doc"]
    if cfg.model.kind != "inference-free":  # splade and unicoil queries come from the model
        lam_q = L.flops_lambda(cfg.loss.flops_query, step, cfg.loss.flops_warmup)
        parts["flops_query"] = L.flops(q)
        loss = loss + lam_q * parts["flops_query"]
    parts["loss"] = loss
    return parts


def _flops_lambda_doc(cfg: TrainConfig, step: int) -> float:
    return L.flops_lambda(cfg.loss.flops_doc, step, cfg.loss.flops_warmup)


def _log_train(run: _Run, means: dict[str, float], seconds: float) -> None:
    """One ``train`` line of train_log.jsonl: the micro-batch statistics averaged since the last one."""
    record = {
        "event": "train",
        "step": run.step,
        **{k: round(v, 6) for k, v in means.items()},
        "lr": run.scheduler.get_last_lr()[0],
        "lambda_doc": _flops_lambda_doc(run.cfg, run.step - 1),  # the lambda of the step just taken
        "seconds": round(seconds, 2),
    }
    if run.cfg.model.learn_threshold:
        record["threshold"] = float(run.model.mask.tau)
    _append_log(run.log_path, record)
    logger.info(
        "step %d: loss %.4f, doc nnz %.1f, query nnz %.1f",
        run.step,
        means["loss"],
        means["doc_nnz"],
        means["query_nnz"],
    )


def _evaluate_and_save(run: _Run, seconds: float) -> None:
    """Dev evaluation; the best model so far to ``OUT/best``; the checkpoint."""
    dev = evaluate_dev(run.model, run.data, run.cfg, suites=run.suites)
    _append_log(run.log_path, {"event": "eval", "step": run.step, **dev, "seconds": round(seconds, 2)})
    logger.info("step %d: dev %s", run.step, {k: round(v, 4) for k, v in dev.items()})
    if _selection(dev) > _selection(run.best) or not (run.out / "best").is_dir():
        run.best = {"step": run.step, **dev}
        _save_best(run, seconds)
    _save_checkpoint(run, seconds)


def _selection(evaluation: dict[str, Any]) -> float:
    """What checkpoints are compared on: ``select`` when suites are scored, else dev nDCG@10."""
    return float(evaluation.get("select", evaluation.get("ndcg@10", 0.0)))


def _write_summary(run: _Run, seconds: float) -> dict[str, Any]:
    """``OUT/summary.json``: steps, time, device, data sizes, the best and the last dev evaluation."""
    cfg, device = run.cfg, run.device
    final: dict[str, Any] = {}
    if run.log_path.is_file():
        evals = [json.loads(x) for x in run.log_path.read_text().splitlines() if '"eval"' in x]
        final = evals[-1] if evals else {}
    summary = {
        "name": cfg.name,
        "steps": run.step,
        "seconds": round(seconds, 2),
        "gpu_minutes": round(seconds / 60, 2) if device.type == "cuda" else 0.0,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "seconds_per_step": round(seconds / max(run.step, 1), 4),
        "train_examples": len(run.data.train),
        "dev_queries": len(run.data.dev),
        "best": run.best,
        "final": final,
        "model": str(run.out / "best"),
        "init": str(cfg.model.init),
        "kind": cfg.model.kind,
    }
    write_json(run.out / "summary.json", summary)
    return summary


def _doc_index(data: PreparedData, doc_id: str) -> int:
    if not hasattr(data, "_doc_pos"):
        data._doc_pos = {d: i for i, d in enumerate(data.doc_ids)}  # type: ignore[attr-defined]
    return data._doc_pos[doc_id]  # type: ignore[attr-defined]


def _check_teachers(cfg: TrainConfig, data: PreparedData) -> None:
    if not (cfg.loss.kl or cfg.loss.margin_mse):
        return
    used = [k for k, v in cfg.distill.weights.items() if v > 0]
    missing = [k for k in used if k not in data.teachers]
    if missing:
        raise ConfigError(
            f"distill.weights uses teacher(s) {missing}, but {data.path} holds scores of {data.teachers} only"
        )
    short = [e.qid for e in data.train if len(e.cands) - 1 < cfg.train.negatives]
    if short:
        raise ConfigError(
            f"train.negatives = {cfg.train.negatives}, but query {short[0]!r} has only "
            f"{len(data.train[0].cands) - 1} prepared negatives"
        )


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, list) else x


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    if path.is_file():
        keep = [x for x in path.read_text(encoding="utf-8").splitlines() if json.loads(x)["step"] <= step]
        path.write_text("".join(x + "\n" for x in keep), encoding="utf-8")


def _save_checkpoint(run: _Run, seconds: float) -> None:
    """``OUT/checkpoint``: model, optimizer, schedule and random states (state.pt), counters (state.json)."""
    tmp = run.ckpt_dir.parent / f".{run.ckpt_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if run.df is not None:
        state["df"] = run.df
    if run.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    torch.save(state, tmp / "state.pt")
    write_json(
        tmp / "state.json",
        {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "step": run.step,
            "best": run.best,
            "seconds": seconds,
            "fingerprint": run.model.fingerprint(),
            "config": run.cfg_dict,
            "batcher": run.batcher.state(),
            "neg_rng": run.neg_rng.getstate(),
        },
    )
    publish_directory(tmp, run.ckpt_dir)


def _save_best(run: _Run, seconds: float) -> None:
    """``OUT/best``: the model folder the lsr encoders load, with its model card and training record."""
    cfg, model, data = run.cfg, run.model, run.data
    tmp = run.out / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    threshold = (
        float(model.mask.tau.clamp(min=0)) if cfg.model.threshold or cfg.model.learn_threshold else 0.0
    )
    extra = {
        "format": "lsr-trained-model",
        "format_version": 1,
        "kind": cfg.model.kind,
        "init": str(cfg.model.init),
        "fresh_head": bool(getattr(model, "fresh_head", False)),
        "init_mlm_warmup": _warmup_record(model.init_path),
        "step": run.best["step"],
        "dev": run.best,
        "seconds": round(seconds, 2),
        "device": str(run.device),
        "doc_threshold": threshold,
        "prepared": data.meta.get("counts", {}),
        "prepared_dataset": data.meta.get("dataset"),
        "teachers": data.teachers,
        "config": run.cfg_dict,
    }
    save_model(model, tmp, model_card(cfg, data, run.best, seconds, run.device, threshold), extra)
    publish_directory(tmp, run.out / "best")


def _warmup_record(init: Path | None) -> dict[str, Any] | None:
    """The start folder's MLM warm-up record (``lsr_mlm.json``, scripts/mlm_warmup.py), if it has one."""
    path = init / WARMUP_FILE if init is not None else None
    return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else None


def model_card(
    cfg: TrainConfig,
    data: PreparedData,
    best: dict[str, Any],
    seconds: float,
    device: torch.device,
    threshold: float,
) -> str:
    """README.md of a trained model folder: data, steps, losses, hyperparameters, measured numbers."""
    digest = hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()[:12]
    inference_free = cfg.model.kind == "inference-free"
    kind_name = {"inference-free": "inference-free", "splade": "SPLADE", "unicoil": "uniCOIL"}[cfg.model.kind]
    lines = [
        f"# {cfg.name}",
        "",
        f"A {kind_name} learned sparse encoder trained with `lsr train` (config hash {digest}).",
        "",
        "## Use",
        "",
        "```bash",
        _card_command(cfg, threshold),
        "```",
        "",
        "fp16 safetensors (shards of at most 15 MB; one tensor is never split), loaded as float32."
        + (" `idf.json` holds the query token weights it was trained with." if inference_free else "")
        + (" `unicoil_head.safetensors` holds the token-weight head." if cfg.model.kind == "unicoil" else ""),
        "",
        "## Training",
        "",
        *_card_training(cfg, data),
        "",
        "## Measured (dev split, best checkpoint)",
        "",
        "| step | dev nDCG@10 | doc nnz | query nnz | FLOPS | train seconds | device |",
        "|---|---|---|---|---|---|---|",
        f"| {best.get('step')} | {best.get('ndcg@10', 0):.4f} | {best.get('doc_nnz', 0):.1f} | "
        f"{best.get('query_nnz', 0):.1f} | {best.get('flops', 0):.3f} | {seconds:.0f} | {device} |",
        "",
    ]
    return "\n".join(lines)


def _card_command(cfg: TrainConfig, threshold: float) -> str:
    """The ``lsr index`` command that uses the model folder."""
    use = (
        "lsr index --corpus CORPUS --encoder inference-free:FOLDER --set encoder.inference_free."
        "query_weights=model --out INDEX"
        if cfg.model.kind == "inference-free"
        else f"lsr index --corpus CORPUS --encoder {cfg.model.kind}:FOLDER --out INDEX"
    )
    if threshold:
        use += f" --set encoder.prune.doc_threshold={threshold:.4f}"
    return use


def _card_training(cfg: TrainConfig, data: PreparedData) -> list[str]:
    """The "Training" bullets: start, data, negatives, losses, teacher, optimizer."""
    counts = data.meta.get("counts", {})
    prep = data.meta.get("prepare", {})
    teachers = {k: v for k, v in cfg.distill.weights.items() if v > 0}
    losses = ", ".join(
        f"{k} x {getattr(cfg.loss, k)}" for k in ("nll", "kl", "margin_mse") if getattr(cfg.loss, k)
    )
    fresh_head = ""
    if cfg.model.kind == "unicoil":
        fresh_head = " (uniCOIL head: fresh unless the start is a uniCOIL folder)"
    elif cfg.model.init == "minilm":
        fresh_head = " (fresh MLM head tied to the input embeddings)"
    return [
        f"* start: `{cfg.model.init}`{fresh_head}",
        f"* data: `{data.meta.get('dataset')}` qrels `{prep.get('train_split')}` "
        f"(labels used: {prep.get('use_labels')}); {counts.get('train_queries', 0)} "
        f"labelled train queries, {counts.get('pseudo_titles', 0)} title and {counts.get('pseudo_spans', 0)} "
        f"span pseudo-queries, {counts.get('train_examples', 0)} examples; "
        f"dev: {counts.get('dev_queries', 0)} "
        f"held-out train queries; skipped (no positive / no text): {counts.get('skipped_no_positive', 0)} / "
        f"{counts.get('skipped_no_text', 0)}",
        f"* hard negatives: top {prep.get('mining_depth')} of "
        f"`{prep.get('mining_encoder')}`, positives removed; "
        f"{cfg.train.negatives} sampled per query and step",
        f"* losses: {losses} (temperature {cfg.loss.temperature:g}); FLOPS documents {cfg.loss.flops_doc}"
        f"{_card_flops_tail(cfg)}",
        *(
            [f"* scores: query weights x idf^{cfg.model.query_idf:g} of the collection (model.query_idf)"]
            if cfg.model.query_idf > 0
            else []
        ),
        *(
            ["* terms: the default BM25 analyzer's terms of the words (model.terms: words; lsr_terms.json)"]
            if cfg.model.terms == "words"
            else []
        ),
        *(
            [
                f"* documents' weights x BM25's tf saturation, k1 {cfg.model.tf_k1:g}, b {cfg.model.tf_b:g}, "
                "length reference the training corpus's mean (model.tf_k1, model.tf_b; lsr_terms.json tf)"
            ]
            if cfg.model.tf_k1 > 0
            else []
        ),
        f"* teacher: {teachers}, normalized per query ({cfg.distill.normalize}), scale {cfg.distill.scale}",
        f"* optimizer: AdamW lr {cfg.optim.lr}, weight decay {cfg.optim.weight_decay}, warm-up "
        f"{cfg.optim.warmup_steps} steps then linear decay, batch {cfg.train.batch_size} queries x "
        f"{1 + cfg.train.negatives} documents, accumulate {cfg.optim.accumulate}, {cfg.train.steps} steps, "
        f"max length {cfg.data.max_length} / {cfg.data.query_max_length}",
    ]


def _card_flops_tail(cfg: TrainConfig) -> str:
    """The rest of the losses bullet: query FLOPS (splade), warm-up, the query table (inference-free)."""
    tail = f", queries {cfg.loss.flops_query}" if cfg.model.kind != "inference-free" else ""
    tail += f" (quadratic warm-up over {cfg.loss.flops_warmup} steps)"
    if cfg.loss.doc_regularizer == "df":
        tail += f"; documents regularized with DF-FLOPS (alpha {cfg.loss.df_alpha}, beta {cfg.loss.df_beta})"
    if cfg.loss.l0_mask_nnz:
        tail += f"; l0 mask: documents of at most {cfg.loss.l0_mask_nnz} non-zeros left out of it"
    if cfg.model.kind == "inference-free":
        tail += f"; query table: {cfg.model.query_weights}"
        tail += " (learned)" if cfg.model.learn_query_weights else ""
    return tail
