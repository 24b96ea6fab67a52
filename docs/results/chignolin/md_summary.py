"""Summary of a cached chignolin reference MD: energies, drift from the start, strand pairing, by time quarter."""
import json, sys
import mdtraj, numpy as np
from bfr_fast.data.molecules import load_reference_md, heavy_atom_indices

md = load_reference_md(sys.argv[1])
traj = md.to_mdtraj()
heavy = heavy_atom_indices(md.topology)
ca = md.topology.select("name CA")
rmsd_first = 10 * mdtraj.rmsd(traj, traj, 0, atom_indices=heavy)  # Å, heavy atoms, to the first frame
pairs = np.array([[ca[1], ca[8]], [ca[2], ca[7]], [ca[0], ca[9]]])
dist = 10 * mdtraj.compute_distances(traj, pairs)  # Å
ca_rmsd = 10 * mdtraj.rmsd(traj, traj, 0, atom_indices=ca)
quarters = np.array_split(np.arange(traj.n_frames), 4)
out = {"provenance": {k: md.provenance[k] for k in ("nanoseconds", "frames", "frame_interval_ps", "platform",
                                                      "threads", "wall_time_s", "temperature_K")},
       "energy_kj_mol": {"mean": float(md.potential_energy.mean()), "std": float(md.potential_energy.std()),
                         "min": float(md.potential_energy.min()), "max": float(md.potential_energy.max())},
       "by_quarter": []}
for q in quarters:
    out["by_quarter"].append({
        "time_ns": [float(md.time_ps[q[0]] / 1000), float(md.time_ps[q[-1]] / 1000)],
        "energy_mean": float(md.potential_energy[q].mean()),
        "heavy_rmsd_to_first_A_mean": float(rmsd_first[q].mean()),
        "ca_rmsd_to_first_A_mean": float(ca_rmsd[q].mean()),
        "tyr2_trp9_ca_A_mean": float(dist[q, 0].mean()), "asp3_thr8_ca_A_mean": float(dist[q, 1].mean()),
        "ends_ca_A_mean": float(dist[q, 2].mean()),
        "paired_fraction(Y2-W9 and D3-T8 < 6.5 A)": float(((dist[q, 0] < 6.5) & (dist[q, 1] < 6.5)).mean()),
    })
out["max_heavy_rmsd_to_first_A"] = float(rmsd_first.max())
print(json.dumps(out, indent=2))
