"""The measurement behind the sanity gate's inversion test (docs/results/ecosystem.md): for each generator as
configured, the first 256 training digits are inverted through its Euler-20 sampler and the latents compared with
N(0, I) in pixel space (digits: 64 pixels, no projection); also |z|^2/D, the latents' mean and the round-trip RMS
error. Usage, from the repository root: python docs/results/ecosystem/measure_latents.py RUNS_DIR (the folder of
docs/results/ecosystem/run.sh, the ecosystem extra installed)."""

import sys
from pathlib import Path

import torch

from bfr_fast.data import load_dataset
from bfr_fast.metrics import frechet_distance
from bfr_fast.pipelines.generators import GeneratorSpec, frozen_generator

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/examples")
cfm = {"source": "torchcfm.models.unet.unet:UNetModelWrapper", "checkpoint": runs / "torchcfm/cfm_digits.pt",
       "checkpoint_key": "ema_model", "convention": "torchcfm",
       "kwargs": {"dim": [1, 8, 8], "num_channels": 32, "num_res_blocks": 1, "channel_mult": [1, 2],
                  "class_cond": True, "num_classes": 10, "attention_resolutions": "16"}}
dif = {"source": "diffusers:UNet2DModel", "checkpoint": runs / "diffusers/unet_ema", "convention": "diffusers"}
fm = {"source": "examples.flow_matching_net:VelocityNet", "checkpoint": runs / "flow_matching/fm_digits.pt",
      "convention": "flow_matching", "kwargs": {"channels": 1, "width": 32, "num_classes": 10}}
cases = {
    "torchcfm": {**cfm}, "torchcfm, reversed time": {**cfm, "time_direction": "data-to-noise"},
    "diffusers": {**dif, "parameterization": "eps"},
    "diffusers, --ddpm-time t": {**dif, "parameterization": "eps", "ddpm_time": "t"},
    "diffusers as a velocity": {**dif},
    "flow_matching": {**fm}, "flow_matching, reversed time": {**fm, "time_direction": "data-to-noise"},
}
data = load_dataset("digits")
x, y = data.train_x[:256], data.train_y[:256]
torch.manual_seed(0)
for name, options in cases.items():
    generator = frozen_generator(GeneratorSpec(conditional=True, **options), (1, 8, 8), 10, torch.device("cpu"))
    with torch.no_grad():
        z, _ = generator.invert(x, y)
        back, _ = generator.sample(z, y)
    flat, noise = z.flatten(1).double(), torch.randn(256, 64, dtype=torch.float64)
    print(f"{name:30s} latents->noise {frechet_distance(flat.numpy(), noise.numpy()):7.3g}  "
          f"images->noise {frechet_distance(x.flatten(1).double().numpy(), noise.numpy()):5.3g}  "
          f"|z|^2/D {flat.square().mean().item():6.3g}  mean {flat.mean().item():7.3g}  "
          f"round trip {(back - x).square().mean().sqrt().item():6.3g}", flush=True)
