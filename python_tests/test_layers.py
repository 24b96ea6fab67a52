"""The package's layers, read from the code's imports: the command lines and recipes sit on top, the workflows
(pipelines) in the middle, the run machinery (engine) below them; nothing imports upwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bfr_fast"
COMMANDS = ("bfr_fast.train", "bfr_fast.refine", "bfr_fast.sample")
"""The command lines and their recipes: the top layer."""
ABOVE_ENGINE = ("bfr_fast.pipelines", "bfr_fast.refiners", "bfr_fast.losses", "bfr_fast.metrics", "bfr_fast.models",
                "bfr_fast.data", "bfr_fast.report", *COMMANDS)


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(module: str, path: Path) -> set[str]:
    """Every bfr_fast module ``path`` imports, at any depth of its code (functions included)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("bfr_fast")}


def _inside(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


MODULES = _modules()


def test_the_walk_sees_the_package():
    assert {"bfr_fast.engine.trainer", "bfr_fast.pipelines.refinement", "bfr_fast.train.cli"} <= set(MODULES)
    assert "bfr_fast.engine.trainer" in _imports("bfr_fast.pipelines.training", MODULES["bfr_fast.pipelines.training"])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _inside(m, COMMANDS)))
def test_the_library_never_imports_the_command_lines(module):
    upward = sorted(name for name in _imports(module, MODULES[module]) if _inside(name, COMMANDS))
    assert not upward, f"{module} imports {upward}: move what it needs below (bfr_fast.engine), not the import up"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _inside(m, ("bfr_fast.engine",))))
def test_the_engine_sits_below_the_workflows(module):
    upward = sorted(name for name in _imports(module, MODULES[module]) if _inside(name, ABOVE_ENGINE))
    assert not upward, f"{module} imports {upward}"
