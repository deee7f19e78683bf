#!/bin/bash
# bm25+MODEL at each model weight: the six ood collections and SciFact test, then SciFact dev
# (the 162 train queries `lsr train-prepare` holds out), exact search, top 100, through `lsr eval`.
#   SCIFACT_DEV=/tmp/scifact-dev bash reports/ood-plus/weights-2026-12-03/run.sh bm25+splade@0.25 bm25+unicoil@0.5 ...
# SCIFACT_DEV: SciFact's corpus.jsonl.gz and queries.jsonl.gz with reports/ood-unicoil/scifact-dev-qrels.tsv
# as qrels/dev.tsv. Writes SYSTEM-WEIGHT.json and SYSTEM-WEIGHT-dev.json beside this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CACHE:-/tmp/plus-cache}
for spec in "$@"; do
  system=${spec%@*} weight=${spec#*@}
  out=$here/$system-$weight
  lsr eval systems --systems "$system" --datasets ood,scifact --k 100 --mode exact --cache-dir "$cache" \
    --set encoder.plus.model_weight="$weight" --out "$out.json" --quiet
  lsr eval systems --systems "$system" --datasets "$SCIFACT_DEV" --split dev --k 100 --mode exact \
    --cache-dir "$cache" --set encoder.plus.model_weight="$weight" --out "$out-dev.json" --quiet
done
