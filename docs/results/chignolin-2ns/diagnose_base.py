"""The base's geometry in a chignolin run folder: bond-length errors (tree bonds of the Z-matrix and the ring bonds
it leaves implicit), clashes (the closest approach of two atoms more than three bonds apart), and energies, for
1000 base samples against 1000 MD test frames.

Usage: python docs/results/chignolin-2ns/diagnose_base.py RUN_FOLDER [RUN_FOLDER ...] > diagnose_base.json
"""
import json
import sys

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import shortest_path

from bfr_fast.checkpoint import load
from bfr_fast.data.molecules import CHIGNOLIN, reference_dataset, zmatrix
from bfr_fast.metrics.molecular import openmm_energies
from bfr_fast.models import MLP
from bfr_fast.pipelines.sampling import SamplerSpec, source_noise
from bfr_fast.train.recipes.ala2 import fit_encoder

COUNT = 1000
data = reference_dataset(CHIGNOLIN, "runs/chignolin-cache", align=True, progress=False)
top = data.topology
bonds = np.array([[a.index, b.index] for a, b in top.bonds])
heavy = np.array([top.atom(i).element.symbol != "H" and top.atom(j).element.symbol != "H" for i, j in bonds])
z = zmatrix(top)
tree = {frozenset((int(a), int(r[0]))) for a, r in zip(z.order[1:], z.references[1:])}
ring = np.array([frozenset((int(i), int(j))) not in tree for i, j in bonds])
reference = data.test_x[:COUNT].numpy()
graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(top.n_atoms,) * 2)
hops = shortest_path(graph, directed=False, unweighted=True)
far = np.argwhere(np.triu(hops > 3))  # atom pairs more than three bonds apart: non-bonded in the force field


def lengths(xyz: np.ndarray) -> np.ndarray:
    return np.linalg.norm(xyz[:, bonds[:, 0]] - xyz[:, bonds[:, 1]], axis=-1)


def summary(xyz: np.ndarray) -> dict:
    error = np.abs(lengths(xyz) - lengths(reference).mean(0)) * 1000  # pm, against the MD's mean length
    energies = openmm_energies(xyz, top, constrain=True)
    closest = np.linalg.norm(xyz[:, far[:, 0]] - xyz[:, far[:, 1]], axis=-1).min(axis=1) * 1000  # pm
    return {"closest_nonbonded_pm_percentiles_5_50_95": [float(v) for v in np.percentile(closest, [5, 50, 95])],
            "conformers_with_a_pair_closer_than_150_pm": int((closest < 150).sum()),"heavy_tree_bond_error_pm_mean": float(error[:, heavy & ~ring].mean()),
            "heavy_ring_closure_bond_error_pm_mean": float(error[:, heavy & ring].mean()) if ring.any() else None,
            "heavy_bond_error_pm_p95": float(np.percentile(error[:, heavy], 95)),
            "energy_kj_mol_percentiles_5_50_95": [float(v) for v in np.nanpercentile(energies, [5, 50, 95])],
            "below_2000_kj_mol": int((energies < 2000).sum())}


out = {"ring_closure_bonds": int(ring.sum()), "md_test": summary(reference)}
for folder in sys.argv[1:]:
    config = json.loads(open(f"{folder}/config.json").read())
    coordinates = config["options"].get("coordinates") or CHIGNOLIN.coordinates
    encoder = fit_encoder(data, coordinates)
    net = MLP(encoder.dim, hidden=256, depth=4)
    ema = load(f"{folder}/checkpoints/base.pt")["ema"]
    net.load_state_dict({k.removeprefix("module."): v for k, v in ema.items() if k != "n_averaged"})
    net.eval()
    with torch.no_grad():
        x, _ = SamplerSpec("euler", 20).generator(net).sample(source_noise(COUNT, (encoder.dim,), 0, "cpu"), None)
    out[folder] = {"coordinates": coordinates, **summary(encoder.decode(x.float()).numpy())}
print(json.dumps(out, indent=2))
