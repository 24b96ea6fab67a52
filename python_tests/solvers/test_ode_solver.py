"""ODESolver: convergence orders on exact solutions, inversion, per-sample grids, model calls, NFE, no host sync."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bfr_fast.ops import fused_available, lincomb
from bfr_fast.solvers import TABLEAUX, ODESolver

METHODS = ["euler", "midpoint", "heun", "rk4", "rk4_38"]
ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "rk4_38": 4}
# Step counts in each method's asymptotic range, with errors well above the float32 accumulation of lincomb.
STEP_COUNTS = {
    "euler": [32, 64, 128, 256],
    "midpoint": [16, 32, 64, 128],
    "heun": [16, 32, 64, 128],
    "rk4": [4, 8, 16, 32],
    "rk4_38": [4, 8, 16, 32],
}

A = torch.tensor([[-1.0, 4.0], [-4.0, -1.0]], dtype=torch.float64)  # a damped rotation


def linear_autonomous(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dx/dt = A x; exact x(1) = expm(A) x(0)."""
    return x @ A.T


def linear_time_dependent(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dx/dt = a(t) x with a(t) = 1 + 3 cos(3t); exact x(1) = x(0) exp(1 + sin 3)."""
    return x * (1 + 3 * torch.cos(3 * t.double()))[:, None]


EXACT = {
    "autonomous": (linear_autonomous, lambda x0: x0 @ torch.linalg.matrix_exp(A).T),
    "time_dependent": (linear_time_dependent, lambda x0: x0 * math.exp(1 + math.sin(3))),
}


class RecordingModel(nn.Module):
    """A velocity model that records every call: the dtype, shape and values of t, and the extras."""

    def __init__(self, velocity=linear_autonomous) -> None:
        super().__init__()
        self.velocity = velocity
        self.calls: list[dict] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, **extras) -> torch.Tensor:
        self.calls.append({"t": t.clone(), "x_dtype": x.dtype, "extras": extras})
        return self.velocity(x.double(), t).to(x.dtype)


class SmallMLP(nn.Module):
    """A user's plain velocity network: forward(x, t, y=None), nonlinear in x and t, class-conditional."""

    def __init__(self, dim: int = 2, num_classes: int = 3) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim + 1, 32), nn.Tanh(), nn.Linear(32, dim))
        self.embed = nn.Embedding(num_classes, dim + 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.cat([x.float(), t[:, None]], dim=1)
        if y is not None:
            h = h + self.embed(y)
        return self.net(h).to(x.dtype)


def x_start(batch: int = 8, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("problem", sorted(EXACT))
@pytest.mark.parametrize("method", METHODS)
def test_order_of_convergence(method, problem):
    velocity, exact = EXACT[problem]
    x0 = x_start()
    solver = ODESolver(velocity, method)
    errors = [(solver.sample(x0, num_steps=n) - exact(x0)).norm().item() for n in STEP_COUNTS[method]]
    slope = np.polyfit(np.log([1 / n for n in STEP_COUNTS[method]]), np.log(errors), 1)[0]
    assert abs(slope - ORDERS[method]) < 0.3, f"{method} on {problem}: slope {slope:.2f}, errors {errors}"


@pytest.mark.parametrize("method", METHODS)
def test_invert_returns_start_within_method_error(method):
    model = SmallMLP()
    x0 = x_start(16, torch.float32)
    solver = ODESolver(model, method)
    reference = ODESolver(model, "rk4").sample(x0, num_steps=50)  # at float32 rounding
    x1 = solver.sample(x0, num_steps=10)
    back = solver.invert(x1, num_steps=10)
    forward_error = (x1 - reference).abs().max().item()
    assert (back - x0).abs().max().item() <= 2 * forward_error + 1e-5
    if not method.startswith("rk4"):  # rk4 is at float32 rounding already; the others must improve with more steps
        finer = solver.invert(solver.sample(x0, num_steps=20), num_steps=20)
        assert (finer - x0).abs().max() < 0.6 * (back - x0).abs().max()


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
def test_per_sample_grid_equals_each_sample_alone(method):
    model = SmallMLP()
    x0 = x_start(3, torch.float32)
    base = torch.linspace(0, 1, 7, dtype=torch.float64)
    grid = torch.stack([base, base**2, base.sqrt()])  # (B, S): each row its own increasing grid
    y = torch.tensor([0, 2, 1])
    solver = ODESolver(model, method)
    together = solver.sample(x0, time_grid=grid, y=y)
    back_together = solver.invert(together, time_grid=grid, y=y)
    for i in range(3):
        alone = solver.sample(x0[i : i + 1], time_grid=grid[i], y=y[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-5, atol=1e-5)
        back_alone = solver.invert(together[i : i + 1], time_grid=grid[i], y=y[i : i + 1])
        torch.testing.assert_close(back_together[i : i + 1], back_alone, rtol=1e-5, atol=1e-5)


def test_per_sample_grid_passes_per_sample_times():
    model = RecordingModel()
    grid = torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.25, 1.0]])
    ODESolver(model, "midpoint").sample(x_start(2), time_grid=grid)
    times = torch.stack([call["t"] for call in model.calls])  # (NFE, B)
    expected = torch.tensor([[0.0, 0.0], [0.25, 0.125], [0.5, 0.25], [0.75, 0.625]])
    torch.testing.assert_close(times, expected)


def test_plain_user_module_with_labels_through_model_extras():
    model = SmallMLP()
    x0 = x_start(4, torch.float32)
    y = torch.tensor([0, 1, 2, 1])
    out = ODESolver(model, "euler").sample(x0, num_steps=5, y=y)
    expected = x0.clone()  # the same Euler steps, written out by hand
    for t in torch.linspace(0, 1, 6)[:-1]:
        expected = expected + 0.2 * model(expected, t.repeat(4), y=y)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out, ODESolver(model, "euler").sample(x0, num_steps=5))  # the labels mattered


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("per_sample", [False, True])
def test_model_always_receives_float32_t_of_shape_batch(dtype, per_sample):
    model = RecordingModel()
    grid = torch.rand(5, 4).sort(dim=1).values if per_sample else torch.tensor([0.0, 0.1, 0.7, 1.0])
    ODESolver(model, "rk4").sample(x_start(5, dtype), time_grid=grid)
    ODESolver(model, "rk4").invert(x_start(5, dtype), time_grid=grid)
    assert len(model.calls) == 2 * 3 * 4
    for call in model.calls:
        assert call["t"].dtype == torch.float32 and call["t"].shape == (5,) and call["x_dtype"] == dtype


@pytest.mark.parametrize("method", METHODS)
def test_nfe_is_counted_honestly(method):
    model = RecordingModel()
    solver = ODESolver(model, method)
    _, nfe = solver.sample(x_start(), num_steps=3, return_nfe=True)
    assert nfe == 3 * TABLEAUX[method].num_stages == len(model.calls)
    assert nfe == {"euler": 3, "midpoint": 6, "heun": 6, "rk4": 12, "rk4_38": 12}[method]
    _, nfe_back = solver.invert(x_start(), num_steps=3, return_nfe=True)
    assert nfe_back == nfe and len(model.calls) == 2 * nfe


def test_bare_unit_interval_grid_is_an_error():
    solver = ODESolver(linear_autonomous, "euler")
    with pytest.raises(ValueError, match="num_steps"):
        solver.sample(x_start(), time_grid=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="num_steps"):
        solver.invert(x_start(), time_grid=[0.0, 1.0])
    with pytest.raises(ValueError, match="exactly one"):
        solver.sample(x_start())
    subdivided = solver.sample(x_start(), time_grid=torch.tensor([0.0, 1.0]), num_steps=4)
    torch.testing.assert_close(subdivided, solver.sample(x_start(), num_steps=4))


def test_invert_runs_the_same_grid_backwards():
    model = RecordingModel()
    ODESolver(model, "euler").sample(x_start(), step_size=0.3)
    forward_times = [call["t"][0].item() for call in model.calls]
    model.calls.clear()
    ODESolver(model, "euler").invert(x_start(), step_size=0.3)
    backward_times = [call["t"][0].item() for call in model.calls]
    assert forward_times == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert backward_times == pytest.approx([1.0, 0.9, 0.6, 0.3])


@pytest.mark.parametrize("direction", ["sample", "invert"])
def test_return_intermediates_shapes_and_ends(direction):
    solver = ODESolver(SmallMLP(), "heun")
    x = torch.randn(3, 2)
    run = getattr(solver, direction)
    path = run(x, num_steps=4, return_intermediates=True)
    assert path.shape == (5, 3, 2)
    torch.testing.assert_close(path[0], x)
    torch.testing.assert_close(path[-1], run(x, num_steps=4))
    per_sample, nfe = run(x, time_grid=torch.rand(3, 6).sort(dim=1).values, return_intermediates=True, return_nfe=True)
    assert per_sample.shape == (6, 3, 2) and nfe == 10


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_low_precision_state(dtype, method):
    model = SmallMLP()
    x0 = torch.randn(6, 2)
    full = ODESolver(model, method).sample(x0, num_steps=8)
    low = ODESolver(model, method).sample(x0.to(dtype), num_steps=8)
    assert low.dtype == dtype
    torch.testing.assert_close(low.float(), full, rtol=5e-2, atol=5e-2)


def test_gradients_only_when_enabled():
    x0 = x_start(4).requires_grad_(True)
    assert not ODESolver(linear_autonomous, "euler").sample(x0, num_steps=4).requires_grad
    out = ODESolver(linear_autonomous, "euler").sample(x0, num_steps=4, enable_grad=True)
    out.sum().backward()
    jacobian = torch.linalg.matrix_power(torch.eye(2, dtype=torch.float64) + A / 4, 4)  # Euler: (I + hA)^n
    torch.testing.assert_close(x0.grad, jacobian.sum(0).expand(4, 2), rtol=1e-5, atol=1e-5)


def test_start_state_is_not_modified():
    x0 = torch.randn(4, 2)
    copy = x0.clone()
    ODESolver(SmallMLP(), "rk4").sample(x0, num_steps=3)
    torch.testing.assert_close(x0, copy, rtol=0, atol=0)


@pytest.mark.skipif(not fused_available("cpu"), reason="bfr_fast._C is not built")
@pytest.mark.parametrize("method", METHODS)
def test_fused_and_eager_backends_agree(method):
    x0 = torch.randn(8, 2)
    fused = ODESolver(SmallMLP(), method, backend="fused").sample(x0, num_steps=5)
    eager = ODESolver(SmallMLP(), method, backend="eager").sample(x0, num_steps=5)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        ODESolver(linear_autonomous, "dopri5")
    with pytest.raises(ValueError, match="backend"):
        ODESolver(linear_autonomous, backend="triton")
    with pytest.raises(ValueError, match="callable"):
        ODESolver("not a model")
    with pytest.raises(ValueError, match="shape"):
        ODESolver(lambda x, t: x[:, :1], "euler").sample(x_start(), num_steps=2)
    with pytest.raises(ValueError, match="floating"):
        ODESolver(linear_autonomous).sample(torch.ones(3, 2, dtype=torch.int64), num_steps=2)


class _SyncGuard:
    """Arms a trap on every host-synchronising Tensor method the first time the model runs, i.e. once the grid
    is built and the step loop has started; any such call inside the loop then raises."""

    SYNCING = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.armed = False

    def arm(self) -> None:
        if self.armed:
            return
        self.armed = True
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("error")
        for name in self.SYNCING:
            self.monkeypatch.setattr(torch.Tensor, name, _raise_host_sync(name))

    def disarm(self) -> None:
        self.monkeypatch.undo()
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")


def _raise_host_sync(name: str):
    def method(*args, **kwargs):
        raise AssertionError(f"host synchronisation inside the step loop: Tensor.{name}")

    return method


NO_CUDA = "no CUDA device here: the CUDA case is not run (a GPU machine runs it)"
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("direction", ["sample", "invert"])
def test_step_loop_never_synchronises_with_the_host(monkeypatch, device, method, per_sample, direction):
    net = SmallMLP().to(device)
    guard = _SyncGuard(monkeypatch)

    def model(x, t, y=None):
        guard.arm()
        return net(x, t, y)

    x0 = torch.randn(4, 2, device=device)
    grid = torch.rand(4, 5).sort(dim=1).values if per_sample else torch.linspace(0, 1, 5)
    y = torch.tensor([0, 1, 2, 0], device=device)
    run = getattr(ODESolver(model, method), direction)
    try:
        path, nfe = run(x0, time_grid=grid, return_intermediates=True, return_nfe=True, y=y)
    finally:
        guard.disarm()
    assert guard.armed and nfe == 4 * TABLEAUX[method].num_stages and path.shape == (5, 4, 2)


def _explicit_loop(model, method, x, grid, backend, **extras):
    """The solver's arithmetic written out step by step, with nothing precomputed: each stage input and update is
    one public ``lincomb`` call with coefficients ``m * h`` (floats for a shared grid, float32 ``(B,)`` tensors for
    a per-sample one), and the model's time ``t + c h`` is taken in float64, then rounded to float32."""
    tableau = TABLEAUX[method]
    steps = grid.diff(dim=-1)
    for i in range(steps.shape[-1]):
        if grid.dim() == 1:
            t0, h = grid[i].item(), steps[i].item()

            def coefficient(m):
                return m * h

            def time(c):
                return torch.full((x.shape[0],), t0 + h * c, dtype=torch.float64).float()
        else:
            t0, h = grid[:, i], steps[:, i]

            def coefficient(m):
                return (h * m).float()

            def time(c):
                return (t0 + h * c).float()
        ks = []
        for c, row in zip(tableau.c, tableau.a):
            pairs = [(k, coefficient(m)) for k, m in zip(ks, row) if m]
            x_stage = lincomb(x, [k for k, _ in pairs], [m for _, m in pairs], backend=backend) if pairs else x
            ks.append(model(x_stage, time(c), **extras).to(x.dtype))
        pairs = [(k, coefficient(m)) for k, m in zip(ks, tableau.b) if m]
        x = lincomb(x, [k for k, _ in pairs], [m for _, m in pairs], backend=backend)
    return x


BACKENDS_HERE = ["eager"] + (["fused"] if fused_available("cpu") else [])


@pytest.mark.parametrize("backend", BACKENDS_HERE)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("enable_grad", [False, True])
def test_outputs_are_bit_identical_to_an_explicit_loop(backend, method, dtype, per_sample, enable_grad):
    """The precomputed plan and the loop's fast path (no per-step checks, fused op below autograd) change no bit."""
    model = SmallMLP()
    x0 = x_start(5, dtype)
    y = torch.tensor([0, 2, 1, 1, 0])
    base = torch.tensor([0.0, 0.1, 0.35, 0.7, 1.0], dtype=torch.float64)
    grid = torch.stack([base, base**2, base.sqrt(), base**3, base]) if per_sample else base
    solver = ODESolver(model, method, backend=backend)
    forward = solver.sample(x0, time_grid=grid, enable_grad=enable_grad, y=y)
    backward = solver.invert(x0, time_grid=grid, enable_grad=enable_grad, y=y)
    with torch.set_grad_enabled(enable_grad):
        expected_forward = _explicit_loop(model, method, x0, grid, backend, y=y)
        expected_backward = _explicit_loop(model, method, x0, grid.flip(-1), backend, y=y)
    assert torch.equal(forward, expected_forward)
    assert torch.equal(backward, expected_backward)


def test_model_output_on_another_device_is_an_error():
    with pytest.raises(ValueError, match="device"):
        ODESolver(lambda x, t: x.to("meta"), "euler").sample(x_start(), num_steps=2)
