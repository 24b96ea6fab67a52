#!/bin/bash
# Tiny-budget runs of every recipe with the given runner; output in $1
OUT=$1; RUN=$2
C="--device cpu --cache-dir /tmp/refcache"
set -x
$RUN --out $OUT/bfr --steps 15 --base-steps 30 --num-samples 60 --sampler-steps 3 $C
$RUN --recipe flow --out $OUT/flow --steps 20 --num-samples 60 $C
$RUN --recipe defar --out $OUT/defar --steps 3 --seeds 1 --num-samples 20 --select fm,ip,defar,finetune,curve $C
$RUN --recipe defar-ablation --out $OUT/abl --steps 2 --num-samples 20 --select table6,table4 $C
$RUN --recipe defar-spectra --out $OUT/spec --steps 2 --num-samples 16 $C
$RUN --recipe bfr-alpha --out $OUT/alpha --steps 4 --num-samples 40 --sampler-steps 2 $C
$RUN --recipe bfr-transfer --out $OUT/transfer --steps 4 --num-samples 40 --sampler-steps 2 $C
$RUN --recipe ala2 --out $OUT/ala2 --data ala2:0.01:50 --steps 3 --num-samples 30 --sampler-steps 2 --batch-size 16 $C
$RUN --recipe ala2-ddpm --out $OUT/ala2ddpm --data ala2:0.01:50 --steps 3 --num-samples 30 --sampler-steps 2 --batch-size 16 $C
