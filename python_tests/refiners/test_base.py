"""The refiner ODE (honest NFE, exact 1-step Euler, no clamping), label routing, and the checkpoint file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.models import MLP
from bfr_fast.refiners import (
    DataFlowRefiner,
    FMRefiner,
    LatentFlowRefiner,
    NoiseInjectionRefiner,
    Refiner,
)


class CountingField(nn.Module):
    """v(x, t, y) = 3 tanh(x) + t (+ y): large enough to leave [-1, 1]; counts calls and records labels."""

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.tensor(3.0))
        self.calls = 0
        self.labels: list[torch.Tensor | None] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        self.labels.append(y)
        out = self.scale * torch.tanh(x) + t[:, None]
        return out if y is None else out + y[:, None].to(x.dtype)


def test_one_euler_step_is_one_call_and_equals_x_plus_v():
    net = CountingField()
    x = torch.randn(6, 4)
    refined, nfe = DataFlowRefiner(net).refine(x, num_steps=1, return_nfe=True)
    assert nfe == 1 and net.calls == 1
    expected = x + 3 * torch.tanh(x)  # v(x, t=0)
    torch.testing.assert_close(refined, expected, rtol=0, atol=0)
    assert float(refined.abs().max()) > 1.5  # not clamped to the image range


@pytest.mark.parametrize(("method", "stages"), [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_refine_counts_every_network_call(method, stages):
    net = CountingField()
    _, nfe = FMRefiner(net).refine(torch.randn(5, 3), num_steps=3, method=method, return_nfe=True)
    assert nfe == net.calls == 3 * stages


def test_refine_in_chunks_equals_refining_at_once():
    refiner = DataFlowRefiner(CountingField())
    x = torch.randn(10, 3)
    torch.testing.assert_close(refiner.refine(x, 4, batch_size=3), refiner.refine(x, 4))


def test_labels_reach_only_a_conditional_network():
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    conditional = CountingField(num_classes=2)
    DataFlowRefiner(conditional).refine(x, y=y)
    assert torch.equal(conditional.labels[0], y)
    unconditional = CountingField()
    DataFlowRefiner(unconditional).refine(x, y=y)  # the labels of the samples, not the network's business
    assert unconditional.labels == [None]
    forced = CountingField()
    assert DataFlowRefiner(forced, conditional=True).conditional


def test_refine_rejects_bad_arguments():
    refiner = DataFlowRefiner(CountingField())
    with pytest.raises(ValueError, match="y must be"):
        refiner.refine(torch.randn(4, 2), y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size"):
        refiner.refine(torch.randn(4, 2), batch_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        refiner.refine(torch.randn(0, 2))
    with pytest.raises(ValueError, match="method"):
        refiner.refine(torch.randn(4, 2), method="dopri5")
    with pytest.raises(ValueError, match="network"):
        DataFlowRefiner(lambda x, t: x)


def _randomised_mlp(seed: int) -> MLP:
    torch.manual_seed(seed)
    net = MLP(6, hidden=16, depth=2, time_embed_dim=8, num_classes=3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))  # leave the zero-initialised output layer
    return net


@pytest.mark.parametrize(
    "make",
    [
        lambda net: DataFlowRefiner(net, coupling="independent"),
        lambda net: DataFlowRefiner(net, augmentation=None),
        lambda net: NoiseInjectionRefiner(net, sigma_d=0.05),
        lambda net: FMRefiner(net, sigma_f=0.2, sigma_z=0.05),
        lambda net: LatentFlowRefiner(net, alpha=0.3, mixing="variance"),
    ],
)
def test_save_load_round_trip_gives_identical_outputs(tmp_path, make):
    refiner = make(_randomised_mlp(0)).eval()
    path = refiner.save(tmp_path / "refiner.pt", metadata={"hidden": 16, "trained_on": "toy"})
    loaded = Refiner.load(path, _randomised_mlp(1)).eval()
    assert type(loaded) is type(refiner) and loaded.config() == refiner.config()
    assert Refiner.read_header(path)["metadata"] == {"hidden": 16, "trained_on": "toy"}
    x, y = torch.randn(8, 6), torch.arange(8) % 3
    generator = torch.Generator().manual_seed(0)
    expected = refiner.refine(x, 3, y=y, generator=generator)
    generator.manual_seed(0)
    torch.testing.assert_close(loaded.refine(x, 3, y=y, generator=generator), expected, rtol=0, atol=0)


def test_load_checks_the_kind_and_the_file(tmp_path):
    path = DataFlowRefiner(_randomised_mlp(0)).save(tmp_path / "dfr.pt")
    assert isinstance(DataFlowRefiner.load(path, _randomised_mlp(1)), DataFlowRefiner)
    with pytest.raises(ValueError, match="not a 'lfr'"):
        LatentFlowRefiner.load(path, _randomised_mlp(1))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a refiner file"):
        Refiner.load(tmp_path / "other.pt", _randomised_mlp(1))
    payload = torch.load(path, weights_only=True)
    del payload["kind"]
    torch.save(payload, tmp_path / "no-kind.pt")
    for read in (Refiner.read_header, lambda p: Refiner.load(p, _randomised_mlp(1))):
        with pytest.raises(ValueError, match="damaged refiner file \\(no kind\\)"):
            read(tmp_path / "no-kind.pt")
    with pytest.raises(RuntimeError):
        Refiner.load(path, MLP(6, hidden=8, depth=1, time_embed_dim=8, num_classes=3))
