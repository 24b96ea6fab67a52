r"""DEFAR: flow matching that corrects its own exposure bias, by Anti-Drift Rectification (ADR) and Frequency
Compensation (FC).

The paper's equations are not public; this is the reconstruction of DESIGN.md §5, and every reconstructed choice
(R) is an argument of :class:`DEFARLoss`. On the linear path, with :math:`\epsilon` the source and :math:`x_1` the
data (general interpolants below):

- :math:`t_s \sim U(0, 1)`, :math:`t_e \sim U(t_s, 1)`; :math:`x_{t_s}`, :math:`x_{t_e}` on the path of
  :math:`(\epsilon, x_1)`.
- One-step simulation: :math:`\hat x = x_{t_s} + (t_e - t_s)\, \mathrm{sg}[v_\theta(x_{t_s}, t_s)]`
  (``steps = n`` takes n Euler steps, :mod:`bfr_fast.losses.simulation`).
- Exposure bias, in velocity space (R): :math:`\delta = \mathrm{sg}[v_\theta(\hat x, t_e) - v_\theta(x_{t_e}, t_e)]`.
- ADR: :math:`u = x_1 - \hat x`, :math:`\hat v = v_\theta(\hat x, t_e)` with gradient, and (``adr_normalize``, R)

  .. math::
      L_\mathrm{ADR} = \mathrm{mean}_b \Big\| \frac{\hat v}{\max(\|\hat v\|, \varepsilon)}
          - \frac{u}{\max(\|u\|, \varepsilon)} \Big\|^2 \in [0, 4]

  (norms per sample, over all of its elements), or un-normalised :math:`\mathrm{mean}(\hat v - u)^2` over every
  element, the flow-matching scale. If :math:`\hat x = x_{t_e}`, :math:`u = (1 - t_e)(x_1 - \epsilon)` is parallel to
  the flow-matching target, so normalised ADR agrees with flow matching; the raw form then asks for
  :math:`(1 - t_e)` times it.
- FC (R): :math:`W = 1 + \gamma\, s/(\bar s + \varepsilon)`, :math:`s = |\mathrm{source}|` summed over channels,
  :math:`L_\mathrm{FC} = \mathrm{mean}\; W \odot (v_\theta(x_{t_s}, t_s) - (x_1 - \epsilon))^2`
  by :func:`bfr_fast.ops.fc_weighted_mse`; the source is :math:`\delta` (optionally low-passed first, R), or, for the
  Table-7 ablation, the low-/high-passed image, the image, or the noise. ``fc=False`` keeps the term with
  :math:`W \equiv 1`: plain flow matching.
- :math:`L = \beta_\mathrm{FC} L_\mathrm{FC} + \lambda_\mathrm{ADR} L_\mathrm{ADR}`, defaults :math:`\gamma = 1`,
  :math:`\lambda_\mathrm{ADR} = 10`, :math:`\beta_\mathrm{FC} = 1`.

**Forward passes and gradients.** Three model calls per training step for full DEFAR (``steps=1``):

1. :math:`v_\theta(x_{t_s}, t_s)`, **with** gradient: the FC term; its detached value drives the simulation.
2. :math:`v_\theta(\hat x, t_e)`, **with** gradient: the ADR term; its detached value is the first half of
   :math:`\delta`.
3. :math:`v_\theta(x_{t_e}, t_e)`, **without** gradient: the second half of :math:`\delta`.

No gradient crosses the simulation (:math:`\hat x` is a constant) or the FC weight. With ``steps = n``, the
simulation adds ``n - 1`` calls without gradient: ``n + 2`` calls, 2 with gradient. Calls a configuration does
not need are skipped (:attr:`DEFARLoss.forward_passes`): ADR without the exposure-bias source needs no call 3;
FC from an image or noise source without ADR needs only call 1 (plain FM cost); call 1 runs without gradient
when :math:`\beta_\mathrm{FC} = 0`, call 2 without gradient when only FC uses it.

**Other interpolants** :math:`x_t = \alpha x_1 + \sigma \epsilon`. The FC target is the interpolant's velocity
target :math:`\alpha'(t_s) x_1 + \sigma'(t_s)\epsilon`. ADR's :math:`u` generalises to
:meth:`~bfr_fast.paths.Interpolant.direction_towards`: :math:`\sigma(t_e)` times the velocity at :math:`\hat x` of
the path member through :math:`\hat x` that ends at :math:`x_1`,
:math:`(\sigma\alpha' - \alpha\sigma') x_1 + \sigma' \hat x`. It is exactly :math:`x_1 - \hat x` on the linear path,
:math:`\propto x_1 - \alpha \hat x` for GVP and VP, and parallel to the velocity target when
:math:`\hat x = x_{t_e}`, so normalised ADR agrees with flow matching on every path.
"""

from __future__ import annotations

import torch
from torch import nn

from bfr_fast.losses.path_loss import ForwardPasses, PathLoss, check_nonnegative, velocity_mse
from bfr_fast.losses.simulation import check_simulation, simulate, simulation_times
from bfr_fast.ops import fc_weighted_mse, frequency_filter
from bfr_fast.paths import Interpolant

WEIGHT_SOURCES: tuple[str, ...] = ("exposure_bias", "lowpass_image", "highpass_image", "image", "noise")


class DEFARLoss(PathLoss):
    """DEFAR's loss ``loss(model, x1, y=None) -> (scalar, logs)`` (definitions in the module docstring).

    Logs (detached): ``"fm"`` the unweighted flow-matching MSE at :math:`t_s`, ``"fc"`` the FC term,
    ``"adr"`` the ADR term, ``"exposure_bias"`` :math:`\\mathrm{mean}\\,\\delta^2`, each when computed.

    Args:
        adr: Add the ADR term.
        fc: Weight the flow-matching term by FC (else :math:`W \\equiv 1`).
        lambda_adr: :math:`\\lambda_\\mathrm{ADR} > 0` (with ``adr``).
        beta_fc: :math:`\\beta_\\mathrm{FC} \\ge 0`, the weight of the (FC-weighted) flow-matching term; 0 drops it
            (then ``fc`` must be off and ``adr`` on).
        gamma: :math:`\\gamma \\ge 0`, the FC strength.
        weight_source: One of :data:`WEIGHT_SOURCES` (R).
        bias_lowpass_cutoff: Low-pass :math:`\\delta` at this radius before taking :math:`|\\cdot|`
            (:func:`bfr_fast.ops.frequency_filter`; 1 = Nyquist); ``None`` leaves it (R). Exposure-bias source only.
        image_cutoff: Radius of the ``"lowpass_image"`` / ``"highpass_image"`` filters (R).
        adr_normalize: Compare directions (normalised :math:`\\hat v` and :math:`u`) or the raw vectors (R,
            Table 6).
        steps: Simulated steps of multi-step ADR (>= 1).
        timesteps: ``"random"`` or ``"equal"`` (:mod:`bfr_fast.losses.simulation`).
        eps: :math:`\\varepsilon > 0` guarding the FC mean and the ADR norms.
        coupling: ``"independent"`` or ``"ot"``.
        interpolant: The path (default linear; no path noise).
        label_dropout: Probability of training a sample unconditionally (every call of a sample gets the same label).
        null_class: The model's null label; needed when ``label_dropout > 0``.

    Raises:
        ValueError: A bad argument; the message names it.
    """

    def __init__(
        self,
        adr: bool = True,
        fc: bool = True,
        lambda_adr: float = 10.0,
        beta_fc: float = 1.0,
        gamma: float = 1.0,
        weight_source: str = "exposure_bias",
        bias_lowpass_cutoff: float | None = None,
        image_cutoff: float = 0.5,
        adr_normalize: bool = True,
        steps: int = 1,
        timesteps: str = "random",
        eps: float = 1e-6,
        coupling: str = "ot",
        interpolant: Interpolant | None = None,
        label_dropout: float = 0.0,
        null_class: int | None = None,
    ) -> None:
        super().__init__(coupling, interpolant, label_dropout, null_class)
        self.steps = check_simulation(steps, timesteps, self.interpolant)
        self.timesteps = timesteps
        self.lambda_adr = check_nonnegative("lambda_adr", lambda_adr)
        self.beta_fc = check_nonnegative("beta_fc", beta_fc)
        self.gamma = check_nonnegative("gamma", gamma)
        self.image_cutoff = check_nonnegative("image_cutoff", image_cutoff)
        self.eps = check_nonnegative("eps", eps)
        if self.eps == 0:
            raise ValueError("eps must be > 0")
        if weight_source not in WEIGHT_SOURCES:
            raise ValueError(f"weight_source must be one of {WEIGHT_SOURCES}, got {weight_source!r}")
        if bias_lowpass_cutoff is not None:
            check_nonnegative("bias_lowpass_cutoff", bias_lowpass_cutoff)
            if weight_source != "exposure_bias":
                raise ValueError("bias_lowpass_cutoff applies to weight_source='exposure_bias' only")
        if adr and self.lambda_adr == 0:
            raise ValueError("lambda_adr must be > 0 with adr=True (turn ADR off with adr=False)")
        if fc and self.beta_fc == 0:
            raise ValueError("beta_fc must be > 0 with fc=True (beta_fc weighs the FC term)")
        if not adr and self.beta_fc == 0:
            raise ValueError("beta_fc = 0 and adr=False leave no loss term")
        self.adr = bool(adr)
        self.fc = bool(fc)
        self.weight_source = weight_source
        self.bias_lowpass_cutoff = bias_lowpass_cutoff
        self.adr_normalize = bool(adr_normalize)

    @property
    def _needs_bias(self) -> bool:
        return self.fc and self.weight_source == "exposure_bias"

    @property
    def forward_passes(self) -> ForwardPasses:
        """Model calls per training step and how many record a graph (module docstring)."""
        simulated = self.adr or self._needs_bias
        total = 1 + (self.steps if simulated else 0) + (1 if self._needs_bias else 0)
        return ForwardPasses(total, int(self.beta_fc > 0) + int(self.adr))

    def fc_source(self, x0: torch.Tensor, x1: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The tensor whose channel-summed magnitude :math:`s` sets the FC weight, per ``weight_source``.

        Args:
            x0: ``(B, C, H, W)`` sources :math:`\\epsilon`.
            x1: ``(B, C, H, W)`` data.
            bias: The exposure bias :math:`\\delta` (``"exposure_bias"`` only).
        """
        if self.weight_source == "exposure_bias":
            if bias is None:
                raise ValueError("bias: the exposure-bias source needs the exposure bias")
            if self.bias_lowpass_cutoff is None:
                return bias
            return frequency_filter(bias, self.bias_lowpass_cutoff, "low")
        if self.weight_source == "lowpass_image":
            return frequency_filter(x1, self.image_cutoff, "low")
        if self.weight_source == "highpass_image":
            return frequency_filter(x1, self.image_cutoff, "high")
        return x1 if self.weight_source == "image" else x0

    def _adr(self, v_hat: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if not self.adr_normalize:
            return velocity_mse(v_hat, u)
        dtype = torch.promote_types(u.dtype, torch.float32)
        v_hat, u = v_hat.to(dtype).flatten(1), u.to(dtype).flatten(1)
        v_dir = v_hat / v_hat.norm(dim=1, keepdim=True).clamp_min(self.eps)
        u_dir = u / u.norm(dim=1, keepdim=True).clamp_min(self.eps)
        return (v_dir - u_dir).pow(2).sum(dim=1).mean()

    def forward(
        self, model: nn.Module, x1: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x0, x1, y, t_start = self.draw(x1, y)
        path = self.interpolant
        dtype = torch.promote_types(x1.dtype, torch.float32)  # of the loss terms, whatever the model's output dtype
        x_start, target = path.sample(x0, x1, t_start)
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and self.beta_fc > 0):
            v_start = model(x_start, t_start, y)  # call 1
        logs: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=x1.device)
        bias = None
        if self.adr or self._needs_bias:
            times = simulation_times(t_start, self.steps, self.timesteps, path.t_max)
            t_end = times[-1]
            x_hat = simulate(model, x_start, times, y, first_velocity=v_start)  # n - 1 calls
            with torch.set_grad_enabled(grad and self.adr):
                v_hat = model(x_hat, t_end, y)  # call 2
            if self._needs_bias:
                with torch.no_grad():
                    v_end = model(path.point(x0, x1, t_end), t_end, y)  # call 3
                bias = v_hat.detach().to(dtype) - v_end.to(dtype)
                logs["exposure_bias"] = bias.pow(2).mean()
            if self.adr:
                adr = self._adr(v_hat, path.direction_towards(x_hat, x1, t_end))
                logs["adr"] = adr.detach()
                loss = loss + self.lambda_adr * adr
        if self.beta_fc > 0:
            fm = velocity_mse(v_start, target)
            logs["fm"] = fm.detach()
            if self.fc:
                source = self.fc_source(x0.to(dtype), x1.to(dtype), bias)
                fm = fc_weighted_mse(v_start.to(dtype), target.to(dtype), source, self.gamma, self.eps).mean()
                logs["fc"] = fm.detach()
            loss = loss + self.beta_fc * fm
        return loss, logs
