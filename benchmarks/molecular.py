"""COV/AMR of alanine dipeptide conformer sets: the fused ``rmsd_min`` path vs a plain mdtraj loop.

``python -m benchmarks.molecular [--n 10000] [--threads 2] [--cache-dir DIR] [--out benchmarks/results]``

Both sides compute COV-R, COV-P, AMR-R and AMR-P of N "generated" vs N reference conformers over the heavy atoms
(RMSD after optimal superposition; timed at threshold 0.05 nm, values also at 0.01 nm): the fused side is
:func:`bfr_fast.metrics.molecular.coverage_amr` (``rmsd_min``, never builds the N x N matrix); the mdtraj side
precentres both sets and calls ``mdtraj.rmsd(generated, reference, j, precentered=True)`` once per reference
frame j, keeping the running row minima and each column's minimum. The data are real MD frames (the cached
reference MD of :func:`bfr_fast.data.molecules.alanine_dipeptide`, unaligned so the superposition does work):
"generated" = N training frames, reference = N test frames. Both run with the same number of threads (torch and
OpenMP). Results go to ``<out>/cpu-molecular.json`` and ``.md``, with both sides' metric values.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import Case, run_case, write_results
from bfr_fast.data.molecules import alanine_dipeptide
from bfr_fast.metrics.molecular import coverage_amr
from bfr_fast.train.options import default_cache_dir

RESULTS_DIR = Path(__file__).resolve().parent / "results"
THRESHOLDS_NM = (0.05, 0.01)
"""COV thresholds: 0.5 Å (the ala2 recipe's; saturated for MD frames) and 0.1 Å (about the nearest-frame RMSD)."""


def mdtraj_minima(generated: np.ndarray, reference: np.ndarray, topology, atoms: np.ndarray) -> tuple[
    np.ndarray, np.ndarray
]:
    """Each generated frame's and each reference frame's minimum RMSD, from ``mdtraj.rmsd`` looped over the
    reference frames (precentred heavy-atom trajectories)."""
    import mdtraj

    sub = topology.subset(atoms)
    gen = mdtraj.Trajectory(generated[:, atoms].copy(), sub)
    ref = mdtraj.Trajectory(reference[:, atoms].copy(), sub)
    gen.center_coordinates()
    ref.center_coordinates()
    row_min = np.full(gen.n_frames, np.inf)
    col_min = np.empty(ref.n_frames)
    for j in range(ref.n_frames):
        d = mdtraj.rmsd(gen, ref, j, precentered=True)
        np.minimum(row_min, d, out=row_min)
        col_min[j] = d.min()
    return row_min, col_min


def reduce_minima(row_min: np.ndarray, col_min: np.ndarray, threshold: float) -> dict[str, float]:
    """COV-R, COV-P, AMR-R, AMR-P from the minima, as :func:`bfr_fast.metrics.molecular.coverage_amr` defines them."""
    return {
        "cov_r": float((col_min <= threshold).mean()),
        "cov_p": float((row_min <= threshold).mean()),
        "amr_r": float(col_min.astype(np.float64).mean()),
        "amr_p": float(row_min.astype(np.float64).mean()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="conformers per set (default 10000)")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenMP threads (default 2)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="reference MD cache (default: the library's)")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timing per variant")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.threads < 1:
        parser.error("--n and --threads must be positive")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # mdtraj's OpenMP reads it at its first parallel region
    torch.set_num_threads(args.threads)

    data = alanine_dipeptide(args.cache_dir or default_cache_dir())
    if data.train_x.shape[0] < args.n or data.test_x.shape[0] < args.n:
        parser.error(f"--n {args.n}: the data set has {data.train_x.shape[0]} training and "
                     f"{data.test_x.shape[0]} test frames")
    stride = data.train_x.shape[0] // args.n
    generated = data.train_x[::stride][: args.n].contiguous()
    reference = data.test_x[: args.n].contiguous()
    atoms = data.heavy_atom_indices
    gen_np, ref_np = generated.numpy(), reference.numpy()

    minima: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def fused() -> dict[str, float]:
        return coverage_amr(generated, reference, THRESHOLDS_NM[0], atoms, backend="fused")

    def plain_mdtraj() -> dict[str, float]:
        minima["mdtraj"] = mdtraj_minima(gen_np, ref_np, data.topology, atoms)
        return reduce_minima(*minima["mdtraj"], THRESHOLDS_NM[0])

    n = args.n
    case = Case("coverage_amr", f"alanine dipeptide, {len(atoms)} heavy atoms, {n} x {n} MD frames",
                {"fused": fused, "mdtraj": plain_mdtraj}, float(n * n), "RMSD/s")
    row = run_case(case, args.min_run_time)
    # The timed calls use the first threshold; the second, where coverage is not saturated, checks the
    # coverages too. AMR does not depend on the threshold.
    row["metrics"] = {
        f"{threshold:g} nm": {
            "fused": coverage_amr(generated, reference, threshold, atoms, backend="fused"),
            "mdtraj": reduce_minima(*minima["mdtraj"], threshold),
        }
        for threshold in THRESHOLDS_NM
    }
    row["max_abs_difference"] = max(
        abs(pair["fused"][key] - pair["mdtraj"][key]) for pair in row["metrics"].values() for key in pair["fused"]
    )
    for threshold, pair in row["metrics"].items():
        row["notes"].append(
            f"τ = {threshold}: " + "; ".join(
                f"{side} COV-R {v['cov_r']:.4f}, COV-P {v['cov_p']:.4f}, AMR-R {v['amr_r']:.6f} nm, "
                f"AMR-P {v['amr_p']:.6f} nm" for side, v in pair.items()
            )
        )
    row["notes"].append(f"largest fused - mdtraj difference over these values: {row['max_abs_difference']:.2g}")
    print("\n".join(row["notes"]))
    json_path, md_path = write_results([row], torch.device("cpu"), args.out, quick=False, name="cpu-molecular")
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
