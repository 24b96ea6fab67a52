"""Pools of base samples (per-class draws, building from a frozen base, save/load) and fresh generation."""

from __future__ import annotations

import pytest
import torch

from bfr_fast.refiners import FreshSamples, FrozenGenerator, SamplePool, build_pool


def class_of(x: torch.Tensor) -> torch.Tensor:
    """The class a sample encodes (its mean is about 10 times its class)."""
    return torch.round(x.flatten(1).mean(dim=1) / 10).long()


def test_draw_returns_samples_of_each_requested_class():
    y_pool = torch.arange(3).repeat_interleave(torch.tensor([5, 1, 7]))[torch.randperm(13)]  # unsorted, unequal
    pool = SamplePool(10.0 * y_pool[:, None].float() + 0.1 * torch.randn(13, 4), y_pool, num_classes=3)
    y = torch.tensor([2, 0, 1, 1, 2, 0] * 50)
    drawn = pool.draw(torch.zeros(300, 4), y)
    assert torch.equal(class_of(drawn), y)
    members = {tuple(row.tolist()) for row in drawn[y == 2]}
    assert len(members) == 7  # 100 draws from 7 samples reach all of them


def test_draw_moves_to_the_real_batch_dtype():
    pool = SamplePool(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), num_classes=2)
    assert pool.draw(torch.zeros(3, 2, dtype=torch.float64), torch.tensor([1, 1, 0])).dtype == torch.float64


def test_unlabelled_pool_draws_anything_and_refuses_labels():
    pool = SamplePool(torch.randn(5, 3))
    assert pool.draw(torch.zeros(8, 3)).shape == (8, 3)
    with pytest.raises(ValueError, match="no labels"):
        pool.draw(torch.zeros(2, 3), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("y", "num_classes", "match"),
    [
        (torch.tensor([0, 0, 2]), 3, "every class"),
        (torch.tensor([0, 1, 3]), 3, "every class"),
        (torch.tensor([0, -1, 1]), 2, "every class"),
        (torch.tensor([0, 1, 1]), None, "num_classes"),
        (torch.tensor([0.0, 1.0, 1.0]), 2, "integer"),
    ],
)
def test_pool_rejects_bad_labels(y, num_classes, match):
    with pytest.raises(ValueError, match=match):
        SamplePool(torch.randn(3, 2), y, num_classes)


def test_draw_checks_the_sample_shape():
    with pytest.raises(ValueError, match="like the pool"):
        SamplePool(torch.randn(3, 2)).draw(torch.zeros(4, 3))


def test_build_pool_generates_each_class_from_the_base(straight_flow, tmp_path):
    base = straight_flow(10.0 * torch.arange(4.0)[:, None, None, None].expand(4, 1, 8, 8), scale=0.1)
    generator = FrozenGenerator(base, method="heun", num_steps=3, batch_size=7)
    pool = build_pool(generator, (1, 8, 8), num_per_class=5, num_classes=4, seed=0)
    assert len(pool) == 20 and base.calls == 2 * 3 * 3  # 3 batches of <= 7, 3 Heun steps of 2 calls
    assert torch.equal(class_of(pool.x), pool.y) and torch.equal(torch.bincount(pool.y), torch.full((4,), 5))
    again = build_pool(generator, (1, 8, 8), num_per_class=5, num_classes=4, seed=0)
    assert torch.equal(again.x, pool.x)
    loaded = SamplePool.load(pool.save(tmp_path / "pool.pt"))
    assert torch.equal(loaded.x, pool.x) and torch.equal(loaded.y, pool.y) and loaded.num_classes == 4


def test_unconditional_pool(straight_flow):
    base = straight_flow(torch.zeros(1, 3), scale=2.0)
    pool = build_pool(FrozenGenerator(base, num_steps=2), (3,), num_per_class=50, seed=1)
    assert pool.y is None and len(pool) == 50
    assert 1.4 < float(pool.x.std()) < 2.6


def test_fresh_samples_follow_the_labels(straight_flow):
    base = straight_flow(10.0 * torch.arange(3.0)[:, None].expand(3, 2), scale=0.1)
    y = torch.tensor([2, 0, 1, 2])
    drawn = FreshSamples(FrozenGenerator(base, num_steps=2)).draw(torch.zeros(4, 2), y)
    assert torch.equal(class_of(drawn), y)


def test_build_pool_refuses_nan_samples_naming_the_generator():
    generator = FrozenGenerator(lambda x, t, y=None: x * float("nan"), num_steps=1, name="--generator mine:make")
    with pytest.raises(ValueError, match=r"^--generator mine:make gave NaN or infinite values in 6 of 6 pool "):
        build_pool(generator, (2,), num_per_class=6)


def test_a_pool_keeps_the_fingerprint_of_its_generator(straight_flow, tmp_path):
    generator = FrozenGenerator(straight_flow(torch.zeros(1, 3), 2.0), num_steps=2)
    pool = build_pool(generator, (3,), num_per_class=4)
    assert pool.generator == generator.fingerprint()
    assert SamplePool.load(pool.save(tmp_path / "pool.pt")).generator == generator.fingerprint()
