"""``python -m bfr_fast.data.molecules``: generate and cache a reference MD trajectory, then summarise it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bfr_fast.data.molecules import MOLECULAR_SYSTEMS
from bfr_fast.data.molecules.dihedrals import backbone_dihedrals, basin_populations
from bfr_fast.data.molecules.forcefield import DEFAULT_FORCEFIELD
from bfr_fast.data.molecules.reference_md import generate_reference_md, load_reference_md


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bfr_fast.data.molecules",
        description="Run Langevin MD with OpenMM in implicit solvent and cache the frames (nm, float32) with "
                    "their provenance in an .npz archive; then print its length, wall time and production speed "
                    "(and the Ramachandran basin populations of a dipeptide). The default is the alanine "
                    "dipeptide reference ensemble of the ala2 recipe; --system chignolin builds CLN025 and "
                    "simulates it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the .npz archive to write")
    parser.add_argument("--system", choices=sorted(MOLECULAR_SYSTEMS), default="ala2",
                        help="built-in system: its structure and default length, frames and platform")
    parser.add_argument("--ns", type=float, help="production length, nanoseconds (default: the system's)")
    parser.add_argument("--frames", type=int, help="frames kept, equally spaced (default: the system's)")
    parser.add_argument("--temperature", type=float, default=300.0, help="kelvin")
    parser.add_argument("--seed", type=int, default=0, help="seed of velocities and Langevin noise")
    parser.add_argument("--equilibration-ps", type=float, default=100.0, help="discarded dynamics first")
    parser.add_argument("--pdb", type=Path, help="starting structure (default: the system's; chignolin's is "
                                                 "built and written beside --out)")
    parser.add_argument("--forcefield", nargs="+", default=list(DEFAULT_FORCEFIELD),
                        help="OpenMM force-field XML files")
    parser.add_argument("--platform", help="OpenMM platform (default: the system's, Reference for ala2, CPU for "
                                           "chignolin; the CPU platform's threads: OPENMM_CPU_THREADS)")
    parser.add_argument("--threads", type=int, help="threads of the CPU platform (default: OPENMM_CPU_THREADS, "
                                                    "else every core)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    system = MOLECULAR_SYSTEMS[args.system]
    if args.out.exists() and not args.force:
        print(f"{args.out} exists; not overwriting it (pass --force to regenerate)")
    else:
        try:
            pdb = args.pdb if args.pdb is not None else system.structure(args.out.expanduser().parent)
            nanoseconds = system.nanoseconds if args.ns is None else args.ns
            frames = system.frames if args.frames is None else args.frames
            generate_reference_md(args.out, nanoseconds, frames, args.temperature, args.seed, pdb_path=pdb,
                                  forcefield=tuple(args.forcefield), platform=args.platform or system.platform,
                                  equilibration_ps=args.equilibration_ps, threads=args.threads,
                                  progress=not args.no_progress)
        except (ValueError, FileNotFoundError) as error:
            build_parser().error(str(error))
    reference = load_reference_md(args.out)
    stored = reference.provenance
    summary = {key: stored.get(key) for key in ("structure", "nanoseconds", "frames", "platform", "threads",
                                                 "wall_time_s", "production_wall_time_s")}
    if stored.get("production_wall_time_s"):  # archives from before it was recorded have only the total
        summary["ns_per_day"] = round(stored["nanoseconds"] / stored["production_wall_time_s"] * 86_400.0, 2)
    try:
        phi, psi = backbone_dihedrals(reference.coordinates, reference.topology)
        if phi.shape[1] == 1:  # basins are those of a dipeptide's single phi/psi pair
            summary["basin_populations"] = basin_populations(phi[:, 0], psi[:, 0])
    except ValueError as error:  # not a peptide: no basins to report
        summary["basin_populations"] = str(error)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
