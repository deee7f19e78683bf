#!/usr/bin/env bash
# bm25+MODEL on the ood suite and SciFact (dev and test), at several model weights: what
# reports/ood-plus was measured with (on the GPU machine: `run` with DATA carried).
#
#   DATA=gpu-data MODELS="unicoil splade inference-free" WEIGHTS="0.25 0.5 0.75 1.0" OUT=runs-out \
#       bash scripts/gpu_plus.sh
#
# DATA holds ood/NAME (the staged ood collections), scifact/ (BEIR SciFact) and scifact-dev/qrels/dev.tsv
# (the 162 train queries `lsr train-prepare` holds out: seed 13, 20%). Each corpus is indexed once per
# model; the weight is the query side's (encoder.plus.model_weight in meta.json), so each weight
# searches a copy of the index with that value written into its meta. Runs (top 100, exact) are
# tarred into OUT/runs-MODEL.tgz; scripts/plus_report.py scores them.
set -euo pipefail
DATA=${DATA:-gpu-data}; MODELS=${MODELS:-unicoil}; WEIGHTS=${WEIGHTS:-0.25 0.5 0.75 1.0}
WORK=${WORK:-/tmp/lsr-plus}; OUT=${OUT:?set OUT}
DATASETS="adi time med scifact-dev scifact-test cacm lisa npl"
mkdir -p "$WORK/idx" "$OUT"
cp "$DATA"/scifact/*.gz "$DATA/scifact-dev/"

folder() {  # dataset name -> BEIR folder and qrels split
  case $1 in
    scifact-dev) echo "$DATA/scifact-dev dev" ;;
    scifact-test) echo "$DATA/scifact test" ;;
    *) echo "$DATA/ood/$1 test" ;;
  esac
}
build_one() {  # MODEL CORPUS_NAME
  local ds=$DATA/ood/$2; [ "$2" = scifact ] && ds=$DATA/scifact
  lsr index --corpus "$ds" --encoder "bm25+$1" --out "$WORK/idx/$1-$2" --quiet \
    --set encoder.transformer.dtype=float32 > /dev/null 2>&1 || echo "FAILED: build $1 $2"
}
search_one() {  # MODEL WEIGHT DATASET
  local name=$3 corpus=${3%-dev}; corpus=${corpus%-test}
  read -r ds split <<< "$(folder "$name")"
  local idx=$WORK/idx/$1-w$2-$corpus
  if [ ! -d "$idx" ]; then
    local tmp=$idx.tmp.$BASHPID
    cp -r "$WORK/idx/$1-$corpus" "$tmp"
    python3 -c "import json,sys; p=sys.argv[1]+'/meta.json'; m=json.load(open(p)); \
m['encoder']['plus']['model_weight']=float(sys.argv[2]); json.dump(m,open(p,'w'))" "$tmp" "$2"
    mv -T "$tmp" "$idx" 2> /dev/null || rm -rf "$tmp"
  fi
  lsr search --index "$idx" --queries "$ds" --split "$split" --k 100 --mode exact \
    --out "$WORK/runs-$1/plus-$1-w$2-$name.trec" --overwrite --quiet > /dev/null 2>&1 || echo "FAILED: search $*"
}
export -f folder build_one search_one; export DATA WORK
for m in $MODELS; do for c in adi time med scifact cacm lisa npl; do echo "$m $c"; done; done \
  | xargs -P "$(nproc)" -L 1 bash -c 'build_one $0 $1'
for m in $MODELS; do
  mkdir -p "$WORK/runs-$m"
  for w in $WEIGHTS; do for d in $DATASETS; do echo "$m $w $d"; done; done \
    | xargs -P 12 -L 1 bash -c 'search_one $0 $1 $2'
  tar czf "$OUT/runs-$m.tgz" -C "$WORK" "runs-$m"
done
