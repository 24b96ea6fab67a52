"""The refiner registry: the one place a refiner is named. The pipeline, the command lines and the recipes read it;
no other module of the package names a refiner."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

from bfr_fast import refine, sample
from bfr_fast.models import MLP
from bfr_fast.pipelines.refinement import REFINERS, ROWS, fit_refiners
from bfr_fast.refiners import InversionCache, LatentFlowRefiner, Refiner, RefinerData, SamplePool, registry
from bfr_fast.refiners.registry import REGISTRY, RegisteredRefiner

PACKAGE = Path(registry.__file__).resolve().parents[1]
README_TABLES = PACKAGE / "report" / "readme.py"
"""Selects the README's rows from committed results files by the method names those runs recorded: data of
finished runs, which a new refiner does not change."""


def _option(parser, flag: str):
    return next(action for action in parser._actions if flag in action.option_strings)


def test_each_entry_is_named_by_its_class_and_has_its_own_seeds():
    assert tuple(REGISTRY) == REFINERS == ("noise_injection", "fmrefiner", "dfr", "lfr")
    offsets = []
    for name, entry in REGISTRY.items():
        assert entry.name == entry.refiner.kind == name
        assert entry.description and "\n" not in entry.description and "%" not in entry.description  # argparse help
        assert entry.rows
        offsets += [entry.seed_offset] + ([entry.student_seed_offset] if entry.has_student else [])
    assert len(set(offsets)) == len(offsets)
    assert registry.students() == ("dfr_reflow", "lfr_reflow")


def test_the_table_rows_are_the_published_tables():
    assert ROWS == {
        "noise_injection": (("euler", 1), ("euler", 10)),
        "fmrefiner": (("euler", 1), ("euler", 10)),
        "dfr": (("euler", 1), ("euler", 10), ("rk4", 1)),
        "dfr_reflow": (("euler", 1),),
        "lfr": (("euler", 1), ("euler", 10), ("rk4", 1)),
        "lfr_reflow": (("euler", 1),),
    }
    assert list(ROWS) == list(registry.table_rows())


def test_settings_find_their_refiner_and_build_it():
    assert registry.taking("alpha").refiner is LatentFlowRefiner
    assert registry.taking("sigma_d").name == "noise_injection" and registry.taking("sigma_f").name == "fmrefiner"
    with pytest.raises(ValueError, match="expected exactly one"):
        registry.taking("coupling")  # several refiners take it
    lfr = REGISTRY["lfr"].build(MLP(2, 8, 1, 4), {"alpha": 0.3, "sigma_d": 0.5})  # sigma_d is not the LFR's
    assert isinstance(lfr, LatentFlowRefiner) and lfr.alpha == 0.3


def test_check_names_orders_and_refuses():
    assert registry.check_names(["lfr", "dfr"]) == ("dfr", "lfr")
    with pytest.raises(ValueError, match=r"--refiners: unknown \['nope'\]; choose from noise_injection,fmrefiner"):
        registry.check_names(["dfr", "nope"], "--refiners")
    with pytest.raises(ValueError, match="unknown"):
        registry.check_names([])


def test_fit_refiners_refuses_a_setting_no_refiner_takes():
    with pytest.raises(ValueError, match=r"no refiner takes \['alhpa'\]"):
        fit_refiners(None, torch.zeros(2, 2), None, None, None, None, None, 1, alhpa=0.2)


def test_each_refiner_says_what_it_trains_on():
    x, y = torch.randn(6, 2), torch.arange(6) % 2
    pool = SamplePool(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), 2)
    cache = InversionCache(torch.randn(5, 2), torch.arange(5) % 2, torch.zeros(5), "euler", 2)
    for name, entry in REGISTRY.items():
        _, samples, labels = entry.build(MLP(2, 8, 1, 4)).training_set(RefinerData(x, y, pool, cache))
        latent = entry.refiner is LatentFlowRefiner  # the inversion cache's latents; the others the real samples
        assert torch.equal(samples, cache.latents if latent else x), name
        assert torch.equal(labels, cache.labels if latent else y), name


def test_the_registry_drives_the_command_lines(monkeypatch):
    refiners = _option(refine.build_parser(), "--refiners")
    assert refiners.default == "dfr,lfr" == ",".join(registry.refine_defaults())
    for name, entry in REGISTRY.items():
        assert f"{name} ({entry.description})" in refiners.help
    assert refine.RefineOptions.__dataclass_fields__["refiners"].default == ("dfr", "lfr")
    chosen = _option(sample.build_parser(), "--refiner")
    assert tuple(chosen.choices) == ("base", *registry.table_rows())
    assert chosen.default == registry.SAMPLE_DEFAULT == "lfr_reflow"

    # A new refiner, registered once, is offered by both command lines.
    monkeypatch.setattr(Refiner, "_kinds", dict(Refiner._kinds))  # its file kind, forgotten after the test

    class Toy(LatentFlowRefiner):
        kind = "toy"

    toy = RegisteredRefiner(Toy, "a toy refiner", registry.STUDENT_ROWS, seed_offset=99, student_seed_offset=98)
    monkeypatch.setattr(registry, "REGISTRY", {**REGISTRY, "toy": toy})
    assert "toy (a toy refiner)" in _option(refine.build_parser(), "--refiners").help
    assert "toy_reflow" in _option(refine.build_parser(), "--no-distill").help
    assert {"toy", "toy_reflow"} <= set(_option(sample.build_parser(), "--refiner").choices)
    assert refine.parse_options(["--generator", "pkg:f", "--data", "digits", "--refiners", "toy,dfr"]).refiners == (
        "dfr", "toy")


NAME = r"(?<![A-Za-z0-9.]){}(?![A-Za-z0-9])"
"""A refiner's name as the code writes it: a key, a checkpoint or student name (``dfr``, ``"dfr-refiner"``,
``dfr_reflow``), not the paper's acronym in prose (DFR) nor the path of its module (``bfr_fast.refiners.dfr``)."""


def stray_names(package: Path = PACKAGE) -> list[str]:
    """``file:line: name`` of every refiner name in the package outside its own module and the registry."""
    allowed = {name: {Path(inspect.getsourcefile(entry.refiner)).resolve(), Path(registry.__file__).resolve(),
                      README_TABLES}
               for name, entry in REGISTRY.items()}
    found = []
    for path in sorted(package.rglob("*.py")):
        lines = path.read_text().splitlines()
        for name, places in allowed.items():
            if path.resolve() in places:
                continue
            pattern = re.compile(NAME.format(re.escape(name)))
            found += [f"{path.relative_to(package.parent)}:{i}: {name}" for i, line in enumerate(lines, 1)
                      if pattern.search(line)]
    return found


def test_no_module_but_its_own_and_the_registry_names_a_refiner():
    assert not stray_names(), "name refiners through bfr_fast.refiners.registry, not by hand"


def test_the_walk_finds_a_stray_name(tmp_path):
    planted = tmp_path / "bfr_fast" / "pipelines"
    planted.mkdir(parents=True)
    (planted / "refinement.py").write_text('ROWS = {"lfr_reflow": ()}\nfrom bfr_fast.refiners.lfr import X\n')
    assert stray_names(tmp_path / "bfr_fast") == ["bfr_fast/pipelines/refinement.py:1: lfr"]
