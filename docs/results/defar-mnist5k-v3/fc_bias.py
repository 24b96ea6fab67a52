"""Does DEFAR's FC weight depend on the sample's own regression residual? (docs/results/defar-mnist5k-v3)

On the linear path, x_hat - x_{t_e} = (t_e - t_s) (v(x_{t_s}) - u) with u = x_1 - x_0: the simulated state is off the
sample's path by its own residual, so the exposure bias delta = v(x_hat, t_e) - v(x_{t_e}, t_e) is that residual
carried through the network. A weight built from |delta| then weighs each pixel's error by (a transform of) that
same error, and the minimiser of E[W (v - u)^2 | x_t], E[W u | x_t] / E[W | x_t], is no longer the conditional mean
E[u | x_t] that transports the noise to the data.

This measures it on a network: per t_s band, the mean over images of the Pearson correlation (over pixels) between
the FC weight W and the residual |v - u|, and the FC-weighted MSE over the plain MSE (1 where W is independent of the
error). The draws (t_s ~ U(0, 1), t_e ~ U(t_s, 1), W normalised to mean 1, gamma = 1) are DEFARLoss's defaults.

    python docs/results/defar-mnist5k-v3/fc_bias.py runs/i28-ftabl/checkpoints/fm-seed0.pt > fc-bias.json
"""

from __future__ import annotations

import json
import sys

import torch

from bfr_fast.checkpoint import load
from bfr_fast.data import mnist5k
from bfr_fast.losses.simulation import simulation_times
from bfr_fast.ops import fc_weighted_mse
from bfr_fast.pipelines.presets import image_preset

BANDS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
IMAGES = 1000
GAMMA = 1.0


def ema_network(path: str) -> torch.nn.Module:
    data_shape = (1, 28, 28)
    network = image_preset(data_shape).build(1, 10)
    ema = load(path)["ema"]
    network.load_state_dict({k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")})
    return network.eval()


@torch.no_grad()
def main(path: str) -> dict:
    torch.manual_seed(0)
    model, data = ema_network(path), mnist5k()
    x1, y = data.test_x[:IMAGES], data.test_y[:IMAGES]
    x0 = torch.randn_like(x1)
    t_s = torch.rand(x1.shape[0])
    t_e = simulation_times(t_s, 1, "random")[-1]
    u = x1 - x0
    x_s = x0 + t_s.view(-1, 1, 1, 1) * u
    v = torch.cat([model(a, b, c) for a, b, c in zip(x_s.split(250), t_s.split(250), y.split(250), strict=True)])
    x_hat = x_s + (t_e - t_s).view(-1, 1, 1, 1) * v
    x_e = x0 + t_e.view(-1, 1, 1, 1) * u
    delta = torch.cat([model(a, t, c) - model(b, t, c) for a, b, t, c in
                       zip(x_hat.split(250), x_e.split(250), t_e.split(250), y.split(250), strict=True)])
    s = delta.abs().sum(1)
    weight = (1 + GAMMA * s / s.mean((1, 2), keepdim=True)) / (1 + GAMMA)
    error = (v - u).abs().sum(1)
    w, e = weight.flatten(1) - weight.flatten(1).mean(1, keepdim=True), error.flatten(1) - error.flatten(1).mean(1, keepdim=True)
    corr = (w * e).sum(1) / (w.norm(dim=1) * e.norm(dim=1)).clamp_min(1e-12)
    plain = (v - u).pow(2).flatten(1).mean(1)
    weighted = fc_weighted_mse(v, u, delta, GAMMA, 1e-6) / (1 + GAMMA)
    bands = []
    for low, high in BANDS:
        m = (t_s >= low) & (t_s < high)
        bands.append({"t_s": [low, high], "images": int(m.sum()), "corr_weight_residual": float(corr[m].mean()),
                      "fc_over_plain_mse": float(weighted[m].mean() / plain[m].mean())})
    return {"checkpoint": path, "images": IMAGES, "gamma": GAMMA, "bands": bands,
            "all": {"corr_weight_residual": float(corr.mean()),
                    "fc_over_plain_mse": float(weighted.mean() / plain.mean())}}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=1))
