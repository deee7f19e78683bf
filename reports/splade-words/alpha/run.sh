#!/usr/bin/env bash
# The WiSE-FT weight of the default splade re-selected over word terms: for each alpha, the
# interpolation alpha * splade-scifact + (1 - alpha) * splade-tiny with the default's word terms
# (lsr_terms.json without tf), lsr_query.json and lsr_doc.json (windows), then the tf x query-IDF grid
# on the ood suite and SciFact dev (scripts/word_tf_grid.py). CPU, about 5-6 minutes an alpha on 2 cores.
#   bash reports/splade-words/alpha/run.sh 0 0.25 0.5 0.75
set -euo pipefail
cd "$(dirname "$0")/../../.."
D=${DATA:-../shared/data}
O=$D/ood
WORK=${WORK:-/tmp/splade-alpha}
dev=$WORK/scifact-dev  # SciFact's corpus with the 162 held-out train queries as qrels/dev.tsv
mkdir -p "$dev/qrels"
cp "$D"/beir/scifact/{corpus,queries}.jsonl.gz "$dev/"
cp reports/ood-unicoil/scifact-dev-qrels.tsv "$dev/qrels/dev.tsv"
for a in "$@"; do
  f=$WORK/a$a
  rm -rf "$f"
  python scripts/interpolate_models.py --base models/splade-tiny --tuned lsr/models/splade-scifact --alpha "$a" --out "$f"
  python -c "import json,sys; d=json.load(open('lsr/models/splade/lsr_terms.json')); d.pop('tf'); json.dump(d, open(sys.argv[1], 'w'), indent=1)" "$f/lsr_terms.json"
  cp lsr/models/splade/lsr_query.json lsr/models/splade/lsr_doc.json "$f/"
  rm -f "$f/lsr_train.json"
  python scripts/word_tf_grid.py "$f" --datasets "$O/adi,$O/time,$O/med,$O/cacm,$O/lisa,$O/npl,$dev:dev" \
    --avgdl-corpus "$D/beir/scifact" --k1 0.5,0.75,1,1.5 --b 0.2,0.4,0.6 --powers 0.5,0.75,1 \
    --json "reports/splade-words/alpha/grid-alpha$a.json" | tee "reports/splade-words/alpha/grid-alpha$a.txt"
done
