r"""Networks written for other libraries, called in this library's convention ``model(x, t, y=None)``.

Researchers train with torchcfm, diffusers or Meta's flow_matching, whose networks are called differently:

==================  =====================================  ==========================  =======================
convention          call                                   labels                      output
==================  =====================================  ==========================  =======================
``bfr``             ``net(x, t)``                          ``y=``                      the tensor
``torchcfm``        ``net(t, x)`` (time first)             ``y=``                      the tensor
``diffusers``       ``net(x, t)``                          ``class_labels=``           ``.sample`` (or ``[0]``)
``flow_matching``   ``net(x, t, **extras)``                ``extras["label"]``         the tensor
==================  =====================================  ==========================  =======================

and may run time the other way or on another scale. With :math:`t` the library's time (0 noise, 1 data) the network
receives :math:`\tau = c\,t` (``noise-to-data``) or :math:`\tau = c\,(1 - t)` (``data-to-noise``), :math:`c` the
time scale (e.g. 1000 for diffusers' flow-matching schedulers, whose timesteps are :math:`1000\,\sigma`). A velocity
network trained in the reversed direction predicts :math:`dx/d\tau'` with :math:`\tau' = 1 - t`, so its velocity
in the library's time is the negative of its output; an ε-prediction's output does not depend on the direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bfr_fast.checks import choice, positive_float

TIME_DIRECTIONS = ("noise-to-data", "data-to-noise")
OUTPUTS = ("velocity", "eps")


@dataclass(frozen=True)
class Convention:
    """How one library calls its networks.

    Attributes:
        name: The convention's name (the CLI's ``--convention``).
        time_first: The network takes ``(t, x)`` rather than ``(x, t)``.
        label_keyword: The keyword that carries class labels.
        velocity_time: ``(direction, scale)`` of the library's own velocity (flow-matching) models, the defaults
            of :class:`ForeignNetwork` for a velocity network of this convention.
    """

    name: str
    time_first: bool = False
    label_keyword: str = "y"
    velocity_time: tuple[str, float] = ("noise-to-data", 1.0)


CONVENTIONS: dict[str, Convention] = {
    "bfr": Convention("bfr"),
    "torchcfm": Convention("torchcfm", time_first=True),
    # diffusers' flow-matching schedulers (FlowMatchEulerDiscreteScheduler) run sigma from 1 (noise) to 0 and give
    # the network timesteps 1000 * sigma
    "diffusers": Convention("diffusers", label_keyword="class_labels", velocity_time=("data-to-noise", 1000.0)),
    "flow_matching": Convention("flow_matching", label_keyword="label"),
}


def default_time(convention: str, output: str) -> tuple[str, float]:
    """The time direction and scale a network of ``convention`` predicting ``output`` takes unless told otherwise.

    An ε-network's time is the DDPM's own (:class:`~bfr_fast.paths.ProbabilityFlowVelocity` gives the index or
    :math:`t`), so it is passed as it is: ``("noise-to-data", 1.0)``.
    """
    choice("convention", convention, tuple(CONVENTIONS))
    choice("output", output, OUTPUTS)
    return CONVENTIONS[convention].velocity_time if output == "velocity" else ("noise-to-data", 1.0)


class ForeignNetwork(nn.Module):
    """A network of another library's convention, called as ``model(x, t, y=None)`` in this library's time.

    Args:
        network: The network as its library built it.
        convention: A key of :data:`CONVENTIONS`.
        output: ``"velocity"`` (negated when the time runs the other way) or ``"eps"`` (returned as it is).
        time_direction: ``"noise-to-data"`` (the library's) or ``"data-to-noise"`` (:math:`\\tau` from 1 - t);
            None: the convention's default for ``output`` (:func:`default_time`).
        time_scale: :math:`c > 0` multiplying the time the network receives; None: the convention's default.

    Raises:
        ValueError: An unknown convention, output or direction, or a non-positive scale.
    """

    def __init__(self, network: nn.Module, convention: str = "bfr", output: str = "velocity",
                 time_direction: str | None = None, time_scale: float | None = None) -> None:
        super().__init__()
        default_direction, default_scale = default_time(convention, output)
        self.network = network
        self.convention = CONVENTIONS[convention]
        self.output = output
        self.time_direction = choice("time_direction", time_direction or default_direction, TIME_DIRECTIONS)
        self.time_scale = positive_float("time_scale", default_scale if time_scale is None else time_scale)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output at ``(x, t)`` in this library's time.

        Args:
            x: ``(B, ...)`` state.
            t: ``(B,)`` float32 times, 0 noise and 1 data (or what the wrapper above passes, e.g. a DDPM index).
            y: ``(B,)`` class labels, or None for an unconditional call.

        Returns:
            ``(B, ...)``: the velocity :math:`dx/dt`, or the ε-prediction.
        """
        reversed_time = self.time_direction == "data-to-noise"
        tau = (1.0 - t) if reversed_time else t
        if self.time_scale != 1.0:
            tau = tau * self.time_scale
        labels = {} if y is None else {self.convention.label_keyword: y}
        out = self.network(tau, x, **labels) if self.convention.time_first else self.network(x, tau, **labels)
        out = _unwrap(out)
        return -out if reversed_time and self.output == "velocity" else out

    def extra_repr(self) -> str:
        return (f"convention={self.convention.name!r}, output={self.output!r}, "
                f"time_direction={self.time_direction!r}, time_scale={self.time_scale:g}")


def _unwrap(out: object) -> torch.Tensor:
    """The tensor of a network's output: itself, a diffusers ``BaseOutput``'s ``.sample``, or a tuple's first."""
    if isinstance(out, torch.Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"the network returned a {type(out).__name__}, not a tensor (nor an object with .sample)")
