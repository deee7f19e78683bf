#!/bin/bash
# Train several runs of one config side by side on one GPU (the GPU machine), each scored on the
# selection suites at every evaluation, then collect them (scripts/gpu_collect.py).
#
#   DATA=gpu CONFIG=configs/train-minilm-splade.yaml INIT=gpu/minilm \
#     bash scripts/gpu_sweep.sh STEPS EVAL_EVERY "NAME::key=value::key=value" ...
#
# DATA holds prepared/ (lsr train-prepare's output, made here on the CPU), data/scifact (TEST) and data/ood/*
# (copies of ../shared/data, which does not travel to the GPU machine). Runs go to $WORK (default
# /tmp/lsr-gpu-runs), logs to $WORK/logs. Each run loads its own copy of the model: keep
# train.eval_batch_docs small enough (64) when ten or more share the GPU's memory. BUDGET=SECONDS stops
# the runs that are still training that long after they start (each keeps its best checkpoint so far).
set -u
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip.log 2>&1 || { echo "pip failed"; tail /tmp/pip.log; }
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
steps=$1; every=$2; shift 2
data=${DATA:-gpu}; work=${WORK:-/tmp/lsr-gpu-runs}
TEST=${TEST-$data/data/scifact}  # SciFact test scored after each run (reporting only); TEST= skips it
suites="[$data/data/ood/adi,$data/data/ood/time,$data/data/ood/med,$data/data/ood/cacm,$data/data/ood/lisa,$data/data/ood/npl]"
mkdir -p "$work/logs"
for spec in "$@"; do
  name=${spec%%::*}
  python3 scripts/gpu_train.py --out "$work/packed/$name" --work "$work" \
    --run "${CONFIG:-configs/train-minilm-splade.yaml}::name=$name::${spec#*::}" \
    --set "data.prepared=$data/prepared" --set "model.init=${INIT:-$data/minilm}" --set "data.suites=$suites" \
    --set "prepare.dataset=$data/data/scifact" --set "train.steps=$steps" --set "train.eval_every=$every" \
    ${TEST:+--test-dataset "$TEST"} > "$work/logs/$name.log" 2>&1 &
done
t0=$(date +%s)
while [ -n "$(jobs -rp)" ]; do
  if [ -n "${BUDGET:-}" ] && [ $(( $(date +%s) - t0 )) -gt "$BUDGET" ]; then
    echo "budget reached: stopping the runs"
    kill -TERM $(jobs -rp) 2>/dev/null
    sleep 3
  fi
  sleep 2
done
echo "== sweep: $(( $(date +%s) - t0 )) s"
for f in "$work"/logs/*.log; do echo "== $f"; grep -E "Error|== |Traceback" "$f" | tail -3; done
