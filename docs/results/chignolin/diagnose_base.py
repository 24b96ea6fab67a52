"""Why every generated chignolin conformer is above 2000 kJ/mol: the base's bond lengths and energies, 500 samples."""
import json
import numpy as np, torch
from bfr_fast.checkpoint import load
from bfr_fast.data.molecules import CHIGNOLIN, Standardizer, reference_dataset
from bfr_fast.metrics.molecular import openmm_energies
from bfr_fast.models import MLP
from bfr_fast.pipelines.sampling import SamplerSpec, source_noise

data = reference_dataset(CHIGNOLIN, "runs/chignolin-cache", 1.0, align=True, progress=False)
std = Standardizer.fit(data.train_x)
net = MLP(3 * data.n_atoms, hidden=256, depth=4)
ema = load("runs/chignolin/checkpoints/base.pt")["ema"]
net.load_state_dict({k.removeprefix("module."): v for k, v in ema.items() if k != "n_averaged"})
net.eval()
with torch.no_grad():
    x, _ = SamplerSpec("euler", 20).generator(net).sample(source_noise(500, (3 * data.n_atoms,), 0, "cpu"), None)
gen = std.decode(x.float()).numpy()
ref = data.test_x[:500].numpy()
bonds = np.array([[b[0].index, b[1].index] for b in data.topology.bonds])
heavy = np.array([data.topology.atom(i).element.symbol != "H" and data.topology.atom(j).element.symbol != "H" for i, j in bonds])
def lengths(xyz):
    return np.linalg.norm(xyz[:, bonds[:, 0]] - xyz[:, bonds[:, 1]], axis=-1)
err = np.abs(lengths(gen) - lengths(ref).mean(0))  # pm error per bond against the MD's mean length
out = {"heavy_bond_abs_error_pm_mean": float(1000 * err[:, heavy].mean()),
       "heavy_bond_abs_error_pm_p95": float(1000 * np.percentile(err[:, heavy], 95)),
       "xh_bond_abs_error_pm_mean": float(1000 * err[:, ~heavy].mean()),
       "md_heavy_bond_std_pm": float(1000 * lengths(ref)[:, heavy].std(0).mean())}
for name, xyz in (("md_test", ref), ("base", gen)):
    e = openmm_energies(xyz, data.topology, constrain=True)
    out[f"{name}_energy_kj_mol_percentiles_5_50_95"] = [float(v) for v in np.nanpercentile(e, [5, 50, 95])]
    out[f"{name}_min_energy"] = float(np.nanmin(e))
rng = np.random.default_rng(0)
for sigma_pm in (1, 2, 5, 10):
    noisy = ref[:200] + rng.normal(0, sigma_pm / 1000, ref[:200].shape)
    e = openmm_energies(noisy, data.topology, constrain=True)
    out[f"md_test_plus_{sigma_pm}pm_noise_median_energy"] = float(np.median(e))
print(json.dumps(out, indent=2))
