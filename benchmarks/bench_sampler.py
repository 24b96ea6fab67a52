"""The sampler against its peers: :class:`bfr_fast.solvers.ODESolver` ("fused": its updates are fused ``lincomb``
calls) against flow_matching's ``ODESolver``, torchdiffeq's ``odeint`` and torchode's ``solve_ivp`` machinery, on
the same model, noise and fixed-step grid.

Models: the digits UNet (the 8x8 preset, class-conditional, batch 256), the ALA2 MLP (66 coordinates, hidden 256,
depth 4, batch 512), a tiny MLP (66 features, hidden 64, depth 2, batch 256: the model is cheap, so the per-step
work of the solver shows) and a zero-cost model (the velocity is the state itself, batch 256 x 66: what is timed is
the solvers' own work per step). Their weights are random (the zero-initialised output layers too), so that the
velocity is not zero. Methods: Euler, midpoint and RK4 at 1 to 20 steps. torchdiffeq's (and so flow_matching's)
``"rk4"`` is Kutta's 3/8 rule, so the RK4 rows run ours as ``"rk4_38"``: every variant then does the same
arithmetic, and the outputs must agree to float32 rounding (the check raises otherwise). torchode has Euler among
these methods, not midpoint or RK4.

The peers are the ``bench`` extra (``pip install -e ".[bench]"``); a peer that is not installed is left out of
the rows and named in the notes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks.harness import Case
from bfr_fast.models import MLP
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.solvers import TABLEAUX, ODESolver

PEERS: tuple[str, ...] = ("flow_matching", "torchdiffeq", "torchode")
# Our method name -> torchdiffeq's name of the same tableau (None: only ours has it).
METHODS: dict[str, str] = {"euler": "euler", "midpoint": "midpoint", "rk4_38": "rk4"}
METHOD_LABELS: dict[str, str] = {"euler": "euler", "midpoint": "midpoint", "rk4_38": "rk4 (3/8 rule)"}
STEPS: tuple[int, ...] = (1, 2, 5, 10, 20)
QUICK_STEPS: tuple[int, ...] = (1, 4)
# float32 states: the variants differ only in how h and t are rounded and in the order of a few additions.
TOLERANCE = 1e-4

Runner = Callable[[], torch.Tensor]
Model = Callable[..., torch.Tensor]


class ZeroCostModel(nn.Module):
    """dx/dt = x: no work beyond returning its input, so a sampler's time is its own per-step work."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, **extras: object) -> torch.Tensor:
        return x


class AgreementError(AssertionError):
    """The variants of a sampler case disagree: different outputs or different numbers of model calls."""


@dataclass(frozen=True)
class SamplerProblem:
    """A model and its inputs: the noise ``x`` and the model's extra arguments (e.g. class labels)."""

    name: str
    model: nn.Module
    x: torch.Tensor
    extras: dict[str, torch.Tensor]


def installed_peers() -> list[str]:
    """The peers importable here, in :data:`PEERS` order."""
    return [peer for peer in PEERS if importlib.util.find_spec(peer) is not None]


def max_relative_difference(value: torch.Tensor, reference: torch.Tensor) -> float:
    """``max |value - reference| / max |reference|``: relative to the scale of the output, not elementwise, so an
    output element near zero does not blow it up. NaN when either holds NaN."""
    scale = reference.abs().max().clamp_min(torch.finfo(reference.dtype).tiny)
    return ((value - reference).abs().max() / scale).item()


def check_agreement(outputs: dict[str, torch.Tensor], calls: dict[str, int], expected_calls: int,
                    tolerance: float = TOLERANCE) -> dict[str, float]:
    """Checks every variant against ``"fused"``.

    Args:
        outputs: Variant name -> its final state; ``"fused"`` is the reference.
        calls: Variant name -> the number of model calls it made.
        expected_calls: Steps times stages.
        tolerance: Largest :func:`max_relative_difference` accepted.

    Returns:
        Variant name -> its max relative difference from ``"fused"`` (the others only).

    Raises:
        AgreementError: A variant made another number of model calls, or differs by more than ``tolerance``.
    """
    wrong_calls = {name: n for name, n in calls.items() if n != expected_calls}
    if wrong_calls:
        raise AgreementError(f"expected {expected_calls} model calls per variant, got {wrong_calls}")
    reference = outputs["fused"]
    differences = {name: max_relative_difference(out, reference) for name, out in outputs.items() if name != "fused"}
    bad = {name: d for name, d in differences.items() if not d <= tolerance}
    if bad:
        raise AgreementError(f"outputs differ from bfr_fast's by more than {tolerance:g} (max relative): {bad}")
    return differences


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    """``module`` in eval mode with every parameter moved by seeded noise, so zero-initialised layers are not zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=gen))
    return module.eval()


def problems(device: torch.device, quick: bool) -> list[SamplerProblem]:
    """The four models with their noise (fixed seeds); quick mode takes batches of 16."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    unet_batch, mlp_batch, tiny_batch = (16, 16, 16) if quick else (256, 512, 256)
    unet = _seeded(image_preset((1, 8, 8)).build(1, 10), 2)
    ala2 = _seeded(MLP(66, hidden=256, depth=4), 3)
    tiny = _seeded(MLP(66, hidden=64, depth=2, time_embed_dim=64), 4)
    labels = (torch.arange(unet_batch) % 10).to(device)
    return [
        SamplerProblem(f"digits UNet, ({unet_batch}, 1, 8, 8)", unet.to(device),
                       torch.randn(unet_batch, 1, 8, 8, generator=gen).to(device), {"y": labels}),
        SamplerProblem(f"ALA2 MLP, ({mlp_batch}, 66), hidden 256", ala2.to(device),
                       torch.randn(mlp_batch, 66, generator=gen).to(device), {}),
        SamplerProblem(f"tiny MLP, ({tiny_batch}, 66), hidden 64", tiny.to(device),
                       torch.randn(tiny_batch, 66, generator=gen).to(device), {}),
        SamplerProblem(f"zero-cost model, ({tiny_batch}, 66)", ZeroCostModel().to(device),
                       torch.randn(tiny_batch, 66, generator=gen).to(device), {}),
    ]


def runners(model: Model, problem: SamplerProblem, method: str, steps: int, peers: list[str]) -> dict[str, Runner]:
    """Zero-argument calls that sample ``problem`` with ``model`` in each variant, all under ``torch.no_grad``."""
    x, extras = problem.x, problem.extras
    grid = torch.linspace(0.0, 1.0, steps + 1, device=x.device)
    ours = ODESolver(model, method)
    result: dict[str, Runner] = {"fused": lambda: ours.sample(x, num_steps=steps, **extras)}
    peer_method = METHODS[method]
    if "flow_matching" in peers:
        from flow_matching.solver import ODESolver as FlowMatchingODESolver

        flow = FlowMatchingODESolver(velocity_model=model)
        result["flow_matching"] = lambda: flow.sample(
            x_init=x, step_size=None, method=peer_method, time_grid=grid, **extras
        )
    if "torchdiffeq" in peers:
        from torchdiffeq import odeint

        def torchdiffeq_run() -> torch.Tensor:
            with torch.no_grad():
                return odeint(lambda t, state: model(state, t, **extras), x, grid, method=peer_method)[-1]

        result["torchdiffeq"] = torchdiffeq_run
    if "torchode" in peers and method == "euler":
        result["torchode"] = _torchode_euler(model, x, extras, steps)
    return result


def _torchode_euler(model: Model, x: torch.Tensor, extras: dict[str, torch.Tensor], steps: int) -> Runner:
    """torchode's Euler with a fixed step: it integrates flat ``(B, features)`` states with one time per sample."""
    import torchode

    batch, shape = x.shape[0], x.shape
    term = torchode.ODETerm(lambda t, y: model(y.view(shape), t, **extras).reshape(batch, -1))
    solver = torchode.AutoDiffAdjoint(torchode.Euler(term), torchode.FixedStepController())
    t_eval = torch.tensor([0.0, 1.0], device=x.device).expand(batch, 2)
    problem = torchode.InitialValueProblem(y0=x.reshape(batch, -1), t_eval=t_eval)
    # A step a hair longer than 1/steps: torchode shortens the last one to land on t = 1, where a float32 sum of
    # exact 1/steps could fall short of 1 and take one more, tiny step.
    dt0 = torch.full((batch,), (1.0 + 1e-6) / steps, device=x.device)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return solver.solve(problem, dt0=dt0).ys[:, -1].view(shape)

    return run


class _CountingModel:
    """Wraps a model and counts its calls, for the agreement check."""

    def __init__(self, model: Model) -> None:
        self.model, self.calls = model, 0

    def __call__(self, *args: object, **kwargs: object) -> torch.Tensor:
        self.calls += 1
        return self.model(*args, **kwargs)


def make_check(problem: SamplerProblem, method: str, steps: int, peers: list[str],
               model: Model | None = None) -> Callable[[], dict[str, float]]:
    """The agreement check of one case: runs every variant once with a call-counting ``model`` (default: the
    problem's) and applies :func:`check_agreement`."""
    base = problem.model if model is None else model

    def check() -> dict[str, float]:
        outputs, calls = {}, {}
        for name in runners(base, problem, method, steps, peers):
            counting = _CountingModel(base)
            outputs[name] = runners(counting, problem, method, steps, peers)[name]()
            calls[name] = counting.calls
        return check_agreement(outputs, calls, steps * TABLEAUX[method].num_stages)

    return check


def cases(device: torch.device, quick: bool) -> list[Case]:
    """Every model x method x step count, ours against each installed peer."""
    peers = installed_peers()
    missing = [peer for peer in PEERS if peer not in peers]
    header = [
        "fused: bfr_fast's ODESolver; the others: the peers on the same model, noise and grid; max rel. difference: "
        "the largest max|peer - ours| / max|ours| over the peers (the check fails the run above "
        f"{TOLERANCE:g}, or on a differing number of model calls); torchode: Euler only (no built-in midpoint or RK4)"
    ]
    if missing:
        header.append(f"not installed, so not compared: {', '.join(missing)} (pip install -e \".[bench]\")")
    result = []
    for problem in problems(device, quick):
        for method in METHODS:
            for steps in QUICK_STEPS if quick else STEPS:
                fns = runners(problem.model, problem, method, steps, peers)
                name = f"{problem.name}, {METHOD_LABELS[method]}, {steps} step{'s' if steps > 1 else ''}"
                notes = header if not result else []
                check = make_check(problem, method, steps, peers)
                result.append(Case("sampler", name, fns, problem.x.shape[0], "samples/s", notes, check, "sampler"))
    return result
