#!/usr/bin/env bash
# `lsr adapt` (method select, the default for SPLADE folders) of a SPLADE model on each out-of-domain
# collection's documents alone (no queries, no qrels), then `lsr eval` of the start model and the adapted
# folder on that collection's test qrels (paired t-test, Holm). CPU, about 25 minutes on 2 cores for the
# default splade.
#
#   ENCODER=splade OUT=reports/adapt-select WORK=/tmp/adapt-select bash scripts/adapt_select_ood.sh
set -euo pipefail
ENCODER=${ENCODER:-splade}; OUT=${OUT:?set OUT}; WORK=${WORK:-/tmp/lsr-adapt-select}
DATA=${DATA:-../shared/data/ood}
kind=${ENCODER%%:*}
mkdir -p "$WORK" "$OUT"
for c in adi time med cacm lisa npl; do
  lsr adapt --encoder "$ENCODER" --corpus "$DATA/$c" --out "$WORK/$c" --overwrite --quiet
  cp "$WORK/$c/lsr_adapt.json" "$OUT/$c-lsr_adapt.json"
  lsr eval systems --systems "$ENCODER,$kind:$WORK/$c" --datasets "ood-$c" --k 100 \
    --cache-dir "$WORK/cache" --report-dir "$OUT/$c" --quiet
done
