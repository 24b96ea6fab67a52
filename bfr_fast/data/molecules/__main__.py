"""``python -m bfr_fast.data.molecules``: generate and cache a reference MD trajectory, then report its basins."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bfr_fast.data.molecules.alanine import DEFAULT_FRAMES, DEFAULT_NANOSECONDS
from bfr_fast.data.molecules.dihedrals import backbone_dihedrals, basin_populations
from bfr_fast.data.molecules.forcefield import DEFAULT_FORCEFIELD
from bfr_fast.data.molecules.reference_md import generate_reference_md, load_reference_md
from bfr_fast.data.molecules.structures import ALANINE_DIPEPTIDE_PDB


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bfr_fast.data.molecules",
        description="Run Langevin MD with OpenMM in implicit solvent and cache the frames (nm, float32) with "
                    "their provenance in an .npz archive; then print the Ramachandran basin populations. "
                    "The default is the alanine dipeptide reference ensemble of the ala2 recipe.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the .npz archive to write")
    parser.add_argument("--ns", type=float, default=DEFAULT_NANOSECONDS, help="production length, nanoseconds")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames kept, equally spaced")
    parser.add_argument("--temperature", type=float, default=300.0, help="kelvin")
    parser.add_argument("--seed", type=int, default=0, help="seed of velocities and Langevin noise")
    parser.add_argument("--equilibration-ps", type=float, default=100.0, help="discarded dynamics first")
    parser.add_argument("--pdb", type=Path, default=ALANINE_DIPEPTIDE_PDB, help="starting structure")
    parser.add_argument("--forcefield", nargs="+", default=list(DEFAULT_FORCEFIELD),
                        help="OpenMM force-field XML files")
    parser.add_argument("--platform", default="Reference", help="OpenMM platform (Reference is fastest here)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"{args.out} exists; not overwriting it (pass --force to regenerate)")
    else:
        try:
            generate_reference_md(args.out, args.ns, args.frames, args.temperature, args.seed, pdb_path=args.pdb,
                                  forcefield=tuple(args.forcefield), platform=args.platform,
                                  equilibration_ps=args.equilibration_ps, progress=not args.no_progress)
        except (ValueError, FileNotFoundError) as error:
            build_parser().error(str(error))
    reference = load_reference_md(args.out)
    summary = {key: reference.provenance[key] for key in ("nanoseconds", "frames", "wall_time_s")}
    try:
        phi, psi = backbone_dihedrals(reference.coordinates, reference.topology)
        summary["basin_populations"] = basin_populations(phi[:, 0], psi[:, 0])
    except ValueError as error:  # not a peptide: no basins to report
        summary["basin_populations"] = str(error)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
