#!/usr/bin/env bash
# One device run: held-out models, distilled guards, then the realism sweep. Everything lands in $OUT.
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s)
el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
mkdir -p /tmp/pkg /tmp/data "$OUT"
cp -r atgan_plugin /tmp/pkg/ && cp -r adapters /tmp/pkg/atgan_plugin/adapters && cp -r vendored /tmp/pkg/atgan_plugin/vendored
# No foolbox/advertorch there: the lab needs neither, so a minimal package __init__.
echo '__version__ = "lab"' > /tmp/pkg/atgan_plugin/__init__.py
export PYTHONPATH=/tmp/pkg ATGAN_PKG=/tmp/pkg ATGAN_DATA=/tmp/data
cp .gpu/data/*.gz /tmp/data/ && for f in .gpu/data/*.xz; do xz -dc "$f" > "/tmp/data/$(basename "$f" .xz)"; done
nvidia-smi -L || true; python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"
cd .gpu
M=/tmp/m; mkdir -p $M $OUT/logs
el "stage 1: held-out models and distilled guards (parallel)"
for name in user_normal user_pgd oracle_ind features; do
  timeout 230 python3 lab.py models --names $name --epochs-scale ${SCALE:-1} --out $M --device ${DEVICE:-cuda} > $OUT/logs/models_$name.log 2>&1 &
done
timeout 230 python3 lab.py distill --names distilled,distilled_s,distilled_e2 --epochs-scale ${SCALE:-1} --out $M --device ${DEVICE:-cuda} > $OUT/logs/distill.log 2>&1 &
wait
el "stage 1 done"; cat $OUT/logs/*.log | grep -v "^epoch" | tail -20; grep -h "^epoch" $OUT/logs/models_*.log | tail -12
ls -la $M
el "stage 2: baseline"
timeout 60 python3 lab.py baseline --models $M --out $OUT --device ${DEVICE:-cuda} --targets user_normal,user_pgd,B-nor,B-iter --n ${N:-5000} > $OUT/logs/baseline.log 2>&1
cat $OUT/logs/baseline.log | cut -c1-600
el "stage 3: sweep"
timeout ${SWEEP_S:-300} python3 lab.py sweep --models $M --out $OUT/sweep --device ${DEVICE:-cuda} --workers ${WORKERS:-14} --steps ${STEPS:-500} --n ${N:-5000} --configs ${CONFIGS:-all} \
  --targets user_normal,user_pgd,B-nor,B-iter --grids > $OUT/logs/sweep.log 2>&1
el "sweep done: $(wc -l < $OUT/sweep/sweep.jsonl) rows"
cd $OUT
mv sweep/sweep.jsonl . ; tar cf grids.tar -C sweep . && rm -rf sweep
tar cf models.tar -C $M . ; tar cf logs.tar logs && rm -rf logs
ls -la $OUT
el "all done"
