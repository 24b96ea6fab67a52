r"""Spread over TRAINING seeds: merge the ``metrics.json`` rows of several run folders of one recipe.

A recipe's ``± std`` is over its evaluation seeds, with the networks fixed. Training is noisier than that, so
claims that hinge on small differences need runs with different ``--seed``. This module first averages each run's
rows over its evaluation seeds (per group of ``keys``), then reports each metric as mean ± std over the runs:

.. math:: \bar m_r = \frac{1}{|E_r|}\sum_{e \in E_r} m_{r,e}, \qquad
          \text{mean} = \frac{1}{R}\sum_r \bar m_r, \quad \text{std} = \sqrt{\tfrac{1}{R-1}\sum_r (\bar m_r - \text{mean})^2}.

Command line::

    python -m bfr_fast.report.aggregate RUN [RUN ...] --out DIR [--keys method,nfe_base,nfe_refiner]
        [--metrics fd,kid,is,sfid,precision,recall]

writes ``DIR/aggregate.json`` (each run's folder, training seed, seconds and per-run means; the summary) and
``DIR/aggregate.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bfr_fast.checkpoint import atomic_write
from bfr_fast.metrics import metric_label
from bfr_fast.report.tables import group_rows, markdown_table, summarize

DEFAULT_KEYS = ("method", "nfe_base", "nfe_refiner")
DEFAULT_METRICS = ("fd", "kid", "is", "sfid", "precision", "recall")


def run_means(rows: Sequence[dict[str, Any]], keys: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per distinct ``keys`` of one run: each metric averaged over the run's evaluation seeds."""
    out = []
    for key, members in group_rows(rows, keys).items():
        mean: dict[str, Any] = dict(zip(keys, key, strict=True))
        mean["eval_seeds"] = len(members)
        for metric in metrics:
            values = [float(m[metric]) for m in members if m.get(metric) is not None]
            if values:
                mean[metric] = statistics.fmean(values)
        out.append(mean)
    return out


def load_run(folder: str | Path) -> dict[str, Any]:
    """A run folder's ``metrics.json`` with its training seed (from ``config.json``).

    Raises:
        ValueError: ``folder`` lacks ``metrics.json`` with ``"rows"`` or ``config.json``.
    """
    folder = Path(folder)
    metrics_path, config_path = folder / "metrics.json", folder / "config.json"
    if not metrics_path.is_file() or not config_path.is_file():
        raise ValueError(f"run folder {str(folder)!r} must hold metrics.json and config.json (a finished run)")
    metrics = json.loads(metrics_path.read_text())
    if "rows" not in metrics:
        raise ValueError(f"{metrics_path} has no 'rows'")
    options = json.loads(config_path.read_text())["options"]
    return {"folder": str(folder), "recipe": options.get("recipe"), "seed": options["seed"],
            "seconds": metrics.get("seconds"), "extractor": metrics.get("extractor"), "rows": metrics["rows"]}


def aggregate(
    runs: Sequence[dict[str, Any]], keys: Sequence[str] = DEFAULT_KEYS, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, Any]:
    """Per-run means and their mean ± std over runs (see the module docstring).

    Args:
        runs: :func:`load_run` results, one per training seed, all of one recipe.
        keys: Row fields that identify a table row.
        metrics: Metric fields to average.

    Raises:
        ValueError: Fewer than two runs, runs of different recipes, or two runs with the same training seed.
    """
    if len(runs) < 2:
        raise ValueError(f"runs must hold at least two run folders to give a spread, got {len(runs)}")
    recipes = {r["recipe"] for r in runs}
    if len(recipes) != 1:
        raise ValueError(f"runs must all come from one recipe, got {sorted(map(str, recipes))}")
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"runs must have distinct training seeds, got {seeds}")
    per_run = [{**m, "training_seed": r["seed"]} for r in runs for m in run_means(r["rows"], keys, metrics)]
    return {
        "recipe": recipes.pop(),
        "extractor": extractors.pop() if len(extractors := {r.get("extractor") for r in runs}) == 1 else None,
        "runs": [{k: r[k] for k in ("folder", "seed", "seconds")} for r in runs],
        "keys": list(keys),
        "per_run": per_run,
        "summary": summarize(per_run, keys, metrics, count="training seeds"),
    }


def _label(metric: str, extractor: str | None) -> str:
    """The report name of an image metric (e.g. "FD-digitsnet"); other fields keep their key."""
    try:
        return metric_label(metric, extractor) if extractor is not None else metric
    except ValueError:
        return metric


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bfr_fast.report.aggregate", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders of one recipe with different --seed")
    parser.add_argument("--out", required=True, type=Path, help="folder for aggregate.json and aggregate.md")
    parser.add_argument("--keys", default=",".join(DEFAULT_KEYS), help="comma-separated row keys")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metrics")
    args = parser.parse_args(argv)
    keys, metrics = args.keys.split(","), args.metrics.split(",")
    try:
        result = aggregate([load_run(f) for f in args.runs], keys, metrics)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(result, indent=2).encode()
    atomic_write(args.out / "aggregate.json", lambda f: f.write(payload))
    columns = [(k, k) for k in keys] + [("training seeds", "training seeds")] + [
        (m, _label(m, result["extractor"])) for m in metrics]
    seeds = ", ".join(str(r["seed"]) for r in result["runs"])
    text = (f"## `{result['recipe']}`: mean ± std over training seeds {seeds} (each run first averaged over its "
            f"evaluation seeds)\n\n" + markdown_table(result["summary"], columns))
    atomic_write(args.out / "aggregate.md", lambda f: f.write(text.encode()))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
