"""Reference MD: reproducible with its seed, provenance recorded, cache written atomically, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bfr_fast.data.molecules import ALANINE_DIPEPTIDE_PDB, generate_reference_md, load_reference_md
from bfr_fast.data.molecules import reference_md as reference_md_module

TINY = dict(nanoseconds=0.002, frames=10, equilibration_ps=0.2, progress=False)


def test_frames_shapes_and_units(short_md):
    md = short_md
    assert md.coordinates.shape == (50, 22, 3) and md.coordinates.dtype == np.float32
    np.testing.assert_allclose(np.diff(md.time_ps), 0.2)
    assert np.isfinite(md.potential_energy).all()
    # nanometres: alanine dipeptide spans well under 1 nm from its centroid (angstroms would be ~10x more)
    radius = np.linalg.norm(md.coordinates - md.coordinates.mean(axis=1, keepdims=True), axis=2).max()
    assert 0.2 < radius < 0.6
    # HBonds constraints hold: the N-H bond of ALA stays at amber's 0.101 nm
    n, h = [atom.index for atom in md.topology.residue(1).atoms if atom.name in ("N", "H")]
    np.testing.assert_allclose(np.linalg.norm(md.coordinates[:, n] - md.coordinates[:, h], axis=1), 0.101,
                               atol=1e-4)
    assert len({tuple(frame.ravel()[:6]) for frame in md.coordinates}) == 50  # frames move


def test_provenance_recorded(short_md, short_md_path):
    p = short_md.provenance
    assert p["forcefield"] == ["amber99sbildn.xml", "amber99_obc.xml"]
    assert p["temperature_K"] == 300.0 and p["seed"] == 7 and p["frames"] == 50 and p["platform"] == "Reference"
    assert p["stride_steps"] == 100 and p["frame_interval_ps"] == 0.2 and p["nanoseconds"] == 0.01
    assert p["timestep_fs"] == 2.0 and p["constraints"] == "HBonds" and p["equilibration_ps"] == 1.0
    assert p["openmm_version"] and p["wall_time_s"] > 0 and p["structure"] == "alanine-dipeptide.pdb"
    sidecar = Path(str(short_md_path) + ".json")
    assert json.loads(sidecar.read_text()) == p


def test_same_seed_same_frames_other_seed_others(tmp_path):
    a = load_reference_md(generate_reference_md(tmp_path / "a.npz", seed=3, **TINY))
    b = load_reference_md(generate_reference_md(tmp_path / "b.npz", seed=3, **TINY))
    c = load_reference_md(generate_reference_md(tmp_path / "c.npz", seed=4, **TINY))
    np.testing.assert_array_equal(a.coordinates, b.coordinates)
    assert not np.allclose(a.coordinates, c.coordinates, atol=1e-3)


def test_topology_travels_with_the_archive(short_md):
    names = [atom.name for atom in short_md.topology.atoms]
    assert len(names) == 22 and names[8] == "CA" and short_md.topology.n_bonds == 21
    assert short_md.to_mdtraj().n_frames == 50


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    path = generate_reference_md(tmp_path / "md.npz", seed=1, **TINY)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"half an archive")
        raise RuntimeError("disk full")

    monkeypatch.setattr(reference_md_module.np, "savez", broken_savez)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_reference_md(path, seed=2, **TINY)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.npz", "md.npz.json"]  # no temporary left


@pytest.mark.parametrize("change, match", [
    (dict(frames=0), "frames"),
    (dict(frames=10_000), "frames"),
    (dict(nanoseconds=-1.0), "nanoseconds"),
    (dict(seed=-1), "seed"),
    (dict(platform="NoSuchPlatform"), "platform"),
    (dict(equilibration_ps=-1.0), "equilibration_ps"),
])
def test_bad_arguments_name_themselves(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        generate_reference_md(tmp_path / "x.npz", **{**TINY, **change})
    assert not (tmp_path / "x.npz").exists()


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pdb"):
        generate_reference_md(tmp_path / "x.npz", pdb_path=tmp_path / "nope.pdb", **TINY)
    with pytest.raises(FileNotFoundError, match=r"missing\.npz.*python -m bfr_fast\.data\.molecules"):
        load_reference_md(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", coordinates=np.zeros((1, 22, 3), np.float32))
    with pytest.raises(ValueError, match="not a reference MD archive"):
        load_reference_md(tmp_path / "other.npz")


def test_a_damaged_cache_says_to_delete_it(short_md_path, tmp_path):
    damaged = tmp_path / "ala2.npz"
    damaged.write_bytes(short_md_path.read_bytes()[:5000])  # an MD run killed while its cache was copied
    with pytest.raises(ValueError, match=f"{damaged}: not a readable .npz archive .* Delete it") as caught:
        load_reference_md(damaged)
    assert "allow_pickle" not in str(caught.value)


def test_shipped_structure_and_licence():
    assert ALANINE_DIPEPTIDE_PDB.is_file()
    folder = ALANINE_DIPEPTIDE_PDB.parent
    assert "MIT License" in (folder / "LICENSE-openmmtools").read_text()
    assert "openmmtools" in (folder / "NOTICE").read_text()
