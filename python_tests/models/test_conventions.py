"""ForeignNetwork: each library's call form, label keyword, output unwrapping, time direction and scale."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bfr_fast.models import CONVENTIONS, ForeignNetwork
from bfr_fast.models.conventions import default_time


class Recorder(nn.Module):
    """Records how it was called; returns ``x * 2 + time`` in the form its library returns."""

    def __init__(self, time_first: bool = False, wrap: str = "tensor") -> None:
        super().__init__()
        self.time_first, self.wrap, self.calls = time_first, wrap, []

    def forward(self, a, b, **labels):
        x, time = (b, a) if self.time_first else (a, b)
        self.calls.append({"x": x, "time": time, "labels": labels})
        out = x * 2 + time.view(-1, 1, 1, 1)
        return {"tensor": out, "object": SimpleNamespace(sample=out), "tuple": (out,)}[self.wrap]


X = torch.randn(3, 1, 4, 4)
T = torch.tensor([0.0, 0.25, 0.9])
Y = torch.tensor([1, 0, 2])


@pytest.mark.parametrize(
    ("convention", "time_first", "wrap", "keyword"),
    [("bfr", False, "tensor", "y"), ("torchcfm", True, "tensor", "y"), ("diffusers", False, "object", "class_labels"),
     ("diffusers", False, "tuple", "class_labels"), ("flow_matching", False, "tensor", "label")],
)
def test_each_convention_calls_the_network_its_way(convention, time_first, wrap, keyword):
    network = Recorder(time_first, wrap)
    model = ForeignNetwork(network, convention, time_direction="noise-to-data", time_scale=1.0)
    out = model(X, T, Y)
    call = network.calls[-1]
    assert call["x"] is X and torch.equal(call["time"], T)
    assert set(call["labels"]) == {keyword} and call["labels"][keyword] is Y
    torch.testing.assert_close(out, X * 2 + T.view(-1, 1, 1, 1))
    model(X, T)  # unconditional: no label keyword at all
    assert network.calls[-1]["labels"] == {}


def test_a_reversed_velocity_sees_one_minus_t_and_is_negated():
    network = Recorder()
    model = ForeignNetwork(network, "bfr", "velocity", time_direction="data-to-noise", time_scale=10.0)
    out = model(X, T)
    torch.testing.assert_close(network.calls[-1]["time"], 10.0 * (1 - T))
    torch.testing.assert_close(out, -(X * 2 + 10.0 * (1 - T).view(-1, 1, 1, 1)))


def test_a_reversed_eps_network_is_not_negated():
    network = Recorder()
    out = ForeignNetwork(network, "bfr", "eps", time_direction="data-to-noise")(X, T)
    torch.testing.assert_close(out, X * 2 + (1 - T).view(-1, 1, 1, 1))


def test_a_reversed_flow_integrates_to_the_same_samples():
    """A velocity field trained the other way (dx/ds, s = 1 - t) and the same field in our time agree."""
    ours = lambda x, t: -x * (1 + t.view(-1, 1, 1, 1))  # noqa: E731 - any field

    class Reversed(nn.Module):
        def forward(self, x, s):
            return -ours(x, 1 - s)

    model = ForeignNetwork(Reversed(), time_direction="data-to-noise")
    torch.testing.assert_close(model(X, T), ours(X, T))


def test_defaults_follow_the_convention():
    assert default_time("diffusers", "velocity") == ("data-to-noise", 1000.0)
    assert default_time("diffusers", "eps") == ("noise-to-data", 1.0)  # the DDPM's own time passes through
    for name in ("bfr", "torchcfm", "flow_matching"):
        assert default_time(name, "velocity") == ("noise-to-data", 1.0)
    model = ForeignNetwork(Recorder(), "diffusers", "velocity")
    assert (model.time_direction, model.time_scale) == ("data-to-noise", 1000.0)
    assert set(CONVENTIONS) == {"bfr", "torchcfm", "diffusers", "flow_matching"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"convention": "keras"}, "convention must be one of"), ({"time_direction": "up"}, "time_direction must be"),
     ({"time_scale": 0.0}, "time_scale must be a finite float > 0"), ({"output": "score"}, "output must be")],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ForeignNetwork(Recorder(), **kwargs)


def test_an_output_without_a_tensor_is_a_clear_error():
    class Words(nn.Module):
        def forward(self, x, t):
            return "velocity"

    with pytest.raises(TypeError, match="returned a str, not a tensor"):
        ForeignNetwork(Words())(X, T)
