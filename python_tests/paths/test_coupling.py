"""Couplings: exact minibatch OT (optimal vs brute force, cheaper than identity, per class) and label travel."""

from __future__ import annotations

import itertools
import time

import pytest
import torch

from bfr_fast.paths import independent_coupling, ot_coupling


def total_cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    return (x0 - x1).flatten(1).square().sum().item()


def source_rows(paired: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Which row of ``original`` each row of ``paired`` is (rows are distinct)."""
    return torch.cdist(paired.flatten(1), original.flatten(1)).argmin(dim=1)


def test_independent_coupling_keeps_the_pairs():
    x0, x1, y = torch.randn(5, 2), torch.randn(5, 2), torch.arange(5)
    out = independent_coupling(x0, x1, y)
    assert out[0] is x0 and out[1] is x1 and out[2] is y


def test_ot_matches_brute_force_and_beats_identity():
    generator = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 3, 2, generator=generator), torch.randn(6, 3, 2, generator=generator)
    paired, same_x1, no_labels = ot_coupling(x0, x1)
    assert same_x1 is x1 and no_labels is None
    assert sorted(source_rows(paired, x0).tolist()) == list(range(6))  # a permutation of the sources
    best = min(total_cost(x0[list(p)], x1) for p in itertools.permutations(range(6)))
    assert total_cost(paired, x1) == pytest.approx(best, rel=1e-5)
    assert total_cost(paired, x1) < total_cost(x0, x1)


def test_ot_on_a_training_size_batch_is_cheaper_and_fast():
    generator = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(256, 1, 8, 8, generator=generator), torch.randn(256, 1, 8, 8, generator=generator) + 0.5
    y = torch.randint(0, 10, (256,), generator=generator)
    start = time.perf_counter()
    paired, _, _ = ot_coupling(x0, x1, y)
    elapsed = time.perf_counter() - start
    assert total_cost(paired, x1) < 0.8 * total_cost(x0, x1)
    assert elapsed < 2.0  # typically a few milliseconds; generous for a loaded machine


def test_labels_travel_with_their_samples_and_classes_are_never_mixed():
    # Sources of class c sit next to the targets of class 1 - c, so unconstrained OT would cross classes.
    generator = torch.Generator().manual_seed(2)
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 0])
    x1 = torch.randn(10, 4, generator=generator) * 0.1 + 5.0 * y[:, None]
    x0 = torch.randn(10, 4, generator=generator) * 0.1 + 5.0 * (1 - y[:, None])
    unconstrained, _, _ = ot_coupling(x0, x1)
    assert (y[source_rows(unconstrained, x0)] != y).any()

    paired, same_x1, labels = ot_coupling(x0, x1, y)
    sources = source_rows(paired, x0)
    assert same_x1 is x1 and torch.equal(labels, y)  # each label stays with its target
    assert torch.equal(y[sources], labels)  # and every source paired with it is of that class
    assert sorted(sources.tolist()) == list(range(10))
    for c in (0, 1):  # within each class, the pairing is the optimal one
        rows = torch.nonzero(y == c).flatten()
        best = min(
            total_cost(x0[rows[list(p)]], x1[rows]) for p in itertools.permutations(range(len(rows)))
        )
        assert total_cost(paired[rows], x1[rows]) == pytest.approx(best, rel=1e-5)


def test_pairs_keep_their_source_dtype():
    x0, x1 = torch.randn(8, 2, dtype=torch.bfloat16), torch.randn(8, 2, dtype=torch.bfloat16)
    paired, _, _ = ot_coupling(x0, x1)
    assert paired.dtype == torch.bfloat16 and sorted(source_rows(paired.float(), x0.float()).tolist()) == list(range(8))


@pytest.mark.parametrize(
    ("x1", "y", "match"),
    [
        (torch.zeros(4, 3), None, "one shape"),
        (torch.zeros(5, 2), None, "one shape"),
        (torch.zeros(4, 2), torch.zeros(4), "integer"),
        (torch.zeros(4, 2), torch.zeros(3, dtype=torch.int64), "integer"),
    ],
)
@pytest.mark.parametrize("coupling", [ot_coupling, independent_coupling])
def test_bad_arguments(coupling, x1, y, match):
    with pytest.raises(ValueError, match=match):
        coupling(torch.zeros(4, 2), x1, y)
