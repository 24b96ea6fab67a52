"""Every distance of the sanity gate (bfr_fast/pipelines/sanity.py) for the three libraries' generators of
docs/results/ecosystem.md, as configured correctly and with the mistakes users make, as a markdown table. Usage,
from the repository root with the ecosystem extra: python docs/results/ecosystem/gate_table.py RUNS_DIR (the folder
of docs/results/ecosystem/run.sh)."""

import sys
import time
from pathlib import Path

import torch

from bfr_fast.data import load_dataset
from bfr_fast.pipelines.evaluation import Scorer, build_extractor
from bfr_fast.pipelines.generators import GeneratorSpec, frozen_generator
from bfr_fast.pipelines.refinement import RefinementTask, refinement_budget
from bfr_fast.pipelines.sanity import measure_base
from bfr_fast.train.options import default_cache_dir

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/examples")
cfm = {"source": "torchcfm.models.unet.unet:UNetModelWrapper", "checkpoint": runs / "torchcfm/cfm_digits.pt",
       "checkpoint_key": "ema_model", "convention": "torchcfm",
       "kwargs": {"dim": [1, 8, 8], "num_channels": 32, "num_res_blocks": 1, "channel_mult": [1, 2],
                  "class_cond": True, "num_classes": 10, "attention_resolutions": "16"}}
dif = {"source": "diffusers:UNet2DModel", "checkpoint": runs / "diffusers/unet_ema", "convention": "diffusers"}
fm = {"source": "examples.flow_matching_net:VelocityNet", "checkpoint": runs / "flow_matching/fm_digits.pt",
      "convention": "flow_matching", "kwargs": {"channels": 1, "width": 32, "num_classes": 10}}
cases = {
    "torchcfm": {**cfm},
    "torchcfm, `--time-direction data-to-noise`": {**cfm, "time_direction": "data-to-noise"},
    "diffusers DDPM, `--parameterization eps`": {**dif, "parameterization": "eps"},
    "diffusers DDPM, `--ddpm-time t`": {**dif, "parameterization": "eps", "ddpm_time": "t"},
    "diffusers DDPM, `--parameterization` forgotten": {**dif},
    "flow_matching": {**fm},
    "flow_matching, `--time-direction data-to-noise`": {**fm, "time_direction": "data-to-noise"},
}
data = load_dataset("digits")
device = torch.device("cpu")
scorer = Scorer.of(build_extractor(data, None, default_cache_dir(), device), data)
print("| generator, configured | samples → data | samples → noise | noise → data | latents → noise | "
      "images → noise | verdict (seconds) |")
print("|---|---|---|---|---|---|---|")
for name, options in cases.items():
    start = time.perf_counter()
    generator = frozen_generator(GeneratorSpec(conditional=True, **options), data.image_shape, 10, device)
    task = RefinementTask(data, refinement_budget(data.image_shape), generator, conditional=True)
    c = measure_base(task, scorer, seed=0, device=device)
    verdict = "passes" if c.passed else ("stops: samples" if not c.samples_pass else "stops: inversion")
    print(f"| {name} | {c.samples_to_data:.3g} | {c.samples_to_noise:.3g} | {c.noise_to_data:.3g} | "
          f"{c.latents_to_noise:.3g} | {c.images_to_noise:.3g} | {verdict} ({time.perf_counter() - start:.1f}) |",
          flush=True)
