"""The README's result tables and benchmark summary, written from the committed result files.

Each ``<!-- generated: NAME -->`` … ``<!-- /generated: NAME -->`` block of ``README.md`` is the output of one
function in :data:`BLOCKS`: it reads its run's files under ``docs/results`` or ``benchmarks/results`` and returns
markdown, a one-line caption naming the run folder and the command that made it, then the table. No number in a
block is typed by hand, so the README shows what the files hold; a number that looks wrong is fixed in the run,
not here.

Command line, from the repository root::

    python -m bfr_fast.report.readme            # rewrite the blocks of README.md
    python -m bfr_fast.report.readme --check    # write nothing; exit 1 with a diff when README.md is stale
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bfr_fast.engine.run_folder import write_text_atomic
from bfr_fast.report.tables import markdown_table, mean_std

GENERATOR = "python -m bfr_fast.report.readme"
ECOSYSTEM_LIBRARIES = {
    "torchcfm": "torchcfm UNet, OT-CFM",
    "diffusers": "diffusers DDPM UNet2DModel",
    "flow_matching": "flow_matching-convention UNet, CondOT path",
}


class ResultFileMissing(FileNotFoundError):
    """A file a README block is written from is not in the repository."""


def _file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise ResultFileMissing(f"{relative}: no such file under {root} (a README block is written from it)")
    return path


def _json(root: Path, relative: str) -> Any:
    return json.loads(_file(root, relative).read_text())


def _run(root: Path, folder: str) -> tuple[str, Any, Mapping[str, Any]]:
    """A run folder's ``metrics.json`` (its path, for error messages, and its content) and the options of its
    ``config.json``."""
    path = f"{folder}/metrics.json"
    return path, _json(root, path), _json(root, f"{folder}/config.json")["options"]


def _wall_seconds(root: Path, relative: str) -> float:
    """The wall time in a GNU ``/usr/bin/time -v`` output ("Elapsed (wall clock) time (h:mm:ss or m:ss): 4:31.49")."""
    text = _file(root, relative).read_text()
    match = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if match is None:
        raise ValueError(f"{relative}: no 'Elapsed (wall clock) time' line (expected /usr/bin/time -v output)")
    seconds = 0.0
    for part in match.group(1).split(":"):
        seconds = 60 * seconds + float(part)
    return seconds


def _wall(root: Path, relative: str) -> str:
    """The wall time of a ``/usr/bin/time -v`` output as ``m:ss`` (its first run where the file holds several)."""
    return _clock(_wall_seconds(root, relative))


def _clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour, rounded to the second."""
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _signed(value: float, decimals: int) -> str:
    # The README writes differences and energy errors with an explicit sign and a true minus.
    return f"{value:+.{decimals}f}".replace("-", "−")


def _count(value: int) -> str:
    return f"{value:,}".replace(",", " ") if value >= 10_000 else str(value)


def _mean_std(values: Sequence[float], mean_decimals: int, std_format: str) -> str:
    return mean_std(values, f".{mean_decimals}f", std_format)


def _ratio(value: float) -> str:
    return f"{value:.3g}"


def _span(values: Iterable[float], form: Callable[[float], str] = _ratio) -> str:
    values = list(values)
    low, high = form(min(values)), form(max(values))
    return low if low == high else f"{low}–{high}"


def _bold(text: str, when: bool) -> str:
    return f"**{text}**" if when else text


def _caption(run: str, command: str, source: str, timing: str | None = None) -> str:
    """A block's caption: the run folder (a link), the command that made the run (and ``timing``, how long it took),
    the files the block is read from."""
    took = f", {timing}" if timing else ""
    return f"Run [`{run}`]({run}): `{command}`{took}. Written from {source} by `{GENERATOR}`."


def _train_command(options: Mapping[str, Any], names: Sequence[str]) -> str:
    """``python -m bfr_fast.train`` with the run's options among ``names`` (those it set)."""
    flags = [f"--{name.replace('_', '-')} {options[name]}" for name in names if options.get(name) is not None]
    return " ".join(["python -m bfr_fast.train", *flags])


def _row(rows: Sequence[Mapping[str, Any]], path: str, **match: Any) -> Mapping[str, Any]:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    if len(found) != 1:
        raise ValueError(f"{path}: expected one row with {match}, found {len(found)}")
    return found[0]


def _fd_by_seed(metrics: Mapping[str, Any], path: str, method: str, nfe: int) -> list[float]:
    """A ``defar`` run's FD of ``method`` at ``nfe``, one per training seed, in the run's seed order."""
    return [_row(metrics["rows"], path, method=method, seed=s, nfe=nfe)["fd"] for s in metrics["seeds"]]


def ecosystem_table(root: Path) -> str:
    """The three libraries' generators refined (README "Refine your own generator").

    Per library: training steps (the last ``step N`` of its training log), the wall times of training and
    refinement (``/usr/bin/time -v``), and FD of the base and the two 1-NFE students as mean ± std over the
    evaluation seeds, the best of the three in bold; then the real-data floor.
    """
    folder = "docs/results/ecosystem"
    rows, floors = [], []
    for library, label in ECOSYSTEM_LIBRARIES.items():
        metrics_path = f"{folder}/{library}/metrics.json"
        metrics = _json(root, metrics_path)
        train_log = _file(root, f"{folder}/logs/{library}-train.log").read_text()
        steps = re.findall(r"^step (\d+):", train_log, flags=re.MULTILINE)
        if not steps:
            raise ValueError(f"{folder}/logs/{library}-train.log: no 'step N:' line")
        fds = {}
        for method, nfe in (("base", 0), ("dfr_reflow", 1), ("lfr_reflow", 1)):
            values = [r["fd"] for r in metrics["rows"] if r["method"] == method and r["nfe_refiner"] == nfe]
            if len(values) < 2:
                raise ValueError(f"{metrics_path}: {method} needs rows of two or more evaluation seeds")
            fds[method] = values
        best = min(fds, key=lambda m: statistics.fmean(fds[m]))
        cells = {m: _bold(_mean_std(v, 3, ".3f"), m == best) for m, v in fds.items()}
        rows.append({
            "generator": f"{label} ({steps[-1]} steps)",
            "train": _clock(_wall_seconds(root, f"{folder}/logs/{library}-train.time")),
            "refine": _clock(_wall_seconds(root, f"{folder}/logs/{library}-refine.time")),
            **cells,
        })
        floors.append(metrics["real"]["fd"])
    # Empty cells, not "—": the floor has no training, refinement or students.
    rows.append({"generator": "real training images (the floor)", "train": "", "refine": "",
                 "base": _span(floors, lambda v: f"{v:.3f}"), "dfr_reflow": "", "lfr_reflow": ""})
    columns = [("generator", "generator (its training)"), ("train", "train"), ("refine", "refine"),
               ("base", "base"), ("dfr_reflow", "DFR student, 1 NFE"), ("lfr_reflow", "LFR student, 1 NFE")]
    caption = _caption(f"{folder}/", "bash docs/results/ecosystem/run.sh runs/examples",
                       "`<library>/metrics.json`, `logs/<library>-train.log` and `logs/<library>-{train,refine}.time`")
    return caption + "\n\n" + markdown_table(rows, columns)


def bfr_digits_table(root: Path) -> str:
    """The main job over three training seeds: each run's evaluation-seed means, then mean ± std over the runs.

    The 1-NFE row with the lowest FD, and the highest recall at 1 NFE, are in bold.
    """
    folder = "docs/results/bfr-digits-seeds"
    result = _json(root, f"{folder}/aggregate.json")
    labels = (("base", 0, None, "base"), ("noise_injection", 1, None, "noise injection"),
              ("fmrefiner", 1, None, "FMRefiner"), ("dfr_reflow", 1, 10, "DFR + reflow"),
              ("lfr_reflow", 1, 10, "LFR + reflow"), ("dfr", 10, None, "DFR"), ("lfr", 10, None, "LFR"))
    groups = {}
    for method, nfe, _, _ in labels:
        runs = [r for r in result["per_run"]
                if r["method"] == method and r["nfe_refiner"] == nfe and r.get("solver") in (None, "euler")]
        if len(runs) < 2:
            raise ValueError(f"{folder}/aggregate.json: {method} at {nfe} NFE needs two or more training seeds")
        groups[method, nfe] = runs
    one_step = [key for key in groups if key[1] == 1]
    best_fd = min(one_step, key=lambda k: statistics.fmean(r["fd"] for r in groups[k]))
    best_recall = max(one_step, key=lambda k: statistics.fmean(r["recall"] for r in groups[k]))
    rows = []
    for method, nfe, teacher, label in labels:
        runs, key = groups[method, nfe], (method, nfe)
        base_nfe = runs[0]["nfe_base"]
        nfe_text = f"{base_nfe} + {_bold(str(nfe), key == best_fd)}" + (f" (teacher {teacher})" if teacher else "")
        rows.append({
            "row": _bold(label, key == best_fd),
            "nfe": nfe_text,
            "fd": _bold(_mean_std([r["fd"] for r in runs], 3, ".2g"), key == best_fd),
            "precision": f"{statistics.fmean(r['precision'] for r in runs):.3f}",
            "recall": _bold(f"{statistics.fmean(r['recall'] for r in runs):.3f}", key == best_recall),
        })
    columns = [("row", "row"), ("nfe", "NFE base + refiner"), ("fd", f"FD-{result['extractor']}"),
               ("precision", "Precision"), ("recall", "Recall")]
    seeds = ", ".join(str(r["seed"]) for r in result["runs"])
    caption = _caption(f"{folder}/", f"python -m bfr_fast.train --recipe {result['recipe']} --seed S",
                       f"its `aggregate.json` (S = {seeds})")
    return caption + "\n\n" + markdown_table(rows, columns)


def defar_table(root: Path) -> str:
    """DEFAR against flow matching at 10 NFE: each side's FD over training seeds, the paired difference, the wins."""
    folder = "docs/results/defar-digits-v2"
    path, metrics, options = _run(root, folder)
    nfe, seeds = 10, metrics["seeds"]

    def steps(method: str) -> int:
        return _row(metrics["rows"], path, method=method, seed=seeds[0], nfe=nfe)["train_steps"]

    comparisons = (
        (f"equal steps ({steps('fm')})", "fm", "defar"),
        (f"equal compute (fm {steps('fm_equal_compute')} steps)", "fm_equal_compute", "defar"),
        (f"fine-tuning a {steps('fm')}-step fm network {steps('finetune-fm') - steps('fm')} more steps",
         "finetune-fm", "finetune-defar"),
    )
    rows = []
    for label, fm_method, defar_method in comparisons:
        fm_fd, defar_fd = _fd_by_seed(metrics, path, fm_method, nfe), _fd_by_seed(metrics, path, defar_method, nfe)
        differences = [d - f for f, d in zip(fm_fd, defar_fd, strict=True)]
        rows.append({
            "comparison": label,
            "fm": _mean_std(fm_fd, 2, ".2f"),
            "defar": _mean_std(defar_fd, 2, ".2f"),
            "difference": f"{_signed(statistics.fmean(differences), 2)} ± {statistics.stdev(differences):.2f}",
            "wins": f"{sum(d < 0 for d in differences)} of {len(differences)}",
        })
    columns = [("comparison", "comparison"), ("fm", f"fm side, FD {nfe} NFE"), ("defar", f"defar, FD {nfe} NFE"),
               ("difference", "defar − fm (same seed)"), ("wins", "seeds where defar wins")]
    command = f"{_train_command(options, ('recipe',))} --select {','.join(metrics['parts'])}"
    caption = _caption(f"{folder}/", command,
                       f"its `metrics.json` (training seeds {', '.join(map(str, seeds))})")
    return caption + "\n\n" + markdown_table(rows, columns)


DEFAR_MNIST5K = "docs/results/defar-mnist5k-v3"
DEFAR_MNIST5K_ROWS = (  # (comparison, DEFAR side's method, its run under DEFAR_MNIST5K); fm's side is that run's
    ("ADR + FC (DEFAR)", "finetune-defar", "finetune-3seeds"),  # finetune-fm, paired by training seed
    ("ADR alone", "finetune-defar_no_fc", "finetune-ablation"),
    ("FC alone", "finetune-defar_no_adr", "finetune-ablation"),
)
DEFAR_GOAL = 0.9
"""Issue 28's mark: DEFAR at or below this fraction of FM's FD on every training seed."""


def defar_mnist5k_table(root: Path) -> str:
    """DEFAR against flow matching on mnist5k, where FC's premise holds: a converged fm network fine-tuned with each
    loss, FD (EMA weights) at 10 and 50 NFE as mean ± std over each run's training seeds, the ratio to fm's per
    seed (mean ± std) and the seeds at or below :data:`DEFAR_GOAL` of fm's."""
    runs: dict[str, tuple[str, Any, Mapping[str, Any]]] = {}
    rows, start, extra = [], None, None
    for label, method, run in DEFAR_MNIST5K_ROWS:
        folder = f"{DEFAR_MNIST5K}/{run}"
        if folder not in runs:
            runs[folder] = _run(root, folder)
        path, metrics, _ = runs[folder]
        seeds = metrics["seeds"]
        fm_row = _row(metrics["rows"], path, method="finetune-fm", seed=seeds[0], nfe=10)
        budget = (fm_row["start_steps"], fm_row["train_steps"] - fm_row["start_steps"])
        if start is not None and budget != (start, extra):
            raise ValueError(f"{path}: fine-tuning {budget[1]} steps from {budget[0]}, the table's other runs "
                             f"{extra} from {start}")
        start, extra = budget
        row = {"comparison": label, "seeds": str(len(seeds))}
        goal = []
        for nfe in (10, 50):
            fm, it = _fd_by_seed(metrics, path, "finetune-fm", nfe), _fd_by_seed(metrics, path, method, nfe)
            ratios = [d / f for f, d in zip(fm, it, strict=True)]
            row.update({f"fm{nfe}": _mean_std(fm, 3, ".3f"), f"it{nfe}": _mean_std(it, 3, ".3f"),
                        f"ratio{nfe}": _mean_std(ratios, 2, ".2f")})
            goal.append(f"{sum(r <= DEFAR_GOAL for r in ratios)} of {len(ratios)}")
        row["goal"] = " / ".join(goal)
        rows.append(row)
    columns = [("comparison", f"{extra} steps of, from fm at {start}"), ("seeds", "training seeds")]
    for nfe in (10, 50):
        columns += [(f"fm{nfe}", f"fm, FD {nfe} NFE"), (f"it{nfe}", f"it, FD {nfe} NFE"),
                    (f"ratio{nfe}", f"÷ fm, {nfe} NFE")]
    columns.append(("goal", f"seeds ≤ {DEFAR_GOAL:g}× fm (10 / 50 NFE)"))
    captions = []
    for folder, (_, metrics, options) in runs.items():
        seeds = metrics["seeds"]
        command = f"{_train_command(options, ('recipe', 'data', 'seeds'))} --select {options['select']}"
        captions.append(f"[`{folder}/`]({folder}/): `{command}` (training seed{'s' if len(seeds) > 1 else ''} "
                        f"{', '.join(map(str, seeds))})")
    caption = (f"Runs {'; '.join(captions)}. Written from their `metrics.json` by `{GENERATOR}`; fm's side of each "
               "row is its own run's `finetune-fm`, paired by training seed.")
    return caption + "\n\n" + markdown_table(rows, columns)


def defar_fc_bias(root: Path) -> str:
    """Why FC hurts, measured (README "DEFAR against flow matching on mnist5k"): on a converged fm network, the
    correlation between the FC weight and the sample's own residual |v_θ − u|, overall and by quarter of t_s, and
    the FC-weighted MSE over the plain one (``fc_bias.py``'s output)."""
    relative = f"{DEFAR_MNIST5K}/fc-bias-fm.json"
    result = _json(root, relative)
    overall, bands = result["all"], result["bands"]
    by_band = " / ".join(f"{b['corr_weight_residual']:.2f}" for b in bands)
    quarters = ", ".join(f"{b['t_s'][0]:g}–{b['t_s'][1]:g}" for b in bands)
    return (f"Measured on the seed-0 fm network, {result['images']} test images, γ = {result['gamma']:g}: the FC "
            f"weight correlates {overall['corr_weight_residual']:.2f} with the sample's own residual |v_θ − u| "
            f"({by_band} for t_s in {quarters}), and the FC-weighted MSE is {overall['fc_over_plain_mse']:.1f}× the "
            f"plain one (1× for a weight independent of the error). [`fc-bias-fm.json`]({relative}), from "
            f"`python {DEFAR_MNIST5K}/fc_bias.py`; written by `{GENERATOR}`.")


def defar_timing(root: Path) -> str:
    """How long the ``defar`` recipe's default takes (README "DEFAR against flow matching"), from its timed run."""
    folder = "docs/results/defar-digits-v2/timing"
    options = _json(root, f"{folder}/new-default/config.json")["options"]
    if options.get("select") is not None:
        raise ValueError(f"{folder}/new-default/config.json: the timed run must be the default (no --select)")
    time_file = f"{folder}/new-default/time-v.txt"
    return (f"The default `{_train_command(options, ('recipe',))}` runs the first two comparisons in "
            f"{_wall(root, time_file)} wall on this 2-core CPU ([timing]({folder}/README.md), "
            f"[`time-v.txt`]({time_file}); written by `{GENERATOR}`).")


def _molecule_rows(metrics: Mapping[str, Any], path: str,
                   selection: Sequence[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """The rows named by ``(label, method, NFE refiner)``, Euler where a refiner also has an RK4 row."""
    out = []
    for label, method, nfe in selection:
        match = {"method": method, "nfe_refiner": nfe}
        if nfe:
            match["solver"] = "euler"
        out.append({"label": label, **_row(metrics["rows"], path, **match)})
    return out


def _amr(row: Mapping[str, Any], decimals: int) -> str:
    # Stored in nm; the README quotes Å.
    return f"{10 * row['amr_r']:.{decimals}f} / {10 * row['amr_p']:.{decimals}f}"


def ala2_table(root: Path) -> str:
    """Alanine dipeptide, Cartesian coordinates, seed 0: energy error, excluded conformers, AMR, β/C7eq."""
    folder = "docs/results/ala2-coordinates/cartesian"
    path, metrics, options = _run(root, folder)
    selection = (("base", "base", 0), ("noise_injection", "noise_injection", 1), ("fmrefiner", "fmrefiner", 1),
                 ("dfr", "dfr", 1), ("dfr", "dfr", 10), ("dfr student (reflow)", "dfr_reflow", 1),
                 ("lfr", "lfr", 1), ("lfr", "lfr", 10), ("lfr student (reflow)", "lfr_reflow", 1))
    floor = metrics["md_train"]
    rows = [{
        "method": "MD training frames (floor)", "nfe": "—",
        # The floor's error is near zero: two decimals keep it from reading as 0.
        "energy": _signed(floor["energy_error_percent"], 2), "excluded": str(floor["excluded_generated"]),
        "amr": _amr(floor, 4), "beta": f"{100 * floor['basins']['beta_C7eq']:.1f}",
    }]
    for row in _molecule_rows(metrics, path, selection):
        rows.append({
            "method": row["label"], "nfe": str(row["nfe_refiner"]), "energy": _signed(row["energy_error_percent"], 1),
            "excluded": str(row["excluded_generated"]), "amr": _amr(row, 4),
            "beta": f"{100 * row['basins']['beta_C7eq']:.1f}",
        })
    columns = [("method", "method"), ("nfe", "NFE refiner"), ("energy", "energy error (%), projected"),
               ("excluded", f"excluded (E > {metrics['energy_cutoff_kj_mol']:g} kJ/mol)"),
               ("amr", "AMR-R / AMR-P (Å)"), ("beta", "β/C7eq (%)")]
    # time-v.txt's first run is the recipe's; the students' rows came from a later --resume, not timed alone.
    timing = (f"{_wall(root, f'{folder}/time-v.txt')} wall on 2 threads of this 2-core CPU with the MD cached "
              "(the 1-NFE students' rows from a later `--resume`)")
    caption = _caption(f"{folder}/", _train_command(options, ("recipe", "data", "coordinates", "seed")),
                       "its `metrics.json` and `time-v.txt`", timing)
    return caption + "\n\n" + markdown_table(rows, columns)


CHIGNOLIN_ROWS = (("base", "base", 0), ("noise injection", "noise_injection", 1), ("FMRefiner", "fmrefiner", 1),
                  ("DFR", "dfr", 1), ("DFR", "dfr", 10))


def chignolin_table(root: Path) -> str:
    """Chignolin, 2 ns MD, internal coordinates, base 16 000 steps, seed 0.

    The lowest energy error, the fewest excluded conformers and the row lowest on both AMRs are in bold.
    """
    folder = "docs/results/chignolin-2ns/internal-16k"
    path, metrics, options = _run(root, folder)
    selection = (*CHIGNOLIN_ROWS, ("DFR student (reflow)", "dfr_reflow", 1), ("LFR", "lfr", 1),
                 ("LFR", "lfr", 10), ("LFR student (reflow)", "lfr_reflow", 1))
    generated = _molecule_rows(metrics, path, selection)
    best_energy = min(abs(r["energy_error_percent"]) for r in generated)
    fewest = min(r["excluded_generated"] for r in generated)
    lowest_r, lowest_p = min(r["amr_r"] for r in generated), min(r["amr_p"] for r in generated)
    floor = metrics["md_train"]
    rows = [{"method": "MD training frames (floor)", "nfe": "—", "energy": _signed(floor["energy_error_percent"], 2),
             "excluded": str(floor["excluded_generated"]), "amr": _amr(floor, 3)}]
    for row in generated:
        rows.append({
            "method": row["label"], "nfe": str(row["nfe_refiner"]),
            "energy": _bold(_signed(row["energy_error_percent"], 1),
                            abs(row["energy_error_percent"]) == best_energy),
            "excluded": _bold(str(row["excluded_generated"]), row["excluded_generated"] == fewest),
            "amr": _bold(_amr(row, 3), row["amr_r"] == lowest_r and row["amr_p"] == lowest_p),
        })
    columns = [("method", "method"), ("nfe", "NFE refiner"), ("energy", "energy error (%)"),
               ("excluded", f"excluded (E > {metrics['energy_cutoff_kj_mol']:g})"), ("amr", "AMR-R / AMR-P (Å)")]
    command = _train_command(options, ("recipe", "data", "base_steps", "coordinates", "seed"))
    md_time = "docs/results/chignolin-2ns/md-time-v.txt"
    timing = (f"{_wall(root, f'{folder}/time-v.txt')} wall on 2 threads, after the 2 ns MD it caches "
              f"({_wall(root, md_time)} wall on one thread)")
    caption = _caption(f"{folder}/", command, f"its `metrics.json` and `time-v.txt`, and [`md-time-v.txt`]({md_time})",
                       timing)
    return caption + "\n\n" + markdown_table(rows, columns)


def chignolin_1ns_table(root: Path) -> str:
    """The earlier chignolin run: a 1 ns MD, Cartesian coordinates, seed 0; every conformer above the cut-off."""
    folder = "docs/results/chignolin"
    path, metrics, options = _run(root, folder)
    selection = (*CHIGNOLIN_ROWS, ("LFR", "lfr", 1), ("LFR", "lfr", 10))

    def coverage(row: Mapping[str, Any]) -> str:
        return " / ".join("0" if row[k] == 0 else f"{100 * row[k]:.2f}" for k in ("cov_r", "cov_p"))

    def energy(row: Mapping[str, Any], decimals: int) -> str:
        # None: every conformer is above the cut-off, so there is no mean to compare.
        value = row["energy_error_percent"]
        return "—" if value is None else _signed(value, decimals)

    floor = metrics["md_train"]
    rows = [{"method": "MD training frames (floor)", "cov": coverage(floor), "amr": _amr(floor, 3),
             "energy": energy(floor, 1), "excluded": _count(floor["excluded_generated"])}]
    for row in _molecule_rows(metrics, path, selection):
        nfe = row["nfe_refiner"]
        rows.append({"method": row["label"] + (f", {nfe} NFE" if nfe else ""), "cov": coverage(row),
                     "amr": _amr(row, 3), "energy": energy(row, 1),
                     "excluded": f"{_count(row['excluded_generated'])} of {_count(row['n_generated'])}"})
    tau = f"{metrics['threshold_angstrom']:g}"
    columns = [("method", "method"), ("cov", f"COV-R / COV-P (%, τ = {tau} Å)"), ("amr", "AMR-R / AMR-P (Å)"),
               ("energy", "energy error (%)"),
               ("excluded", f"excluded (E > {metrics['energy_cutoff_kj_mol']:g} kJ/mol)")]
    # Runs from before --coordinates existed were Cartesian.
    coordinates = metrics.get("coordinates", "cartesian")
    nanoseconds = metrics["provenance"]["nanoseconds"]
    caption = (f"The earlier run: a {nanoseconds:g} ns MD, {coordinates.capitalize()} coordinates, seed "
               f"{options['seed']}. " + _caption(f"{folder}/", _train_command(options, ("recipe", "data", "seed")),
                                                 "its `metrics.json`"))
    return caption + "\n\n" + markdown_table(rows, columns)


def benchmark_summary(root: Path) -> str:
    """The benchmarks' summary paragraphs, their numbers from ``benchmarks/results`` and the main job's profile."""
    results = _json(root, "benchmarks/results/cpu.json")
    ops = results["rows"]
    molecular = _json(root, "benchmarks/results/cpu-molecular.json")["rows"]
    sampler = _json(root, "benchmarks/results/cpu-sampler.json")["rows"]
    profile = "docs/results/main-job-profile"
    flops = _json(root, f"{profile}/flops.json")["total_flops"]
    # time-v.txt is the run at 5221b53, time-v-7712b60.txt the latest (docs/results/ops.md).
    latest = _wall_seconds(root, f"{profile}/time-v-7712b60.txt")
    runs = [latest, _wall_seconds(root, f"{profile}/time-v.txt")]

    def speedups(op_names: Sequence[str], against: str) -> list[float]:
        return [r["fused_speedup_vs"][against] for r in ops if r["op"] in op_names]

    lincomb = ["lincomb"]
    rmsd = {r["case"].split(" atoms")[0]: r["fused_speedup_vs"]["mdtraj"] for r in ops if r["op"] == "pairwise_rmsd"}
    coverage = _row(molecular, "benchmarks/results/cpu-molecular.json", op="coverage_amr")
    medians: dict[bool, list[float]] = {True: [], False: []}
    models = dict.fromkeys(r["case"].split(",")[0] for r in sampler)
    for model in models:
        cases = [r for r in sampler if r["case"].split(",")[0] == model]
        for peer in dict.fromkeys(p for r in cases for p in r["fused_speedup_vs"]):
            ratios = [r["fused_speedup_vs"][peer] for r in cases if peer in r["fused_speedup_vs"]]
            medians[model.startswith("zero-cost")].append(statistics.median(ratios))
    agreement = max(v for r in sampler for v in r["agreement"].values())
    mantissa, exponent = f"{agreement:.1e}".split("e")
    rmsd_atoms = sorted(rmsd, key=int)
    return (
        "**Benchmarks** (`python -m benchmarks.run`, 2 threads of the same CPU; fused against the eager reference,\n"
        f"`torch.compile` and `mdtraj.rmsd`; the latest run was on an {results['machine'].split(',')[0]} machine "
        "with AVX2, chosen at run time):\n"
        "In the latest run of every op, `fc_weighted_mse`, `frequency_filter` and `band_energy` are "
        f"{_span(speedups(['fc_weighted_mse', 'frequency_filter', 'band_energy'], 'compile'))}× inductor, and\n"
        f"`lincomb` is {_span(speedups(lincomb, 'eager'))}× eager and {_span(speedups(lincomb, 'compile'))}× "
        f"inductor at {_span(speedups(lincomb, 'copy'), lambda v: f'{100 * v:.0f}')}% of a plain copy's "
        "bandwidth: it streams its output,\n"
        "which is worth at most 7/6 over inductor's ordinary stores, and its ratios move by up to 0.3 from one "
        "run to the\n"
        f"next. `pairwise_rmsd` is {_ratio(rmsd[rmsd_atoms[0]])}× precentred `mdtraj.rmsd` at {rmsd_atoms[0]} "
        f"atoms and {_ratio(rmsd[rmsd_atoms[-1]])}× at {rmsd_atoms[-1]}. COV/AMR of 10 000 × 10 000 alanine\n"
        f"dipeptide frames took {_ratio(coverage['seconds']['fused'])} s with `rmsd_min` (an earlier run), against "
        f"{_ratio(coverage['seconds']['mdtraj'])} s for a loop of `mdtraj.rmsd`, with identical values.\n"
        "\n"
        "The sampler is compared with flow_matching, torchdiffeq and torchode (`python -m benchmarks.run --ops "
        "sampler`,\n"
        f"the `bench` extra). All {len(sampler)} cases give the same outputs (relative difference ≤ "
        f"{mantissa}e{int(exponent)}). Its medians are {_span(medians[False])}×\n"
        f"on real models, where the model's calls dominate, and it is {_span(medians[True])}× faster on a "
        "zero-cost model. The main job computes\n"
        f"{flops / 1e12:.1f} TFLOP, most of it oneDNN convolutions already at the CPU's GEMM peak, and takes "
        f"{_span(runs, lambda s: f'{s / 60:.0f}')} minutes on a 2-core CPU\n"
        f"({_clock(latest)} in the latest run). The CUDA kernels build in CI but have not been run on a GPU yet.\n"
        "[Full tables](docs/results/ops.md).\n"
        "\n"
        + _caption("benchmarks/results/", "python -m benchmarks.run",
                   f"its `cpu.json` (run {max(r['ran'] for r in ops)}), `cpu-sampler.json`, `cpu-molecular.json` and "
                   f"[`{profile}/`]({profile}/) (`flops.json`, `time-v*.txt`)")
    )


BLOCKS: dict[str, Callable[[Path], str]] = {
    "refine-ecosystem": ecosystem_table,
    "bfr-digits": bfr_digits_table,
    "defar-timing": defar_timing,
    "defar-digits": defar_table,
    "defar-mnist5k": defar_mnist5k_table,
    "defar-fc-bias": defar_fc_bias,
    "ala2": ala2_table,
    "chignolin": chignolin_table,
    "chignolin-1ns": chignolin_1ns_table,
    "benchmarks": benchmark_summary,
}


def _block_pattern(name: str) -> re.Pattern[str]:
    name = re.escape(name)
    return re.compile(rf"(<!-- generated: {name} -->\n)(.*?)(<!-- /generated: {name} -->)", re.DOTALL)


def render(readme: str, root: Path, blocks: Mapping[str, Callable[[Path], str]] = BLOCKS) -> str:
    """``readme`` with every generated block rewritten from the files under ``root``.

    A block's body is its function's markdown between blank lines, so each table stands apart from the markers.

    Raises:
        ValueError: a block's markers are missing or appear twice, or the README marks a block no function writes.
        ResultFileMissing: a file a block is written from is missing.
    """
    unknown = set(re.findall(r"<!-- generated: (\S+) -->", readme)) - set(blocks)
    if unknown:
        raise ValueError(f"README marks blocks no function writes: {', '.join(sorted(unknown))}")
    for name, write in blocks.items():
        matches = list(_block_pattern(name).finditer(readme))
        if len(matches) != 1:
            raise ValueError(f"README needs one '<!-- generated: {name} -->' … '<!-- /generated: {name} -->' "
                             f"block, found {len(matches)}")
        body = "\n" + write(root).rstrip("\n") + "\n\n"
        readme = readme[:matches[0].start(2)] + body + readme[matches[0].end(2):]
    return readme


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=GENERATOR, description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 with a diff when README.md differs from what would be written")
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="the repository root, holding README.md, docs/results and benchmarks/results")
    args = parser.parse_args(argv)
    readme_path = args.root / "README.md"
    try:
        current = _file(args.root, "README.md").read_text()
        fresh = render(current, args.root)
    except (ResultFileMissing, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if fresh == current:
            return 0
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(keepends=True), fresh.splitlines(keepends=True),
                                                   "README.md", "README.md (regenerated)"))
        print(f"README.md is stale: run `{GENERATOR}`", file=sys.stderr)
        return 1
    if fresh != current:
        write_text_atomic(readme_path, fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
