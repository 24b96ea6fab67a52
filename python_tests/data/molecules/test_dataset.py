"""MoleculeDataset: block split, centring, alignment, validation; alanine_dipeptide's cache."""

from __future__ import annotations

import mdtraj
import numpy as np
import pytest
import torch

from bfr_fast.data.molecules import MoleculeDataset, alanine_dipeptide, block_split
from bfr_fast.data.molecules import molecule_dataset, random_rotation, reference_md_path
from bfr_fast.data.molecules import systems as systems_module


def test_block_split_contiguous_spread_and_complete():
    train, test = block_split(100, test_fraction=0.2, blocks=10)
    assert test.tolist() == list(range(40, 50)) + list(range(90, 100))
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    train, test = block_split(95, test_fraction=0.3, blocks=10)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 95
    runs = np.split(test, np.flatnonzero(np.diff(test) != 1) + 1)
    assert len(runs) == 3 and runs[-1][-1] == 94  # three whole blocks, the last one ends the run


@pytest.mark.parametrize("args, match", [((5, 0.2, 10), "n_frames"), ((100, 0.0, 10), "test_fraction"),
                                         ((100, 0.2, 1), "blocks"), ((100, 0.01, 10), "test_fraction")])
def test_block_split_errors(args, match):
    with pytest.raises(ValueError, match=match):
        block_split(*args)


def test_dataset_from_trajectory(short_md):
    data = molecule_dataset(short_md.to_mdtraj(), "ala2", blocks=10, provenance={"seed": 7})
    assert data.train_x.shape == (40, 22, 3) and data.test_x.shape == (10, 22, 3)
    assert data.train_x.dtype == torch.float32
    for x in (data.train_x, data.test_x):
        com = torch.einsum("fac,a->fc", x.double(), torch.from_numpy(data.masses / data.masses.sum()))
        assert float(com.abs().max()) < 1e-6
    # the test frames are blocks 4 and 9 of the run, unchanged apart from the translation
    test_frames = torch.from_numpy(short_md.coordinates[np.r_[20:25, 45:50]])
    torch.testing.assert_close(data.test_x - data.test_x[:, :1], test_frames - test_frames[:, :1], atol=1e-5,
                               rtol=0)
    assert data.atom_names[8] == "ALA2-CA" and len(data.heavy_atom_indices) == 10 and data.n_atoms == 22
    assert data.provenance == {"seed": 7} and "train=40" in repr(data)


def test_align_superposes_rotated_copies(short_md):
    frame = torch.from_numpy(short_md.coordinates[:1]).repeat(8, 1, 1)
    rotated = random_rotation(frame - frame.mean(dim=1, keepdim=True), torch.Generator().manual_seed(0))
    trajectory = mdtraj.Trajectory(rotated.numpy(), short_md.topology)
    aligned = molecule_dataset(trajectory, "copies", test_fraction=0.25, blocks=4, align=True)
    both = torch.cat([aligned.train_x, aligned.test_x])
    assert float((both - both[:1]).abs().max()) < 1e-4
    plain = molecule_dataset(trajectory, "copies", test_fraction=0.25, blocks=4)
    assert float((plain.train_x - plain.train_x[:1]).abs().max()) > 0.05
    np.testing.assert_array_equal(trajectory.xyz, rotated.numpy())  # the input is not modified


def test_dataset_validation(short_md):
    x = torch.zeros(3, 22, 3)
    with pytest.raises(ValueError, match="train_x"):
        MoleculeDataset("m", x.double(), x, short_md.topology)
    with pytest.raises(ValueError, match="test_x"):
        MoleculeDataset("m", x, torch.zeros(3, 21, 3), short_md.topology)
    with pytest.raises(ValueError, match="train_x"):
        MoleculeDataset("m", torch.zeros(0, 22, 3), x, short_md.topology)
    with pytest.raises(ValueError, match="finite"):
        MoleculeDataset("m", x, torch.full((1, 22, 3), float("nan")), short_md.topology)


def test_alanine_dipeptide_generates_once_then_loads(tmp_path, monkeypatch):
    settings = dict(nanoseconds=0.002, frames=20, seed=1)
    data = alanine_dipeptide(tmp_path, progress=False, **settings)
    path = reference_md_path(tmp_path, **settings)
    assert path.is_file() and data.provenance["cache_path"] == str(path)
    assert data.train_x.shape == (16, 22, 3) and data.test_x.shape == (4, 22, 3)
    assert data.name == "ala2" and data.provenance["seed"] == 1

    def no_md(*args, **kwargs):
        raise AssertionError("the cached trajectory should have been used")

    monkeypatch.setattr(systems_module, "generate_reference_md", no_md)
    again = alanine_dipeptide(tmp_path, **settings)
    torch.testing.assert_close(again.train_x, data.train_x, rtol=0, atol=0)
    # a cache file whose provenance disagrees with its name is refused
    path.rename(reference_md_path(tmp_path, nanoseconds=0.002, frames=20, seed=2))
    with pytest.raises(ValueError, match="seed"):
        alanine_dipeptide(tmp_path, nanoseconds=0.002, frames=20, seed=2)

