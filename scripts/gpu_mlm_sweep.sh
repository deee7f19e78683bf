#!/bin/bash
# One GPU call: the MLM warm-up of all-MiniLM-L6-v2's fresh head on the prepared SciFact documents
# (scripts/mlm_warmup.py), then SPLADE runs side by side from the warmed folder (scripts/gpu_sweep.sh),
# stopped at $BUDGET seconds after they start, collected into $OUT by scripts/gpu_collect.py (every
# evaluation, the best run's model in 15 MB parts), with the warm-up's record and log.
#
#   OUT=$OUT STEPS=800 EVERY=200 BUDGET=370 MLM_STEPS=2000 MLM_SECONDS=80 [MLM_TRUNK=5e-5] \
#     bash scripts/gpu_mlm_sweep.sh "NAME::key=value::key=value" ...
#
# DATA (default gpu-data) holds prepared/, minilm/, data/ood/* and wheels/ (scripts/gpu_sweep.sh);
# MLM_INIT (default DATA/minilm) is the folder warmed: any BERT-like encoder without an MLM head (a uniCOIL folder too);
# WORK (default /tmp/lsr-gpu-runs) the warmed folder (WORK/minilm-mlm) and the runs. SciFact test is
# scored only when TEST names its folder. MLM_ARGS passes more flags to scripts/mlm_warmup.py. MLM_TRUNK=LR
# warms a second folder at the same time, WORK/minilm-mlm-trunk, whose transformer layers learn too (at
# LR): a run starts from it with "NAME::model.init=WORK/minilm-mlm-trunk::...".
set -u
cd "$(dirname "$0")/.."
: "${OUT:?OUT names the folder the results go to}" "${STEPS:?}" "${EVERY:?}"
export DATA=${DATA:-gpu-data} WORK=${WORK:-/tmp/lsr-gpu-runs} TEST=${TEST-}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
warm=$WORK/minilm-mlm
mkdir -p "$OUT" "$WORK"
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip.log 2>&1 || { echo "pip -e failed"; tail /tmp/pip.log; }
if compgen -G "$DATA/wheels/*.whl" > /dev/null; then
  python3 -m pip install -q --no-deps "$DATA"/wheels/*.whl 2>&1 | tail -1
fi
warmup() {  # FOLDER LOG [more flags]: one warm-up; its log (with the lsr_mlm.json record) goes to $OUT
  python3 scripts/mlm_warmup.py --init "${MLM_INIT:-$DATA/minilm}" --prepared "$DATA/prepared" --out "$1" \
    --steps "${MLM_STEPS:-2000}" --batch-size "${MLM_BATCH:-64}" --lr "${MLM_LR:-0.001}" \
    --target-nnz "${MLM_NNZ:-256}" --max-seconds "${MLM_SECONDS:-80}" ${MLM_ARGS:-} "${@:3}" > "$2" 2>&1
}
t0=$(date +%s)
warmup "$warm" "$OUT/mlm_warmup.log" &
if [ -n "${MLM_TRUNK:-}" ]; then  # at the same time: the head and the transformer layers (WORK/minilm-mlm-trunk)
  warmup "$warm-trunk" "$OUT/mlm_warmup_trunk.log" --train-trunk --trunk-lr "$MLM_TRUNK" &
fi
wait
for f in "$OUT"/mlm_warmup*.log; do echo "== $f"; cat "$f"; done
if [ ! -f "$warm/lsr_mlm.json" ]; then echo "MLM warm-up failed"; exit 1; fi
echo "== MLM warm-up: $(( $(date +%s) - t0 )) s"
BUDGET=${BUDGET:-370} INIT=$warm bash scripts/gpu_sweep.sh "$STEPS" "$EVERY" "$@"
python3 scripts/gpu_collect.py "$OUT" "$WORK" "${PACK:-best}"
ls -la "$OUT"
