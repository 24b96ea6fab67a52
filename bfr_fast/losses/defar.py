r"""DEFAR: flow matching that corrects its own exposure bias, by Anti-Drift Rectification (ADR) and Frequency
Compensation (FC).

The paper's equations are not public; this is the reconstruction of docs/design.md §5.6, and every reconstructed
choice (R) is an argument of :class:`DEFARLoss`. The default variant: ADR as a per-element mean
(``adr_reduction="mean"``), the FC weight normalised to mean 1 (``fc_normalize=True``), no gradient through the
simulated state (``grad_through_simulation=False``). On the linear path, with :math:`\epsilon` the source and
:math:`x_1` the data (general interpolants below):

- :math:`t_s \sim U(0, 1)`, :math:`t_e \sim U(t_s, 1)`; :math:`x_{t_s}`, :math:`x_{t_e}` on the path of
  :math:`(\epsilon, x_1)`.
- One-step simulation: :math:`\hat x = x_{t_s} + (t_e - t_s)\, \mathrm{sg}[v_\theta(x_{t_s}, t_s)]`
  (``steps = n`` takes n Euler steps, :mod:`bfr_fast.losses.simulation`; without the :math:`\mathrm{sg}` under
  ``grad_through_simulation``, below).
- Exposure bias, in velocity space (R): :math:`\delta = \mathrm{sg}[v_\theta(\hat x, t_e) - v_\theta(x_{t_e}, t_e)]`.
- ADR: :math:`u = x_1 - \hat x`, :math:`\hat v = v_\theta(\hat x, t_e)` with gradient, and (``adr_normalize``, R)
  the unit vectors :math:`e_v = \hat v/\max(\|\hat v\|, \varepsilon)`, :math:`e_u = u/\max(\|u\|, \varepsilon)`, norms
  per sample over all of its :math:`D` elements. By default (``adr_reduction="mean"``) the term is their MSE, the
  mean over batch and elements, the reduction of the flow-matching term (the paper's figure labels it "MSE"):

  .. math::
      L_\mathrm{ADR} = \frac{1}{BD} \sum_{j=1}^{B} \sum_{i=1}^{D} (e_{v,ji} - e_{u,ji})^2 \in [0, 4/D].

  ``adr_reduction="sum"`` sums over the elements instead, :math:`\frac1B \sum_j \|e_{v,j} - e_{u,j}\|^2 \in [0, 4]`:
  :math:`D` times the default, the variant of this project's tables before the fix (64× on 8×8 digits), kept for
  the ablation. Un-normalised (``adr_normalize=False``) the same reductions apply to :math:`\hat v - u`. If
  :math:`\hat x = x_{t_e}`, :math:`u = (1 - t_e)(x_1 - \epsilon)` is parallel to the flow-matching target, so
  normalised ADR agrees with flow matching; the raw form then asks for :math:`(1 - t_e)` times it.
- FC (R): the weight, by default (``fc_normalize``) normalised to mean 1 over a sample's positions, so that turning
  FC on does not rescale the term,

  .. math::
      W = \frac{1 + \gamma\, s/(\bar s + \varepsilon)}{1 + \gamma}, \qquad
      L_\mathrm{FC} = \mathrm{mean}\; W \odot (v_\theta(x_{t_s}, t_s) - (x_1 - \epsilon))^2,

  :math:`s = |\mathrm{source}|` summed over channels, :math:`\bar s` its mean over the positions (the mean of
  :math:`W` is :math:`1 - \gamma\varepsilon/((1 + \gamma)(\bar s + \varepsilon))`, 1 up to :math:`\varepsilon`).
  ``fc_normalize=False`` drops the :math:`1/(1 + \gamma)`: a weight of mean :math:`1 + \gamma`, the variant of the
  tables before the fix. Computed by :func:`bfr_fast.ops.fc_weighted_mse`; the source is :math:`\delta` (optionally
  low-passed first, R), or, for the Table-7 ablation, the low-/high-passed image, the image, or the noise.
  ``fc=False`` keeps the term with :math:`W \equiv 1`: plain flow matching.
- FC switched off past a time (``fc_until``, R): the paper motivates FC by the exposure bias being low-frequency
  dominant at high noise, and on mnist5k it stops being so past a measured time (``docs/results/
  defar-spectra-mnist5k``: there :math:`\delta`'s PFR falls below the target's at :math:`t \approx 0.57`, cutoff
  0.5). With ``fc_until`` :math:`= \tau`, a sample keeps the FC weight only if :math:`t_s \le \tau`; the others get
  :math:`W \equiv 1`, their plain flow-matching MSE, so

  .. math::
      L_\mathrm{FC} = \frac1B \sum_j \mathrm{mean}_{c,p}\,
      W_j^{[t_{s,j} \le \tau]} \odot (v_\theta(x_{t_{s,j}}, t_{s,j}) - (x_{1,j} - \epsilon_j))^2

  (:math:`W^{[\cdot]}` the weight where the condition holds, 1 elsewhere). The switch is on :math:`t_s`, the time
  of the loss the weight multiplies (:math:`\delta` itself is taken at :math:`t_e \ge t_s`). With
  ``fc_normalize=False`` the weighted samples' weight has mean :math:`1 + \gamma` and the others 1. ``None``
  (default): the weight at every time, the paper's form as far as its text says.
- :math:`L = \beta_\mathrm{FC} L_\mathrm{FC} + \lambda_\mathrm{ADR} L_\mathrm{ADR}`, defaults :math:`\gamma = 1`,
  :math:`\lambda_\mathrm{ADR} = 10`, :math:`\beta_\mathrm{FC} = 1`.

**Forward passes and gradients.** Three model calls per training step for full DEFAR (``steps=1``):

1. :math:`v_\theta(x_{t_s}, t_s)`, **with** gradient: the FC term; its detached value drives the simulation.
2. :math:`v_\theta(\hat x, t_e)`, **with** gradient: the ADR term; its detached value is the first half of
   :math:`\delta`.
3. :math:`v_\theta(x_{t_e}, t_e)`, **without** gradient: the second half of :math:`\delta`.

By default no gradient crosses the simulation (:math:`\hat x` is a constant) or the FC weight. With ``steps = n``,
the simulation adds ``n - 1`` calls without gradient: ``n + 2`` calls, 2 with gradient. Calls a configuration does
not need are skipped (:attr:`DEFARLoss.forward_passes`): ADR without the exposure-bias source needs no call 3;
FC from an image or noise source without ADR needs only call 1 (plain FM cost); call 1 runs without gradient
when :math:`\beta_\mathrm{FC} = 0`, call 2 without gradient when only FC uses it.

**Gradients through the simulation** (``grad_through_simulation=True``, R; the paper's appendix blames its
multi-step failures on "the variance of the gradients backpropagated through the intermediate states", so they
probably flow there): :math:`\hat x = x_{t_s} + (t_e - t_s)\, v_\theta(x_{t_s}, t_s)` keeps its graph, so the ADR
term's gradient reaches :math:`\theta` through call 2's input and, from there, through every simulation call, which
now records a graph too: call 1 always (also when :math:`\beta_\mathrm{FC} = 0`) and the ``n - 1`` intermediate
calls, ``n + 1`` calls with gradient and their activations held until the backward pass. The ADR target :math:`u`
and the exposure bias :math:`\delta` stay built from :math:`\mathrm{sg}[\hat x]`: a target with a gradient would
let the loss move the target towards the prediction.

**Other interpolants** :math:`x_t = \alpha x_1 + \sigma \epsilon`. The FC target is the interpolant's velocity
target :math:`\alpha'(t_s) x_1 + \sigma'(t_s)\epsilon`. ADR's :math:`u` generalises to
:meth:`~bfr_fast.paths.Interpolant.direction_towards`: :math:`\sigma(t_e)` times the velocity at :math:`\hat x` of
the path member through :math:`\hat x` that ends at :math:`x_1`,
:math:`(\sigma\alpha' - \alpha\sigma') x_1 + \sigma' \hat x`. It is exactly :math:`x_1 - \hat x` on the linear path,
:math:`\propto x_1 - \alpha \hat x` for GVP and VP, and parallel to the velocity target when
:math:`\hat x = x_{t_e}`, so normalised ADR agrees with flow matching on every path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bfr_fast.checks import choice, finite_float, non_negative_float
from bfr_fast.losses.path_loss import ForwardPasses, PathLoss, velocity_mse
from bfr_fast.losses.simulation import check_simulation, simulate, simulation_times
from bfr_fast.ops import fc_weighted_mse, frequency_filter
from bfr_fast.paths import Interpolant

WEIGHT_SOURCES: tuple[str, ...] = ("exposure_bias", "lowpass_image", "highpass_image", "image", "noise")
ADR_REDUCTIONS: tuple[str, ...] = ("mean", "sum")


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
        fc_until: Apply the FC weight only to samples with :math:`t_s \\le` ``fc_until`` (in [0, 1]); the others
            get :math:`W \\equiv 1` (R, module docstring). ``None`` (default): every sample. Needs ``fc``.
        adr_normalize: Compare directions (normalised :math:`\\hat v` and :math:`u`) or the raw vectors (R,
            Table 6).
        adr_reduction: ``"mean"`` over batch and elements (default, the flow-matching term's scale) or ``"sum"``
            over a sample's elements, mean over the batch (:math:`D` times larger; the pre-fix variant).
        fc_normalize: Divide the FC weight by :math:`1 + \\gamma` (mean 1 per sample, default); ``False`` keeps
            the pre-fix weight of mean :math:`1 + \\gamma`.
        grad_through_simulation: Let the ADR gradient flow through :math:`\\hat x` into the simulation's calls
            (needs ``adr``; module docstring). Default ``False``: :math:`\\hat x` is a constant.
        steps: Simulated steps of multi-step ADR (>= 1).
        timesteps: One of :data:`~bfr_fast.losses.simulation.TIMESTEP_STRATEGIES`.
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
        fc_until: float | None = None,
        adr_normalize: bool = True,
        adr_reduction: str = "mean",
        fc_normalize: bool = True,
        grad_through_simulation: bool = False,
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
        self.lambda_adr = non_negative_float("lambda_adr", lambda_adr)
        self.beta_fc = non_negative_float("beta_fc", beta_fc)
        self.gamma = non_negative_float("gamma", gamma)
        self.image_cutoff = non_negative_float("image_cutoff", image_cutoff)
        self.eps = non_negative_float("eps", eps)
        if self.eps == 0:
            raise ValueError("eps must be > 0")
        choice("weight_source", weight_source, WEIGHT_SOURCES)
        if bias_lowpass_cutoff is not None:
            non_negative_float("bias_lowpass_cutoff", bias_lowpass_cutoff)
            if weight_source != "exposure_bias":
                raise ValueError("bias_lowpass_cutoff applies to weight_source='exposure_bias' only")
        if fc_until is not None:
            fc_until = finite_float("fc_until", fc_until, low=0.0, high=1.0)
            if not fc:
                raise ValueError("fc_until needs fc=True (it switches the FC weight off past a time)")
        if adr and self.lambda_adr == 0:
            raise ValueError("lambda_adr must be > 0 with adr=True (turn ADR off with adr=False)")
        if fc and self.beta_fc == 0:
            raise ValueError("beta_fc must be > 0 with fc=True (beta_fc weighs the FC term)")
        if not adr and self.beta_fc == 0:
            raise ValueError("beta_fc = 0 and adr=False leave no loss term")
        choice("adr_reduction", adr_reduction, ADR_REDUCTIONS)
        if grad_through_simulation and not adr:
            raise ValueError("grad_through_simulation needs adr=True (only ADR sees the simulated state's gradient)")
        self.adr = bool(adr)
        self.fc = bool(fc)
        self.weight_source = weight_source
        self.bias_lowpass_cutoff = bias_lowpass_cutoff
        self.fc_until = fc_until
        self.adr_normalize = bool(adr_normalize)
        self.adr_reduction = adr_reduction
        self.fc_normalize = bool(fc_normalize)
        self.grad_through_simulation = bool(grad_through_simulation)

    @property
    def _needs_bias(self) -> bool:
        return self.fc and self.weight_source == "exposure_bias"

    @property
    def forward_passes(self) -> ForwardPasses:
        """Model calls per training step and how many record a graph (module docstring)."""
        simulated = self.adr or self._needs_bias
        total = 1 + (self.steps if simulated else 0) + (1 if self._needs_bias else 0)
        if self.grad_through_simulation:  # call 1, the n - 1 intermediate calls and call 2
            return ForwardPasses(total, self.steps + 1)
        return ForwardPasses(total, int(self.beta_fc > 0) + int(self.adr))

    @property
    def settings(self) -> dict[str, Any]:
        """The coupling and what this variant computes: ADR's form and reduction, FC's normalisation, the
        simulation."""
        out = dict(super().settings)
        out["adr"] = (f"{'direction' if self.adr_normalize else 'raw'} {self.adr_reduction}, "
                      f"lambda {self.lambda_adr:g}") if self.adr else "off"
        fc = f"{'normalised' if self.fc_normalize else 'mean 1+gamma'}, gamma {self.gamma:g}, {self.weight_source}"
        if self.bias_lowpass_cutoff is not None:
            fc += f" low-passed at {self.bias_lowpass_cutoff:g}"
        if self.fc_until is not None:
            fc += f", until t_s {self.fc_until:g}"
        out["fc"] = fc if self.fc else "off"
        if self.beta_fc != 1:
            out["beta_fc"] = self.beta_fc
        out["simulation"] = (f"{self.steps} {self.timesteps}"
                             + (", grad through" if self.grad_through_simulation else ""))
        return out

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
        dtype = torch.promote_types(u.dtype, torch.float32)
        v_hat, u = v_hat.to(dtype).flatten(1), u.to(dtype).flatten(1)
        if self.adr_normalize:
            v_hat = v_hat / v_hat.norm(dim=1, keepdim=True).clamp_min(self.eps)
            u = u / u.norm(dim=1, keepdim=True).clamp_min(self.eps)
        squared = (v_hat - u).pow(2)
        return squared.mean() if self.adr_reduction == "mean" else squared.sum(dim=1).mean()

    def forward(
        self, model: nn.Module, x1: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x0, x1, y, t_start = self.draw(x1, y)
        path = self.interpolant
        dtype = torch.promote_types(x1.dtype, torch.float32)  # of the loss terms, whatever the model's output dtype
        x_start, target = path.sample(x0, x1, t_start)
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and (self.beta_fc > 0 or self.grad_through_simulation)):
            v_start = model(x_start, t_start, y)  # call 1
        logs: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=x1.device)
        bias = None
        if self.adr or self._needs_bias:
            times = simulation_times(t_start, self.steps, self.timesteps, path.t_max)
            t_end = times[-1]
            x_hat = simulate(model, x_start, times, y, first_velocity=v_start,  # n - 1 calls
                             grad=self.grad_through_simulation)
            with torch.set_grad_enabled(grad and self.adr):
                v_hat = model(x_hat, t_end, y)  # call 2
            if self._needs_bias:
                with torch.no_grad():
                    v_end = model(path.point(x0, x1, t_end), t_end, y)  # call 3
                bias = v_hat.detach().to(dtype) - v_end.to(dtype)
                logs["exposure_bias"] = bias.pow(2).mean()
            if self.adr:
                adr = self._adr(v_hat, path.direction_towards(x_hat.detach(), x1, t_end))
                logs["adr"] = adr.detach()
                loss = loss + self.lambda_adr * adr
        if self.beta_fc > 0:
            fm = velocity_mse(v_start, target)
            logs["fm"] = fm.detach()
            if self.fc:
                source = self.fc_source(x0.to(dtype), x1.to(dtype), bias)
                pred, want = v_start.to(dtype), target.to(dtype)
                weighted = fc_weighted_mse(pred, want, source, self.gamma, self.eps)  # (B,)
                if self.fc_normalize:
                    weighted = weighted / (1 + self.gamma)  # the weight is linear in its numerator: W / (1 + gamma)
                if self.fc_until is not None:  # W = 1 past fc_until: the sample's plain MSE
                    plain = (pred - want).pow(2).flatten(1).mean(dim=1)
                    weighted = torch.where(t_start <= self.fc_until, weighted, plain)
                fm = weighted.mean()
                logs["fc"] = fm.detach()
            loss = loss + self.beta_fc * fm
        return loss, logs
