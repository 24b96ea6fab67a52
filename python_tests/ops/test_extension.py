"""Without the compiled extension, bfr_fast still imports, warns once, and every op runs its eager reference."""

from __future__ import annotations

import subprocess
import sys
import tempfile

SCRIPT = """
import sys, warnings
sys.modules["bfr_fast._C"] = None  # makes `from bfr_fast import _C` raise ImportError, as a missing build would
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch
    from bfr_fast import ops
messages = [str(w.message) for w in caught if "bfr_fast._C could not be loaded" in str(w.message)]
assert len(messages) == 1, messages
assert not ops.fused_available("cpu") and not ops.fused_available("cuda")
report = ops.backend_report("cpu")
assert report["backend"] == "eager" and "bfr_fast._C" in report["reason"], report
x = torch.ones(2, 3)
assert torch.equal(ops.lincomb(x, [x], [2.0]), 3 * x)
assert ops.band_energy(torch.ones(1, 1, 4, 4), 0.5).shape == (1, 2)
try:
    ops.lincomb(x, [x], [2.0], backend="fused")
except ValueError as error:
    assert "backend='fused'" in str(error)
else:
    raise AssertionError("backend='fused' must fail without the extension")
print("ok")
"""


def test_import_without_extension_falls_back_to_eager():
    # Run outside the source tree so the installed (or PYTHONPATH) package is the one imported.
    env_path = ":".join(p for p in sys.path if p)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
        cwd=tempfile.gettempdir(), env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_backend_report_names_the_loaded_extension_or_the_reason():
    from bfr_fast import ops

    report = ops.backend_report("cpu")
    if ops.fused_available("cpu"):
        assert report == {"backend": "fused", "extension": report["extension"]} and "_C" in report["extension"]
    else:
        assert report["backend"] == "eager" and report["reason"]
