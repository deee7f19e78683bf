#!/usr/bin/env bash
# Index and search one model on the out-of-domain suite, SciFact test and SciFact dev: run files (top 100,
# exact) that scripts/runs_table.py scores. On the GPU machine (`run` with DATA carried) or on a CPU.
#
#   DATA=gpu-data2/data ENCODER=unicoil:gpu-data2/models/u1dbt3 RUNS=out/runs bash scripts/suite_runs.sh
#
# DATA holds ood/NAME (the staged ood collections), scifact/ (BEIR SciFact) and scifact-dev/ (SciFact's
# corpus and queries with qrels/dev.tsv: the 162 train queries `lsr train-prepare` holds out, seed 13, 20%).
set -euo pipefail
DATA=${DATA:?set DATA}; ENCODER=${ENCODER:?set ENCODER}; RUNS=${RUNS:?set RUNS}
WORK=${WORK:-/tmp/lsr-suite-runs}
mkdir -p "$WORK" "$RUNS"
for c in adi time med cacm lisa npl scifact; do
  ds=$DATA/ood/$c; [ "$c" = scifact ] && ds=$DATA/scifact
  lsr index --corpus "$ds" --encoder "$ENCODER" --out "$WORK/idx-$c" --overwrite --quiet \
    --set encoder.transformer.dtype=float32 > "$WORK/idx-$c.log" 2>&1 || { echo "FAILED: index $c"; tail -3 "$WORK/idx-$c.log"; }
done
search() {  # INDEX QUERIES_FOLDER SPLIT NAME
  lsr search --index "$WORK/idx-$1" --queries "$2" --split "$3" --k 100 --mode exact --out "$RUNS/$4.trec" \
    --overwrite --quiet > /dev/null 2>&1 || echo "FAILED: search $4"
}
for c in adi time med cacm lisa npl; do search "$c" "$DATA/ood/$c" test "$c"; done
search scifact "$DATA/scifact" test scifact-test
search scifact "$DATA/scifact-dev" dev scifact-dev
