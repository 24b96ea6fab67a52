r"""``ala2``: the molecular experiment of Bi-stage Flow Refinement (Table 5, Figure 6), on alanine dipeptide,
chignolin or a user's trajectory.

Steps (each network checkpointed in the run folder; ``--resume`` loads what is finished instead of redoing it):

1. **Data.** The reference MD of :data:`~bfr_fast.data.molecules.ALANINE_DIPEPTIDE` (ACE-ALA-NME, 22 atoms;
   ff99SB-ILDN + OBC, 300 K; by default 10 ns, 50 000 frames, which visits beta/C7eq and alpha_R about 59/41 %),
   run once and cached in ``--cache-dir``; ``--data ala2:NANOSECONDS:FRAMES`` picks another length. Time-block
   split: 40 000 training frames, 10 000 held-out test frames, the reference set of every metric.
   **Chignolin** (Table 5's second system): ``--data chignolin[:NANOSECONDS[:FRAMES]]``, the CLN025 peptide
   built from its sequence (:data:`~bfr_fast.data.molecules.CHIGNOLIN`, 166 atoms, same force field) and its
   reference MD on OpenMM's CPU platform, cached the same way (by default 2 ns, 20 000 frames); scored at the
   paper's chignolin τ and energy cut-off (:data:`CHIGNOLIN_SCORING`).
   **A user's MD** instead: ``--data TRAJECTORY --topology PDB`` (any trajectory mdtraj reads: DCD, XTC, TRR,
   NetCDF, PDB, HDF5, or a ``.npz`` of coordinates; :func:`load_trajectory_dataset`), its frames in file order
   taken as time order and split the same way (20 blocks, a fifth held out). ``--selection`` (mdtraj's selection
   language) keeps some atoms, for either data; the default is every atom, because the OpenMM energies need a
   complete topology (hydrogens included): a heavy-atom selection is modelled and scored by COV/AMR, and its
   energy columns read "—" with the reason (the force field cannot be built for it) in the results.
2. **Alignment (the choice, and why).** Every frame is superposed onto the first frame by its heavy atoms
   (Kabsch, ``align=True``) before centring, and no random rotations are applied at training. An MD frame
   tumbles freely, so unaligned data is the conformational distribution convolved with SO(3): a plain MLP on
   flat coordinates (not rotation-equivariant) would have to learn every orientation of every conformer, which
   costs far more capacity and steps than this CPU budget has. Aligning removes that nuisance, and it is
   legitimate for this experiment because every metric is invariant to rigid motions: COV/AMR take the RMSD
   after optimal superposition (:func:`~bfr_fast.ops.rmsd_min`) and the force-field energy is invariant too.
   Random-rotation augmentation would undo the alignment, so it is off.
3. **Coordinates and normalisation** (``--coordinates``; the default is the system's). ``cartesian`` (ALA2 and
   user trajectories): frames are flattened to 3 × atoms numbers (66 for ALA2) and standardised per coordinate
   with the training mean and standard deviation (:class:`Standardizer`; for ALA2 after alignment the stds range
   from 0.005 to 0.13 nm). ``internal`` (chignolin): the 3 × atoms − 6 bond lengths, bond angles and torsions of
   a Z-matrix of the bond graph, each standardised the same way (:class:`InternalCoordinates`; torsions
   centred on their circular mean first). In Cartesian coordinates a bond is a small difference of two
   coordinates that spread over several Å for a ten-residue chain, so a network must be pm-accurate everywhere
   to make valid bonds; in internal coordinates each bond is a feature of its own. The networks and refiners
   live in these units, so the refiners' noise scales (σ_d, σ_f, the DFR noise augmentation, all 0.1) are
   fractions of each feature's spread, as they are of the pixel range for images. Samples are mapped back to
   nm before any metric.
4. **Base.** An OT-CFM residual MLP (:class:`~bfr_fast.models.MLP`), frozen as :math:`G` = Euler with
   ``sampler_steps`` steps. ``--recipe ala2-ddpm`` trains the same MLP as a DDPM ε-predictor instead (linear β
   schedule, 1000 steps, :class:`~bfr_fast.losses.EpsPredictionLoss`) and samples and inverts it through its
   probability-flow ODE (:class:`~bfr_fast.paths.ProbabilityFlowVelocity`), same sampler and budget.
5. **Refiners** (:mod:`bfr_fast.refiners`, unchanged): noise injection (σ_d = 0.1), FMRefiner (σ_f = σ_z = 0.1),
   DFR (noise augmentation only, p 0.5, σ ~ U(0, 0.1): blur has no meaning for coordinates; OT pairs) on a pool
   of one base sample per training frame, LFR (α = 0.1, amplitude mixing, OT) on the inversion cache of the
   training frames; each a smaller residual MLP. Then the DFR's and the LFR's **1-NFE students** (rows
   ``<teacher>_reflow``; :func:`distill`): reflow on each teacher's 10-step map, as in the image recipes.
6. **Evaluation**, from the same noise for every row: base, +noise injection (1 and 10 NFE), +FMRefiner (1 and
   10 NFE), +DFR (1, 10 NFE, one RK4 step), its student (1 NFE), +LFR (the same), its student, ``num_samples``
   (10 000) conformers each: COV-R, COV-P, AMR-R, AMR-P on heavy atoms at the paper's τ (:class:`Scoring`:
   0.05 Å for ALA2 and user trajectories, 0.35 Å for chignolin), COV against τ over a range for every row, the
   energy error % of the mean OpenMM energy with samples above the cut-off excluded (500 kJ/mol; 2000 for
   chignolin, the paper's; the count beside it, the uncut error in ``metrics.json``), and the alpha_R / beta
   basin populations (dipeptides). **Like with like:**
   the reference MD constrains every X–H bond to its force-field length, so each generated conformer is first
   projected onto those constraints (OpenMM ``applyConstraints``,
   :func:`~bfr_fast.metrics.molecular.apply_constraints`) and its energy taken there; ``--energy-constraints
   none`` scores the conformers as generated, X–H stretch included. COV/AMR and the basins are of the
   conformers as generated. A row of MD training frames scored the same way shows the
   floor of these metrics. Figures: ``samples/energies.png`` (Figure 6: energy histograms of the reference,
   base and every refiner), ``samples/ramachandran.png`` (reference vs every row) and
   ``samples/coverage_curves.{png,json}`` (COV-R and COV-P against τ in Å, the MD floor dashed).

``--steps`` sets every network's steps, ``--sampler-steps`` the base sampler, ``--num-samples`` the conformers per
row. Budget: :func:`ala2_budget`; its measured wall times are in ``docs/results/ala2``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bfr_fast.data.augment import RefinerAugmentation
from bfr_fast.data.molecules import (
    BASINS,
    MOLECULAR_SYSTEMS,
    InternalCoordinates,
    MolecularSystem,
    MoleculeDataset,
    Standardizer,
    create_system,
    load_trajectory,
    molecule_dataset,
    openmm_topology,
    reference_dataset,
)
from bfr_fast.losses import EpsPredictionLoss, FlowMatchingLoss
from bfr_fast.metrics.molecular import ANGSTROMS_PER_NM, energy_error, molecular_metrics, openmm_energies
from bfr_fast.models import MLP
from bfr_fast.paths import DDPMSchedule, ProbabilityFlowVelocity
from bfr_fast.pipelines.refinement import (
    REFINERS,
    Distillation,
    Distilled,
    cached_inversion,
    cached_pool,
    distill_refiners,
    distillation_note,
    fit_refiners,
    table_candidates,
)
from bfr_fast.pipelines.sampling import SamplerSpec, source_noise
from bfr_fast.pipelines.training import fit_network
from bfr_fast.refiners import FrozenGenerator, InversionCache, Refiner, SamplePool
from bfr_fast.report import markdown_table
from bfr_fast.report.molecular_plots import (
    plot_coverage_curves,
    plot_energy_histograms,
    plot_ramachandran,
    write_coverage_curves,
)
from bfr_fast.solvers.ode_solver import VelocityModel
from bfr_fast.train.options import default_cache_dir
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.common import base_steps, batch_size, optimisation, steps

log = logging.getLogger("bfr_fast")


@dataclass(frozen=True)
class Scoring:
    """How one system's conformers are scored.

    Attributes:
        threshold_angstrom: COV threshold τ on heavy-atom RMSD, in Å.
        energy_cutoff: kJ/mol; generated conformers above it are left out of the energy error, and how many were
            left out is reported beside it.
        curve_angstrom: Range ``(lowest, highest)`` in Å of the COV-against-τ curves
            (``samples/coverage_curves.{png,json}``).
        source: Where τ and the cut-off come from, for the results' text.
    """

    threshold_angstrom: float
    energy_cutoff: float
    curve_angstrom: tuple[float, float]
    source: str

    @property
    def threshold_nm(self) -> float:
        """τ in nm, the coordinates' unit."""
        return self.threshold_angstrom / ANGSTROMS_PER_NM

    @property
    def curve(self) -> tuple[float, ...]:
        """The curves' thresholds in Å: 41 log-spaced values over the range, plus the table's τ, so that the
        curves hold the table's coverages exactly."""
        return tuple(float(tau) for tau in np.unique(np.append(np.geomspace(*self.curve_angstrom, 41),
                                                               self.threshold_angstrom)))


ALA2_SCORING = Scoring(
    threshold_angstrom=0.05, energy_cutoff=500.0, curve_angstrom=(0.01, 1.0),
    source="τ is the paper's ALA2 value; the cut-off is this recipe's choice for ALA2 (about 200 kT at 300 K; "
           "its MD's energies lie between about -120 and -30 kJ/mol)")
"""Alanine dipeptide and user trajectories: τ = 0.05 Å, the paper's Table 5 value for ALA2 (0.005 nm). At the
0.5 Å used before, every row covered 100 % (the MD's own AMR is about 0.08 Å), so coverage could not tell rows
apart."""

CHIGNOLIN_SCORING = Scoring(
    threshold_angstrom=0.35, energy_cutoff=2000.0, curve_angstrom=(0.05, 5.0),
    source="τ and the cut-off are the paper's chignolin values (Table 5 and its text, which keeps E < 2000 and "
           "gives no unit; read here as kJ/mol)")
"""Chignolin: τ = 0.35 Å and energies truncated at 2000, both the paper's (its AMR values are about 0.39 Å)."""

SCORING: dict[str, Scoring] = {"ala2": ALA2_SCORING, "chignolin": CHIGNOLIN_SCORING}
"""Scoring of each built-in system; a user's trajectory is scored like ALA2."""

FLOOR_LABEL = "MD training frames (floor)"

DATA_NAME = "ala2"
"""The default ``--data``."""

BASES = ("fm", "ddpm")
"""Kinds of base model: OT-CFM flow (``ala2``) or DDPM through its probability-flow ODE (``ala2-ddpm``)."""


@dataclass(frozen=True)
class Ala2Budget:
    """Network sizes and training budget of the ``ala2`` recipe.

    Attributes:
        base_steps: Training steps of the base flow.
        refiner_steps: Training steps of each refiner.
        sampler_steps: Euler steps of the base sampler :math:`G`.
        hidden: Width of the base MLP.
        depth: Residual blocks of the base MLP.
        refiner_hidden: Width of each refiner MLP.
        refiner_depth: Residual blocks of each refiner MLP.
        batch_size: Training batch size of every network.
        lr: Peak learning rate of every network.
        num_samples: Generated conformers per row.
        teacher_steps: Euler steps of the DFR and the LFR when they make their 1-NFE students' pairs.
        distill_steps: Fine-tuning steps of each 1-NFE student (``--steps`` overrides it too).
        distill_pairs: Pairs of each student (fresh base samples for the DFR's, fresh noise for the LFR's).
    """

    base_steps: int = 8000
    refiner_steps: int = 3000
    sampler_steps: int = 20
    hidden: int = 256
    depth: int = 4
    refiner_hidden: int = 256
    refiner_depth: int = 3
    batch_size: int = 256
    lr: float = 1e-3
    num_samples: int = 10_000
    teacher_steps: int = 10
    distill_steps: int = 400
    distill_pairs: int = 3000


def ala2_budget() -> Ala2Budget:
    """The default budget: sized for a CPU job of minutes (``docs/results/ala2``)."""
    return Ala2Budget()


def parse_data(name: str | None) -> tuple[MolecularSystem, float, int]:
    """``--data`` for this recipe: a built-in system's default MD (``ala2``, the default, or ``chignolin``) or
    ``NAME:NANOSECONDS[:FRAMES]``.

    Returns:
        ``(system, nanoseconds, frames)`` of the reference MD.

    Raises:
        ValueError: Another data set, or a length or frame count that is not positive.
    """
    spec = name or DATA_NAME
    parts = spec.split(":")
    if parts[0] not in MOLECULAR_SYSTEMS or len(parts) > 3:
        raise ValueError(f"--data: the ala2 recipe takes a system of {sorted(MOLECULAR_SYSTEMS)} as "
                         f"NAME[:NANOSECONDS[:FRAMES]], or a trajectory file, got {spec!r}")
    system = MOLECULAR_SYSTEMS[parts[0]]
    try:
        nanoseconds = float(parts[1]) if len(parts) > 1 else system.nanoseconds
        frames = int(parts[2]) if len(parts) > 2 else system.frames
    except ValueError:
        raise ValueError(f"--data: NANOSECONDS must be a number and FRAMES an int, got {spec!r}") from None
    if not 0 < nanoseconds < float("inf") or frames < 20:
        raise ValueError(f"--data: expected a finite NANOSECONDS > 0 and FRAMES >= 20, got {spec!r}")
    return system, nanoseconds, frames


def is_builtin(data: str | None) -> bool:
    """Whether ``--data`` names a built-in system's MD (``ala2[:...]``, ``chignolin[:...]``) rather than a
    trajectory file."""
    return data is None or data.split(":")[0] in MOLECULAR_SYSTEMS


def scoring_for(data: str | None) -> Scoring:
    """The :class:`Scoring` of ``--data``: its built-in system's, or ALA2's for a user's trajectory."""
    return SCORING[parse_data(data)[0].name] if is_builtin(data) else ALA2_SCORING


# Argument names of the data layer's errors, and the flags a CLI user typed for them.
_FLAGS = (("topology_path:", "--topology:"), ("trajectory_paths:", "--data:"), ("selection:", "--selection:"),
          ("n_frames must be", "--data: the trajectory's frame count must be"))


def _as_flag(message: str) -> str:
    for argument, flag in _FLAGS:
        if message.startswith(argument):
            return flag + message[len(argument):]
    return message


def load_trajectory_dataset(data: str | Path, topology: str | Path | None,
                            selection: str | None = None) -> MoleculeDataset:
    """A user's trajectory as the recipe's data set: selected atoms, aligned, centred, split in time blocks.

    The same preprocessing as the built-in MD (:func:`~bfr_fast.data.molecules.molecule_dataset` with
    ``align=True``): the atoms of ``selection`` are kept, every frame is superposed onto the first by its heavy
    atoms and centred, and the frames, taken in file order as time order, are split into training and test
    frames by :func:`~bfr_fast.data.molecules.block_split` (20 blocks, a fifth held out).

    Args:
        data: a trajectory file mdtraj reads (DCD, XTC, TRR, NetCDF, PDB, HDF5, ...) or a ``.npz`` of
            coordinates (see :func:`~bfr_fast.data.molecules.load_trajectory`).
        topology: its topology (a PDB); may be ``None`` for a PDB or HDF5 trajectory.
        selection: the atoms to keep, in mdtraj's selection language; ``None`` keeps every atom.

    Returns:
        The data set, named after the trajectory file.

    Raises:
        ValueError: one line naming the CLI flag: a missing trajectory, a trajectory that does not match its
            topology, a selection that cannot be parsed or selects nothing, fewer than 20 frames.
        FileNotFoundError: a topology file that does not exist.
    """
    path = Path(data).expanduser()
    if not path.is_file():
        raise ValueError(f"--data: {str(data)!r} is neither a system of {sorted(MOLECULAR_SYSTEMS)} "
                         "(NAME[:NANOSECONDS[:FRAMES]]) nor a trajectory file; pass an existing file (DCD, XTC, "
                         "PDB, HDF5, ...) and its --topology")
    try:
        trajectory = load_trajectory(topology, path)
        return molecule_dataset(trajectory, path.stem, align=True, selection=selection,
                                provenance={"trajectory": str(path), "topology": None if topology is None
                                            else str(topology), "frames": trajectory.n_frames})
    except ValueError as error:
        raise ValueError(_as_flag(str(error))) from None


def load_data(ctx: RunContext) -> MoleculeDataset:
    """The recipe's data set: a built-in system's aligned MD (alanine dipeptide by default; run first if it is not
    in the cache), or the user's ``--data`` trajectory with its ``--topology``; either cut to ``--selection``."""
    options = ctx.options
    if options.data is not None and not is_builtin(options.data):
        return load_trajectory_dataset(options.data, options.topology, options.selection)
    system, nanoseconds, frames = parse_data(options.data)
    if options.topology is not None:
        raise ValueError(f"--topology: only with --data TRAJECTORY (the built-in {system.name} MD has its own); "
                         "drop --topology or pass your trajectory file as --data")
    try:
        return reference_dataset(system, options.cache_dir or default_cache_dir(), nanoseconds, frames, seed=0,
                                 align=True, progress=ctx.dist.is_main, selection=options.selection)
    except ValueError as error:
        raise ValueError(_as_flag(str(error))) from None


@dataclass(frozen=True)
class EnergyModel:
    """How a run scores energies.

    Attributes:
        absent: Why there are no energies (the force field cannot be built for the topology), or None.
        constrain: Whether generated conformers are projected onto the MD's X-H constraints first.
    """

    absent: str | None
    constrain: bool

    @property
    def constraints(self) -> str:
        """The ``--energy-constraints`` value this stands for."""
        return "hbonds" if self.constrain else "none"


Encoder = Standardizer | InternalCoordinates
"""What the networks model: flat standardised Cartesian coordinates, or standardised internal coordinates."""


def coordinates_for(options: Any) -> str:
    """``--coordinates``, or the built-in system's default (``cartesian`` for a user's trajectory)."""
    if options.coordinates is not None:
        return options.coordinates
    return parse_data(options.data)[0].coordinates if is_builtin(options.data) else "cartesian"


def fit_encoder(data: MoleculeDataset, coordinates: str) -> Encoder:
    """The encoder of ``coordinates`` fitted on the training frames.

    Raises:
        ValueError: one line naming ``--coordinates`` when internal coordinates cannot be built for the topology
            (atoms not bonded into one molecule, e.g. a selection that cuts the chain).
    """
    if coordinates == "cartesian":
        return Standardizer.fit(data.train_x)
    try:
        return InternalCoordinates.fit(data.train_x, data.topology)
    except ValueError as error:
        raise ValueError(f"--coordinates internal: {error}") from None


def energy_model(topology: Any, constraints: str | None) -> EnergyModel:
    """Energies for ``topology`` under the reference MD's force field when it can be built, else why not.

    Args:
        topology: the data set's (selected) topology.
        constraints: ``--energy-constraints`` (``"hbonds"``, the default when None, or ``"none"``).
    """
    try:
        create_system(openmm_topology(topology), constraints=None)
    except ValueError as error:
        return EnergyModel(absent=str(error), constrain=constraints != "none")
    return EnergyModel(absent=None, constrain=constraints != "none")


def _mlp(dim: int, hidden: int, depth: int) -> MLP:
    return MLP(dim, hidden=hidden, depth=depth)


def train_base(ctx: RunContext, budget: Ala2Budget, x: torch.Tensor, base: str) -> VelocityModel:
    """The base velocity model on standardised coordinates ``x``: OT-CFM MLP, or DDPM MLP as its PF-ODE."""
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}")
    network = _mlp(x.shape[1], budget.hidden, budget.depth)
    config = optimisation(ctx, base_steps(ctx, budget.base_steps), budget.lr)
    ws, size = ctx.workspace, batch_size(ctx, budget.batch_size)
    if base == "fm":
        return fit_network(ws, "base", network, FlowMatchingLoss(coupling="ot"), x, None, config, size).model
    schedule = DDPMSchedule()
    eps = fit_network(ws, "base", network, EpsPredictionLoss(schedule), x, None, config, size).model
    return ProbabilityFlowVelocity(eps, schedule).to(ctx.device)


def train_refiners(ctx: RunContext, budget: Ala2Budget, x: torch.Tensor, pool: SamplePool,
                   cache: InversionCache) -> dict[str, Refiner]:
    """Noise injection, FMRefiner, DFR and LFR MLPs on standardised coordinates ``x``; keyed by method name.

    The DFR's sources are augmented with noise only: a blur has no meaning on a coordinate vector."""
    config = optimisation(ctx, steps(ctx, budget.refiner_steps), budget.lr)
    dim = x.shape[1]
    noise_only = RefinerAugmentation(blur_prob=0.0, noise_prob=0.5, noise_std=(0.0, 0.1))
    # The networks are built before any is trained, as this recipe always has: the same initial weights for the
    # same --seed as its published tables.
    networks = iter([_mlp(dim, budget.refiner_hidden, budget.refiner_depth) for _ in REFINERS])
    return fit_refiners(ctx.workspace, x, None, pool, cache, lambda: next(networks), config,
                        batch_size(ctx, budget.batch_size), augmentation=noise_only)


def distill(ctx: RunContext, budget: Ala2Budget, generator: FrozenGenerator, refiners: dict[str, Refiner],
            dim: int) -> dict[str, Distilled]:
    """The DFR's and the LFR's 1-NFE students (:func:`~bfr_fast.pipelines.refinement.distill_refiners`: reflow on
    the teacher's ``teacher_steps``-step map, warm-started from the teacher), keyed ``<teacher>_reflow``.
    The image recipes' plan with this recipe's networks' batch size and learning rate; ``distill_pairs`` is 3000
    (ten times the images' per-class 300: one unconditional distribution of ``dim`` features), not tuned."""
    plan = Distillation(budget.teacher_steps, budget.distill_pairs, 0.0,
                        optimisation(ctx, steps(ctx, budget.distill_steps), budget.lr),
                        batch_size(ctx, budget.batch_size))
    return distill_refiners(ctx.workspace, generator, refiners, (dim,), None, plan)


def score(data: MoleculeDataset, conformers: torch.Tensor, reference_energies: np.ndarray | None,
          model: EnergyModel, scoring: Scoring) -> tuple[dict[str, Any], np.ndarray | None]:
    """The molecular metrics of ``conformers`` (nm) against the test frames at ``scoring``'s τ and energy cut-off,
    their COV-against-τ curve (nm, under ``"coverage_curve"``), and their energies (kJ/mol; None when
    ``model.absent``).

    The energies are those of the conformers projected onto the MD's X-H constraints when ``model.constrain``;
    COV/AMR and the basins are always of the conformers as generated. ``reference_energies`` may be None only
    when ``model.absent`` (else ValueError)."""
    curve = np.asarray(scoring.curve) / ANGSTROMS_PER_NM
    if model.absent is not None:
        metrics = molecular_metrics(conformers, data.test_x, data.topology, scoring.threshold_nm, energies=False,
                                    curve_thresholds=curve)
        metrics.update(energy_error_percent=None, energy_error_percent_uncut=None, mean_generated=None,
                       mean_reference=None, excluded_generated=None, n_generated=len(conformers),
                       energies_absent=model.absent)
        return metrics, None
    if reference_energies is None:
        raise ValueError("reference_energies: required unless model.absent says why there are no energies")
    energies = openmm_energies(conformers, data.topology, constrain=model.constrain)
    cutoff = scoring.energy_cutoff
    kept = bool((energies <= cutoff).any())  # NaN compares False: a broken frame is never kept
    metrics = molecular_metrics(conformers, data.test_x, data.topology, scoring.threshold_nm,
                                reference_energies=reference_energies, generated_energies=energies,
                                energy_cutoff=cutoff if kept else None, curve_thresholds=curve)
    metrics["energy_constraints"] = model.constraints
    metrics["energy_error_percent_uncut"] = energy_error(energies, reference_energies)["energy_error_percent"]
    if not kept:  # every conformer is above the cut-off: there is no mean to compare, say so
        metrics.update(energy_error_percent=None, mean_generated=None, cutoff=cutoff,
                       excluded_generated=len(energies))
    return metrics, energies


def _label(method: str, nfe: int) -> str:
    return method if method == "base" else f"{method} {nfe} NFE"


def table(rows: list[dict[str, Any]], scoring: Scoring) -> str:
    """The results table, every header with its unit: coverages in % at ``scoring``'s τ in Å, AMRs in Å, the energy
    error in % with its exclusion count ("—" where there are no energies), and basins in % (dipeptides only)."""
    basins = all("basins" in row for row in rows)
    shown = []
    for row in rows:
        out = {key: row.get(key) for key in ("method", "nfe_base", "nfe_refiner")}
        out.update({key: 100 * row[key] for key in ("cov_r", "cov_p")})
        out.update({key: ANGSTROMS_PER_NM * row[key] for key in ("amr_r", "amr_p")})
        error = row["energy_error_percent"]
        out["energy"] = "—" if error is None else f"{error:+.2f}"
        out["excluded"] = "—" if row["excluded_generated"] is None \
            else f"{row['excluded_generated']}/{row['n_generated']}"
        if basins:
            out.update({basin: 100 * row["basins"][basin] for basin in BASINS[:2]})
        shown.append(out)
    tau = f"τ = {scoring.threshold_angstrom:g} Å"
    columns = [("method", "method"), ("nfe_base", "NFE base"), ("nfe_refiner", "NFE refiner"),
               ("cov_r", f"COV-R (%, {tau})"), ("cov_p", f"COV-P (%, {tau})"), ("amr_r", "AMR-R (Å)"),
               ("amr_p", "AMR-P (Å)"), ("energy", "energy error (%)"),
               ("excluded", f"excluded (E > {scoring.energy_cutoff:g} kJ/mol)")]
    if basins:
        columns += [(BASINS[0], "β/C7eq (%)"), (BASINS[1], "αR (%)")]
    return markdown_table(shown, columns)


@torch.no_grad()
def evaluate(ctx: RunContext, data: MoleculeDataset, encoder: Encoder, generator: FrozenGenerator,
             refiners: dict[str, Refiner], num_samples: int, model: EnergyModel,
             scoring: Scoring) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, str]]:
    """Scores every row from one noise draw, plus the MD training frames as the floor; writes the figures
    (energy histograms when there are energies, Ramachandran plots for a dipeptide, COV-against-τ curves as PNG
    and JSON) and returns the rows, the floor and the figures' paths in the run folder."""
    seed = ctx.workspace.seed
    reference_energies = None if model.absent is not None else openmm_energies(data.test_x, data.topology)
    energies: dict[str, np.ndarray] = {}
    if reference_energies is not None:
        energies["reference (MD test)"] = reference_energies
    conformers: dict[str, torch.Tensor] = {"reference (MD test)": data.test_x}

    count = min(num_samples, data.train_x.shape[0])
    pick = torch.randperm(data.train_x.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
    floor, _ = score(data, data.train_x[pick], reference_energies, model, scoring)
    floor.update(method="md_train", nfe_base=None, nfe_refiner=None, seed=seed)
    curves = {FLOOR_LABEL: floor.pop("coverage_curve")}

    rows = []
    noise = source_noise(num_samples, (encoder.dim,), seed, ctx.device)
    for candidate in table_candidates(generator, refiners, noise, None, seed, progress=ctx.dist.is_main):
        method = candidate.method
        samples, nfe_base, nfe_refiner = candidate.make()
        nfe = nfe_refiner  # labels by true NFE: one RK4 step is 4
        xyz = encoder.decode(samples.float()).cpu()
        metrics, row_energies = score(data, xyz, reference_energies, model, scoring)
        curves[_label(method, nfe)] = metrics.pop("coverage_curve")
        row = {"method": method, "solver": candidate.solver, "nfe_base": nfe_base, "nfe_refiner": nfe_refiner,
               "seed": seed, **metrics}
        log.info("%s: %s", _label(method, nfe), {k: row[k] for k in ("cov_r", "cov_p", "amr_r", "amr_p",
                                                                     "energy_error_percent", "excluded_generated")})
        rows.append(row)
        if row_energies is not None:
            energies[_label(method, nfe)] = row_energies
        conformers[_label(method, nfe)] = xyz
    figures = {}
    if model.absent is None:
        plot_energy_histograms(energies, ctx.folder.samples("energies"))
        figures["energies"] = "samples/energies.png"
    if "basins" in floor:  # one phi/psi pair: a dipeptide
        plot_ramachandran(conformers, data.topology, ctx.folder.samples("ramachandran"))
        figures["ramachandran"] = "samples/ramachandran.png"
    in_angstrom = {name: {**curve, "threshold": list(scoring.curve)} for name, curve in curves.items()}
    write_coverage_curves(in_angstrom, ctx.folder.root / "samples" / "coverage_curves.json", "angstrom",
                          scoring.threshold_angstrom, floor=FLOOR_LABEL)
    plot_coverage_curves(in_angstrom, ctx.folder.samples("coverage_curves"), "Å", scoring.threshold_angstrom,
                         floor=FLOOR_LABEL)
    figures.update(coverage_curves="samples/coverage_curves.png", coverage_curves_json="samples/coverage_curves.json")
    return rows, floor, figures


def _notes(data: MoleculeDataset, rows: list[dict[str, Any]], floor: dict[str, Any], model: EnergyModel,
           scoring: Scoring, error: dict[str, float], figures: dict[str, str]) -> str:
    """The text under the results table: what was measured and how, the floor, the inversion error, figures."""
    coverage = (f"COV/AMR on the {len(data.heavy_atom_indices)} heavy atoms, τ = {scoring.threshold_angstrom:g} Å "
                f"({scoring.threshold_nm:g} nm); COV against τ from {scoring.curve[0]:g} to {scoring.curve[-1]:g} Å "
                f"for every row, with the MD floor, in samples/coverage_curves.png (and .json); {scoring.source}.")
    if model.absent is not None:
        energy = f"No energies: {model.absent}."
    else:
        how = ("after projecting each generated conformer onto the MD's X–H bond constraints (OpenMM "
               "applyConstraints; --energy-constraints none scores them as generated)" if model.constrain
               else "of the conformers as generated (X–H bonds flexible; the MD's are constrained)")
        energy = (f"Energy error = (mean E_gen − mean E_ref)/|mean E_ref| × 100 with the MD's force field, {how} "
                  f"(mean E_ref = {floor['mean_reference']:.2f} kJ/mol), leaving out the generated conformers "
                  f"above {scoring.energy_cutoff:g} kJ/mol (count beside it); without the cut-off: "
                  + ", ".join(f"{_label(r['method'], r['nfe_refiner'])} {r['energy_error_percent_uncut']:+.3g}%"
                              for r in rows) + ".")
    floor_text = (f"Floor: {floor['n_generated']} MD training frames score COV-R {100 * floor['cov_r']:.1f}%, "
                  f"COV-P {100 * floor['cov_p']:.1f}%, AMR-R {ANGSTROMS_PER_NM * floor['amr_r']:.3f} Å, "
                  f"AMR-P {ANGSTROMS_PER_NM * floor['amr_p']:.3f} Å")
    if floor["energy_error_percent"] is not None:
        floor_text += f", energy error {floor['energy_error_percent']:+.2f}%"
    if "basins" in floor:
        floor_text += f", β/C7eq {100 * floor['basins'][BASINS[0]]:.1f}%, αR {100 * floor['basins'][BASINS[1]]:.1f}%"
    images = "\n\n".join(f"![{name}]({path})" for name, path in figures.items() if path.endswith(".png"))
    return (f"{coverage} {energy}\n\n{floor_text}.\n\nInversion of the training frames through the base sampler: "
            f"RMS reconstruction error (standardised units) mean {error['mean']:.3g}, median {error['median']:.3g}, "
            f"p95 {error['p95']:.3g}, max {error['max']:.3g}.\n\n{images}")


def run(ctx: RunContext, base_kind: str = "fm") -> RunResult:
    budget = ala2_budget()
    data = load_data(ctx)
    scoring = scoring_for(ctx.options.data)
    model = energy_model(data.topology, ctx.options.energy_constraints)
    if model.absent is not None:
        log.info("energies: none (%s)", model.absent)
    coordinates = coordinates_for(ctx.options)
    encoder = fit_encoder(data, coordinates)
    x = encoder.encode(data.train_x)
    base = train_base(ctx, budget, x, base_kind)
    generator = SamplerSpec("euler", ctx.options.sampler_steps or budget.sampler_steps).generator(base)
    pool = cached_pool(ctx.workspace, generator, (x.shape[1],), x.shape[0], None)
    cache = cached_inversion(ctx.workspace, generator, x, None)
    refiners = train_refiners(ctx, budget, x, pool, cache)
    students = distill(ctx, budget, generator, refiners, x.shape[1])
    refiners.update({name: student.refiner for name, student in students.items()})
    if not ctx.dist.is_main:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")
    n = ctx.options.num_samples or budget.num_samples
    rows, floor, figures = evaluate(ctx, data, encoder, generator, refiners, n, model, scoring)

    error = cache.error_summary()
    provenance = {key: value for key, value in data.provenance.items() if key != "cache_path"}
    costs = {name: student.cost for name, student in students.items()}
    system = parse_data(ctx.options.data)[0] if is_builtin(ctx.options.data) else None
    length = f"{provenance.get('nanoseconds', '?')} ns" if system else provenance["trajectory"]
    title = (
        f"BFR on {system.title if system else data.name} ({data.train_x.shape[0]} training / "
        f"{data.test_x.shape[0]} test MD frames, {length}, {data.n_atoms} atoms, {coordinates} coordinates, "
        f"{encoder.dim} features): base = residual MLP "
        f"({'OT-CFM' if base_kind == 'fm' else 'DDPM, probability-flow ODE'}), Euler {generator.num_steps} steps; "
        f"{n} conformers per row from the same noise (seed {ctx.options.seed}), scored against the test frames"
    )
    metrics = {
        "recipe": "ala2" if base_kind == "fm" else "ala2-ddpm",
        "dataset": data.name,
        "system": system.name if system else None,
        "base": base_kind,
        "provenance": provenance,
        "selection": ctx.options.selection,
        "n_atoms": data.n_atoms,
        "alignment": "Kabsch onto the first frame by heavy atoms; no rotation augmentation",
        "coordinates": coordinates,
        "features": encoder.dim,
        "threshold_nm": scoring.threshold_nm,
        "threshold_angstrom": scoring.threshold_angstrom,
        "energy_cutoff_kj_mol": scoring.energy_cutoff,
        "scoring_source": scoring.source,
        "energies_absent": model.absent,
        "energy_constraints": None if model.absent else model.constraints,
        "budget": {**asdict(budget), "steps_override": ctx.options.steps,
                   "base_steps_override": ctx.options.base_steps, "sampler_steps": generator.num_steps,
                   "num_samples": n},
        "base_sampler": {"method": generator.method, "steps": generator.num_steps},
        "inversion_error": error,
        "distillation": costs,
        "md_train": floor,
        "rows": rows,
        "figures": figures,
    }
    notes = _notes(data, rows, floor, model, scoring, error, figures)
    distillation = distillation_note(costs)
    return RunResult(metrics, f"## {title}\n\n{table(rows, scoring)}\n{notes}\n\n{distillation}\n")


def run_ddpm(ctx: RunContext) -> RunResult:
    return run(ctx, base_kind="ddpm")


READS = frozenset({"base_steps", "sampler_steps", "topology", "selection", "energy_constraints", "coordinates"})
"""Molecules: no image data root, no Inception; a user's trajectory, its atoms, the energies' constraints, what
the networks model."""
RECIPE = Recipe("ala2", "Table 5: alanine dipeptide (or --data chignolin), base MLP flow, baselines, DFR and LFR at "
                        "1/10 NFE, COV/AMR, energy error", run, reads=READS)
DDPM_RECIPE = Recipe("ala2-ddpm", "ala2 with a DDPM base sampled through its probability-flow ODE", run_ddpm,
                     reads=READS)
