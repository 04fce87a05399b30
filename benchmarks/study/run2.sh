#!/usr/bin/env bash
# Device run 2: the blend sweep on the models of run 1 (carried in .gpu/m).
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s)
el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
mkdir -p /tmp/pkg /tmp/data "$OUT"
cp -r atgan_plugin /tmp/pkg/ && cp -r adapters /tmp/pkg/atgan_plugin/adapters && cp -r vendored /tmp/pkg/atgan_plugin/vendored
echo '__version__ = "lab"' > /tmp/pkg/atgan_plugin/__init__.py
export PYTHONPATH=/tmp/pkg ATGAN_PKG=/tmp/pkg ATGAN_DATA=/tmp/data
cp .gpu/data/*.gz /tmp/data/ && xz -dc .gpu/data/t10k-images-idx3-ubyte.xz > /tmp/data/t10k-images-idx3-ubyte
cd .gpu
el "sweep"
timeout ${SWEEP_S:-250} python3 lab.py sweep --models m --out $OUT/sweep --device ${DEVICE:-cuda} --workers ${WORKERS:-15} \
  --steps ${STEPS:-500} --n ${N:-5000} --configs ${CONFIGS:-all} --targets ${TARGETS:-user_normal,user_pgd,B-iter,B-nor} --grids \
  > $OUT/sweep.log 2>&1
el "sweep done: $(wc -l < $OUT/sweep/sweep.jsonl) rows"
cd $OUT && mv sweep/sweep.jsonl . && tar cf grids.tar -C sweep . && rm -rf sweep
el "all done"
