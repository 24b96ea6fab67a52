#!/usr/bin/env bash
# The ecosystem write-up's runs (docs/results/ecosystem.md): each library's generator trained with its own loop,
# then refined by `python -m bfr_fast.refine` with the defaults, each step timed; then the sanity gate on the
# three convention mistakes. Run from the repository root with the ecosystem extra installed; heavy steps take
# /tmp/heavy.lock so that nothing else times beside them. Usage: [LIBS="torchcfm ..."] bash docs/results/ecosystem/run.sh RUNS_DIR
set -uo pipefail
runs=${1:-runs/examples}
here=docs/results/ecosystem
mkdir -p "$runs" "$here/logs"
export OMP_NUM_THREADS=2
timed() {  # timed NAME CMD...: /usr/bin/time -v under the lock, log and time kept in docs/results/ecosystem/logs
  local name=$1; shift
  flock -x /tmp/heavy.lock /usr/bin/time -v -o "$here/logs/$name.time" "$@" > "$here/logs/$name.log" 2>&1
  echo "$name: exit $? $(grep -E 'Elapsed' "$here/logs/$name.time")"
}
for lib in ${LIBS:-torchcfm diffusers flow_matching}; do  # LIBS: a subset to (re)train
  timed "$lib-train" python "examples/${lib}_digits.py" --out "$runs/$lib" --train-only
  # the refine command the script printed, run as a user would
  cmd=$(grep '^refine: ' "$here/logs/$lib-train.log" | sed 's/^refine: //')
  timed "$lib-refine" bash -c "$cmd"
done
cfm="torchcfm.models.unet.unet:UNetModelWrapper"
cfm_kwargs=$(python -c 'import json,sys; sys.path.insert(0,"examples"); import torchcfm_digits as m; print(json.dumps(m.NETWORK))')
common=(--data digits --class-conditional)
timed gate-torchcfm-reversed python -m bfr_fast.refine --generator "$cfm" --generator-kwargs "$cfm_kwargs" \
  --checkpoint "$runs/torchcfm/cfm_digits.pt" --checkpoint-key ema_model --convention torchcfm \
  --time-direction data-to-noise "${common[@]}" --out "$runs/gate-torchcfm-reversed"
timed gate-diffusers-ddpm-time-t python -m bfr_fast.refine --generator diffusers:UNet2DModel \
  --checkpoint "$runs/diffusers/unet_ema" --convention diffusers --parameterization eps --ddpm-time t \
  "${common[@]}" --out "$runs/gate-diffusers-ddpm-time-t"
timed gate-diffusers-no-eps python -m bfr_fast.refine --generator diffusers:UNet2DModel \
  --checkpoint "$runs/diffusers/unet_ema" --convention diffusers "${common[@]}" --out "$runs/gate-diffusers-no-eps"
timed gate-flow_matching-reversed python -m bfr_fast.refine --generator examples.flow_matching_net:VelocityNet \
  --generator-kwargs '{"channels": 1, "width": 32, "num_classes": 10}' --checkpoint "$runs/flow_matching/fm_digits.pt" \
  --convention flow_matching --time-direction data-to-noise "${common[@]}" --out "$runs/gate-flow_matching-reversed"
