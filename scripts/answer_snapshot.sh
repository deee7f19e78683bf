#!/usr/bin/env bash
# Snapshot what users see on SciFact, to compare two versions of lsr (run once per version, then diff):
# indexes built from scratch (bm25, splade, inference-free, and splade + a dense stage as the hybrid),
# run files (300 test queries, exact and safe; the hybrid re-ranked), one text query each, `lsr eval`
# reports (sparse, hybrid, dense-only), `lsr tune-fusion` on a copy, and ~270 service answers.
#
#   scripts/answer_snapshot.sh OUT_DIR INDEX_DIR          # INDEX_DIR is reused when it holds the indexes
#   for f in OLD/*; do cmp -s "$f" "NEW/${f##*/}" || echo "differs: ${f##*/}"; done
#
# Run files and text-query answers should be byte-identical across a refactor; eval reports and
# service answers differ only in timings and paths (scripts/service_answers.py drops timings).
set -euo pipefail
OUT=$1
IDX=$2
D=${LSR_SHARED_DATA:-$(dirname "$0")/../../shared/data}/beir/scifact
mkdir -p "$OUT" "$IDX"
for enc in bm25 splade inference-free; do
  [ -f "$IDX/$enc/meta.json" ] || lsr index --corpus "$D" --encoder $enc --out "$IDX/$enc" --quiet
done
if [ ! -f "$IDX/hybrid/dense/meta.json" ]; then
  rm -rf "$IDX/hybrid" && cp -r "$IDX/splade" "$IDX/hybrid" && lsr index --dense-for "$IDX/hybrid" --quiet
fi
for enc in bm25 splade inference-free hybrid; do
  for mode in exact safe; do
    lsr search --index "$IDX/$enc" --queries "$D" --split test --mode $mode --k 100 \
      --out "$OUT/$enc.$mode.trec" --overwrite --quiet
  done
  lsr search --index "$IDX/$enc" --k 5 "cancer cell therapy" > "$OUT/$enc.one.txt"
done
lsr search --index "$IDX/hybrid" --queries "$D" --split test --rerank dense --k 100 \
  --out "$OUT/hybrid.rerank.trec" --overwrite --quiet
lsr search --index "$IDX/hybrid" --rerank dense --k 5 "cancer cell therapy" > "$OUT/hybrid.rerank.one.txt"
for enc in bm25 splade inference-free; do
  lsr eval index --index "$IDX/$enc" --dataset "$D" --split test --out "$OUT/$enc.eval.json" --quiet \
    > "$OUT/$enc.eval.txt"
done
lsr eval index --index "$IDX/hybrid" --dataset "$D" --split test --rerank-stage dense \
  --out "$OUT/hybrid.eval.json" --quiet > "$OUT/hybrid.eval.txt"
lsr eval index --index "$IDX/hybrid" --dataset "$D" --split test --first-stage dense-pq \
  --out "$OUT/densepq.eval.json" --quiet > "$OUT/densepq.eval.txt"
TUNE=$(mktemp -d)
cp -r "$IDX/hybrid" "$TUNE/hybrid"
lsr tune-fusion --index "$TUNE/hybrid" --dataset "$D" --split train --quiet > "$OUT/tune.txt" 2>&1
cp "$TUNE/hybrid/dense/meta.json" "$OUT/tune.dense.meta.json"
rm -rf "$TUNE"
python "$(dirname "$0")/service_answers.py" "$IDX" "$OUT/service.json" --queries "$D"
