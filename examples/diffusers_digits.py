"""A diffusers DDPM on digits, trained with diffusers' own loop and refined by the CLI with flags alone.

The network is diffusers' ``UNet2DModel`` (ε-prediction, ``class_labels=``, returns ``.sample``), trained on
``DDPMScheduler``'s linear 1000-step schedule with an ``EMAModel``, and saved as diffusers' training scripts save
it: ``save_pretrained`` folders of the network (``unet``) and of its EMA weights (``unet_ema``), and the EMA's
state (``ema_state.pt``). The refiners take the EMA folder and sample the DDPM through its probability-flow ODE.
Run from the repository root: ``python examples/diffusers_digits.py --out runs/examples/diffusers`` (the
``ecosystem`` extra).
"""

from __future__ import annotations

import torch
from _common import digits_batches, parser, refine
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel


def main() -> int:
    args = parser(__doc__.splitlines()[0], steps=1500).parse_args()
    torch.manual_seed(args.seed)
    batches, num_classes = digits_batches(128, args.seed)
    model = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
                        num_class_embeds=num_classes)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    ema = EMAModel(model.parameters(), decay=0.999, model_cls=UNet2DModel, model_config=model.config)
    optim = torch.optim.AdamW(model.parameters(), lr=2e-3)
    warmup = torch.optim.lr_scheduler.LambdaLR(optim, lambda step: min(step, 100) / 100)
    for step in range(1, args.steps + 1):
        x, y = next(batches)
        noise = torch.randn_like(x)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (x.shape[0],))
        noisy = scheduler.add_noise(x, noise, timesteps)
        loss = torch.nn.functional.mse_loss(model(noisy, timesteps, class_labels=y).sample, noise)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        warmup.step()
        ema.step(model.parameters())
        if step % 250 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out / "unet")
    torch.save(ema.state_dict(), args.out / "ema_state.pt")
    ema.copy_to(model.parameters())
    model.save_pretrained(args.out / "unet_ema")
    return refine(["--generator", "diffusers:UNet2DModel", "--checkpoint", str(args.out / "unet_ema"),
                   "--convention", "diffusers", "--parameterization", "eps", "--class-conditional"],
                  args.out, args.train_only)


if __name__ == "__main__":
    raise SystemExit(main())
