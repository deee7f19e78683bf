"""SIGKILL at random moments: does every command leave its artifact intact or resumable?

    python scripts/kill_trials.py --trials index=40,reload=30,encode=15,train=15 --json kill_trials.json

Each trial starts a command, kills it (SIGKILL) after a random delay drawn from [0, its uninterrupted
duration] (measured by a reference run, then again by every trial that finishes before its kill: the
window follows the machine's load; encode and train: from the moment their work folder appears, past
the imports and the model load, so the kill lands in the work itself), then checks:

- ``index``: ``lsr index --corpus B --overwrite`` over an index of corpus A. Recovered: the index
  opens and answers like A's (old intact) or like a reference index of B (new complete), and
  ``lsr verify`` finds nothing damaged.
- ``encode``: ``lsr encode`` (splade-tiny, 300 docs cut to 128 tokens, a shard every 30 docs), then
  the same command again to the end. Recovered: the vectors verify and equal an uninterrupted run's
  (ids, vocabulary, term ids exactly; weights within 1e-5 relative; the rows count exact-equal weights
  too); resumed: the second run kept the killed one's complete shards.
- ``train``: ``lsr train`` on configs/train-toy.yaml (a tiny random model, 20 steps, a checkpoint every
  5), then again with ``--resume``. Recovered: the trained model (``OUT/best``) equals an uninterrupted
  run's within 1e-4; resumed: from a checkpoint (else it started over).
- ``reload``: ``lsr serve`` while a client posts reloads of its index in a loop; killed mid-reload, the
  index verifies, opens and answers as before, and a restarted service answers the same.

Prints a table by command (trials, killed, recovered, lost, resumed) and writes JSON. Needs
../shared/data (SciFact) and models/splade-tiny (scripts/fetch_models.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact"
SPLADE_TINY = REPO / "models" / "splade-tiny"
LSR = [sys.executable, "-m", "lsr.cli"]
QUERIES = ["vitamin d deficiency", "coffee and cancer risk", "gene expression in t cells", "aspirin"]


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)


def timed(cmd: list[str], started: Callable[[], bool] | None = None) -> tuple[float, float]:
    """Run ``cmd`` to the end: (seconds in all, seconds after ``started()`` first held)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mark = _wait_for(proc, started) if started is not None else t0
    _, err = proc.communicate()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, stderr=err)
    end = time.perf_counter()
    return end - t0, end - mark


def _wait_for(proc: subprocess.Popen, started: Callable[[], bool]) -> float:
    """Poll until ``started()`` holds or ``proc`` exits; return the time then."""
    while not started() and proc.poll() is None:
        time.sleep(0.005)
    return time.perf_counter()


def kill_after(cmd: list[str], delay: float, started: Callable[[], bool] | None = None) -> tuple[bool, float]:
    """Start ``cmd``, SIGKILL it ``delay`` s after it starts (or after ``started()`` first holds: the
    work itself, past the imports and model loading). Returns (killed, seconds): True if it was killed
    (not finished before); when it finished, how long it took from that start (a fresh measure of the
    uninterrupted duration: the trials draw their next delay from it, so the kill window follows the
    machine's speed as its load changes)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mark = time.perf_counter()
    try:
        if started is not None:
            mark = _wait_for(proc, started)
        proc.wait(max(0.0, delay - (time.perf_counter() - mark)))
        return False, time.perf_counter() - mark
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True, delay


def verify_problems(path: Path) -> list[str]:
    """What ``lsr verify PATH`` reports damaged (checksums of every file, then the structure)."""
    from lsr.verify import verify

    return [f"{p}: {what}" for p, what in verify(path).problems]


def write_corpus(path: Path, start: int, stop: int) -> Path:
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        lines = [line for i, line in enumerate(f) if start <= i < stop]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def answers(index: Path) -> list[list[str]]:
    from lsr.api import Index

    opened = Index.load(index)
    return [[hit.doc_id for hit in opened.search(q, k=10)] for q in QUERIES]


# --- index --overwrite ---------------------------------------------------------------------------


class IndexTrials:
    def __init__(self, work: Path, docs: int = 3000):
        self.work = work / "index"
        self.work.mkdir(parents=True, exist_ok=True)
        self.corpus_a = write_corpus(self.work / "a.jsonl", 0, docs // 2)
        self.corpus_b = write_corpus(self.work / "b.jsonl", docs // 6, docs + docs // 6)
        self.old = self._build(self.corpus_a, self.work / "old")
        self.ref = self._build(self.corpus_b, self.work / "ref-b")
        self.old_answers, self.new_answers = answers(self.old), answers(self.ref)
        self.seconds = timed(self._cmd(self.work / "timing", self.corpus_b))[0]

    def _cmd(self, out: Path, corpus: Path) -> list[str]:
        return [*LSR, "index", "--corpus", str(corpus), "--encoder", "bm25", "--out", str(out), "--overwrite",
                "--quiet"]  # fmt: skip

    def _build(self, corpus: Path, out: Path) -> Path:
        if not (out / "meta.json").is_file():
            run(self._cmd(out, corpus))
        return out

    def trial(self, rnd: random.Random, trial_dir: Path) -> dict[str, Any]:
        target = trial_dir / "idx"
        shutil.copytree(self.old, target)
        killed, took = kill_after(self._cmd(target, self.corpus_b), rnd.uniform(0, self.seconds))
        self.seconds = self.seconds if killed else took
        try:
            got = answers(target)
        except Exception as exc:
            return {"killed": killed, "recovered": False, "state": f"{type(exc).__name__}: {exc}"[:200]}
        state = "old" if got == self.old_answers else "new" if got == self.new_answers else "wrong answers"
        problems = verify_problems(target)
        litter = sorted(p.name for p in trial_dir.iterdir() if p.name.startswith("."))
        recovered = state != "wrong answers" and not problems
        return {
            "killed": killed,
            "recovered": recovered,
            "state": state,
            "verify": problems,
            "litter": litter,
        }


# --- encode, resumed -----------------------------------------------------------------------------


def load_vectors(path: Path) -> dict[str, Any]:
    from lsr.vectors import Vectors

    vectors = Vectors(path)
    batches = list(vectors.batches())
    return {
        "ids": list(vectors.iter_ids()),
        "vocab": vectors.vocab(),
        "indptr": [np.asarray(b.indptr) for b in batches],
        "terms": np.concatenate([b.term_ids for b in batches]),
        "weights": np.concatenate([b.weights for b in batches]),
    }


class EncodeTrials:
    """splade-tiny over ``docs`` SciFact docs cut to 128 tokens, shards of ``shard`` docs, read ahead
    ``shard`` at a time (so a shard is written every ``shard`` docs, not all at the end); the kill lands
    at a random moment of the encoding itself, timed from the moment the encode's work folder appears
    (after the imports and the model load, which are the same at every kill)."""

    def __init__(self, work: Path, docs: int = 300, shard: int = 30):
        self.work = work / "encode"
        self.work.mkdir(parents=True, exist_ok=True)
        self.corpus = write_corpus(self.work / "c.jsonl", 0, docs)
        self.shard = shard
        ref = self.work / "ref"
        shutil.rmtree(ref, ignore_errors=True)
        self.seconds = timed(self._cmd(ref), self._started(ref))[1]
        self.ref = load_vectors(ref)

    def _cmd(self, out: Path) -> list[str]:
        return [
            *LSR, "encode", "--encoder", str(SPLADE_TINY), "--corpus", str(self.corpus), "--out", str(out),
            "--set", f"encoder.shard_docs={self.shard}", "--set",
            f"encoder.transformer.sort_docs={self.shard}", "--set", "encoder.transformer.max_length=128",
            "--overwrite", "--quiet",
        ]  # fmt: skip

    @staticmethod
    def _started(out: Path) -> Callable[[], bool]:
        return lambda: partial_dir(out).exists() or out.exists()

    def trial(self, rnd: random.Random, trial_dir: Path) -> dict[str, Any]:
        out = trial_dir / "vectors"
        killed, took = kill_after(self._cmd(out), rnd.uniform(0, self.seconds), self._started(out))
        self.seconds = self.seconds if killed else took
        kept = kept_docs(partial_dir(out))
        try:
            run(self._cmd(out))
            got = load_vectors(out)
        except Exception as exc:
            return {"killed": killed, "recovered": False, "state": f"{type(exc).__name__}: {exc}"[:300]}
        ref = self.ref
        same = (
            got["ids"] == ref["ids"]
            and got["vocab"] == ref["vocab"]
            and np.array_equal(got["terms"], ref["terms"])
            and np.allclose(got["weights"], ref["weights"], rtol=1e-5, atol=0)
        )  # fmt: skip
        exact = same and np.array_equal(got["weights"], ref["weights"])
        resumed = json.loads((out / "meta.json").read_text()).get("resumed_from_doc", 0)
        problems = verify_problems(out)
        return {"killed": killed, "recovered": bool(same) and not problems, "kept_docs": kept,
                "resumed_from_doc": resumed, "exact": bool(exact), "verify": problems}  # fmt: skip


def partial_dir(out: Path) -> Path:
    from lsr.vectors import partial_dir as lsr_partial_dir

    return lsr_partial_dir(out)


def kept_docs(partial: Path) -> int:
    """Docs of complete shards a killed encode left for the next run (0: it starts over)."""
    try:
        return int(json.loads((partial / "progress.json").read_text())["n_docs"])
    except (OSError, ValueError, KeyError):
        return 0


# --- train, resumed ------------------------------------------------------------------------------


def model_tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


class TrainTrials:
    def __init__(self, work: Path):
        sys.path.insert(0, str(REPO / "tests" / "unit" / "encoders"))
        from tiny_models import make_mlm

        self.work = work / "train"
        self.work.mkdir(parents=True, exist_ok=True)
        self.model = self.work / "tiny-mlm"
        if not self.model.exists():
            make_mlm(self.model)
        self.prepared = self.work / "prepared"
        if not self.prepared.exists():
            toy = ["--config", "configs/train-toy.yaml", "--set", "prepare.dataset=tests/data/train-tiny"]
            run([*LSR, "train-prepare", *toy, "--out", str(self.prepared), "--quiet"], cwd=REPO)
        ref = self.work / "ref"
        shutil.rmtree(ref, ignore_errors=True)
        self.seconds = timed(self._cmd(ref), self._started(ref))[1]
        self.ref = model_tensors(ref / "best")

    def _cmd(self, out: Path, resume: bool = False) -> list[str]:
        # a checkpoint every 5 of the 20 steps: most kills find one to resume from
        return [*LSR, "train", "--config", str(REPO / "configs" / "train-toy.yaml"), "--set",
                f"data.prepared={self.prepared}", "--set", f"model.init={self.model}", "--set",
                "train.eval_every=5", "--out", str(out), "--quiet",
                *(["--resume"] if resume else [])]  # fmt: skip

    @staticmethod
    def _started(out: Path) -> Callable[[], bool]:
        return lambda: (out / "config.json").exists()  # written once the model and data are loaded

    def trial(self, rnd: random.Random, trial_dir: Path) -> dict[str, Any]:
        out = trial_dir / "run"
        killed, took = kill_after(self._cmd(out), rnd.uniform(0, self.seconds), self._started(out))
        self.seconds = self.seconds if killed else took
        step = checkpoint_step(out)
        try:
            if killed:  # --resume also starts over a run killed before its first checkpoint
                run(self._cmd(out, resume=True))
            got = model_tensors(out / "best")
        except Exception as exc:
            err = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else str(exc)
            return {"killed": killed, "recovered": False, "state": f"{type(exc).__name__}: {err}"[-300:]}
        diff = max(float(np.abs(got[k].astype(np.float64) - self.ref[k]).max()) for k in self.ref)
        same = set(got) == set(self.ref) and diff <= 1e-4
        return {"killed": killed, "recovered": same, "resumed_from_step": step, "max_abs_diff": diff}


def checkpoint_step(out: Path) -> int:
    """The step of the checkpoint a killed run left (0: none, the resumed run starts over)."""
    try:
        return int(json.loads((out / "checkpoint" / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


# --- service killed during reloads -----------------------------------------------------------------


def free_port(lo: int = 18200, hi: int = 18250) -> int:
    for port in range(lo, hi):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {lo}-{hi - 1}")


class ReloadTrials:
    def __init__(self, work: Path, index: Path):
        self.index = index
        self.before = answers(index)

    def _serve(self, port: int) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "LSR_API_KEY"}
        cmd = [
            *LSR,
            "serve",
            "--index",
            f"idx={self.index}",
            "--port",
            str(port),
            "--no-access-log",
            "--quiet",
        ]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def _ready(self, url: str, proc: subprocess.Popen) -> None:
        import httpx

        end = time.monotonic() + 120
        while time.monotonic() < end and proc.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the service did not become ready")

    def _served_answers(self, url: str) -> list[list[str]]:
        import httpx

        out = []
        for q in QUERIES:
            hits = httpx.post(f"{url}/v1/search", json={"query": q, "k": 10}, timeout=30).json()["hits"]
            out.append([h["id"] for h in hits])
        return out

    def trial(self, rnd: random.Random, trial_dir: Path) -> dict[str, Any]:
        import httpx

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = self._serve(port)
        try:
            self._ready(url, proc)
            end = time.monotonic() + rnd.uniform(0.05, 2.0)
            reloads = 0
            with httpx.Client(timeout=30) as client:
                while time.monotonic() < end:
                    client.post(f"{url}/v1/indexes/idx/reload", json={})
                    reloads += 1
                    # the kill lands inside a reload: one more is sent and the process killed while it runs
                client_proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        f"import httpx; httpx.post('{url}/v1/indexes/idx/reload', json={{}})",
                    ],
                    stderr=subprocess.DEVNULL,  # refused or cut off by the kill: expected
                )
                time.sleep(rnd.uniform(0, 0.3))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                client_proc.wait()
            problems = verify_problems(self.index)
            intact = answers(self.index) == self.before and not problems
            proc = self._serve(port)
            self._ready(url, proc)
            served = self._served_answers(url) == self.before
            return {"killed": True, "recovered": intact and served, "reloads": reloads, "verify": problems}
        except Exception as exc:
            return {"killed": True, "recovered": False, "state": f"{type(exc).__name__}: {exc}"[:300]}
        finally:
            proc.kill()
            proc.wait()


def run_trials(name: str, make: Callable[[], Any], n: int, work: Path, rnd: random.Random) -> dict[str, Any]:
    t0 = time.perf_counter()
    trials = make()
    setup = time.perf_counter() - t0
    rows = []
    for i in range(n):
        trial_dir = work / "trials" / f"{name}-{i}"
        shutil.rmtree(trial_dir, ignore_errors=True)
        trial_dir.mkdir(parents=True)
        row = trials.trial(rnd, trial_dir)
        rows.append(row)
        shutil.rmtree(trial_dir, ignore_errors=True)
        print(f"  {name} {i}: {row}", flush=True)
    return {
        "command": name, "trials": n, "killed": sum(r["killed"] for r in rows),
        "recovered": sum(r["recovered"] for r in rows), "lost": sum(not r["recovered"] for r in rows),
        "resumed": sum(r["killed"] and bool(r.get("kept_docs") or r.get("resumed_from_step")) for r in rows),
        "setup_s": round(setup, 1), "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="index=40,encode=30,train=15,reload=20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lsr-kill-trials"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = {k: int(v) for k, v in (item.split("=") for item in args.trials.split(","))}
    rnd = random.Random(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    makers: dict[str, Callable[[], Any]] = {
        "index": lambda: IndexTrials(args.work),
        "encode": lambda: EncodeTrials(args.work),
        "train": lambda: TrainTrials(args.work),
        "reload": lambda: ReloadTrials(args.work, IndexTrials(args.work).old),
    }
    results = []
    for name, n in counts.items():
        results.append(run_trials(name, makers[name], n, args.work, rnd))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    heads = ("trials", "killed", "recovered", "lost", "resumed", "seconds")
    widths = (6, 6, 9, 4, 7, 8)
    print(f"{'command':<8} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    for r in results:  # killed: the kill landed before the command finished; resumed: from kept work
        cells = (r["trials"], r["killed"], r["recovered"], r["lost"], r["resumed"], r["seconds"])
        print(f"{r['command']:<8} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    return 1 if any(r["lost"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
