"""The data-space refiner: same-class partners that follow the OT permutation, training-only augmentation, and an
end-to-end correction of a biased base."""

from __future__ import annotations

import torch
from torch import nn

from bfr_fast.data import RefinerAugmentation
from bfr_fast.models import MLP
from bfr_fast.ops import band_energy
from bfr_fast.refiners import DataFlowRefiner, FrozenGenerator, SamplePool, build_pool


class Recorder(nn.Module):
    """A conditional network that returns zeros and remembers its inputs."""

    num_classes = 4

    def forward(self, x, t, y=None):
        self.x, self.t, self.y = x, t, y
        return torch.zeros_like(x)


def class_of(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.flatten(1).mean(dim=1) / 10).long()


def recorded_sources(recorder: Recorder, x_real: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t x1 with the targets unpermuted: solve for the sources x0."""
    t = recorder.t.reshape((-1,) + (1,) * (x_real.dim() - 1))
    return (recorder.x - t * x_real) / (1 - t)


def test_ot_partners_share_the_targets_class_and_labels_stay_with_targets(straight_flow):
    torch.manual_seed(0)
    base = straight_flow(10.0 * torch.arange(4.0)[:, None].expand(4, 3) + 1.0, scale=0.5)  # class c near 10c + 1
    pool = build_pool(FrozenGenerator(base, num_steps=2), (3,), num_per_class=64, num_classes=4)
    y = torch.randint(0, 4, (256,))
    x_real = 10.0 * y[:, None].float() + torch.randn(256, 3)
    recorder = Recorder()
    refiner = DataFlowRefiner(recorder, augmentation=None, coupling="ot")
    refiner.training_loss(pool)(refiner, x_real, y)
    assert torch.equal(recorder.y, y)  # targets are not permuted, so their labels arrive unchanged
    keep = recorder.t < 0.9
    sources = recorded_sources(recorder, x_real)
    assert torch.equal(class_of(sources[keep]), y[keep])  # every source is a generated sample of its target's class
    # ... and OT paired them: cheaper than the same sources shuffled at random within each class.
    sources, targets, labels = sources[keep], x_real[keep], y[keep]
    shuffle = torch.arange(labels.shape[0])
    for c in range(4):
        rows = torch.nonzero(labels == c).flatten()
        shuffle[rows] = rows[torch.randperm(rows.shape[0])]
    cost = (sources - targets).pow(2).sum(1).mean()
    assert cost < 0.8 * (sources[shuffle] - targets).pow(2).sum(1).mean()


def test_augmentation_applies_at_training_only():
    torch.manual_seed(0)
    images = torch.randn(128, 1, 8, 8)
    pool = SamplePool(images)
    recorder = Recorder()
    recorder.num_classes = None
    refiner = DataFlowRefiner(recorder, augmentation=RefinerAugmentation(1.0, (1.0, 2.0), 0.0), coupling="independent")
    x_real = torch.zeros(128, 1, 8, 8)
    refiner.training_loss(pool)(refiner, x_real)
    sources = recorded_sources(recorder, x_real)[recorder.t < 0.5]
    high = band_energy(sources, 0.5)[:, 1].mean()
    assert high < 0.1 * band_energy(images, 0.5)[:, 1].mean()  # the training sources were blurred
    torch.testing.assert_close(refiner.refine(images), images, rtol=0, atol=0)  # inference starts from x_hat itself


def test_dfr_corrects_a_biased_base(two_class_problem, train_refiner, class_energy_distance):
    p = two_class_problem
    generator = FrozenGenerator(p.biased_base(shift=0.8, scale=0.6), num_steps=4)
    pool = build_pool(generator, (2,), num_per_class=512, num_classes=2, seed=1)
    refiner = DataFlowRefiner(
        MLP(2, hidden=64, depth=2, time_embed_dim=32, num_classes=2),
        augmentation=RefinerAugmentation(blur_prob=0.0, noise_prob=0.5, noise_std=(0.0, 0.05)),
    )
    train_refiner(refiner, refiner.training_loss(pool), p.train_x, p.train_y, steps=200)

    x_base, _ = generator.sample(torch.randn(1024, 2, generator=torch.Generator().manual_seed(3)), p.test_y)
    base_distance = class_energy_distance(x_base, p.test_y, p.test_x, p.test_y)
    for steps in (1, 10):
        refined, nfe = refiner.refine(x_base, steps, y=p.test_y, return_nfe=True)
        assert nfe == steps
        assert class_energy_distance(refined, p.test_y, p.test_x, p.test_y) < 0.1 * base_distance

    # Transfer: the refiner meets another base's samples (less shifted, too narrow) without retraining.
    other, _ = FrozenGenerator(p.biased_base(shift=0.5, scale=0.4), num_steps=4).sample(torch.randn(1024, 2), p.test_y)
    before = class_energy_distance(other, p.test_y, p.test_x, p.test_y)
    after = class_energy_distance(refiner.refine(other, 10, y=p.test_y), p.test_y, p.test_x, p.test_y)
    assert after < 0.5 * before
