"""DEFAR: the simulated state, the exposure bias, ADR and FC against explicit formulas, which forward passes run
and which carry gradients, the reduction to flow matching, and ADR's agreement with flow matching on an oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.data import InfiniteLoader
from bfr_fast.losses import (
    WEIGHT_SOURCES,
    DEFARLoss,
    FlowMatchingLoss,
    InputPerturbationLoss,
    ScheduledSamplingLoss,
    simulation_times,
)
from bfr_fast.ops.reference import frequency_filter_reference
from bfr_fast.paths import GVPInterpolant, LinearPath, VPInterpolant
from bfr_fast.engine.trainer import TrainConfig, Trainer

B = 4


def images(seed=0):
    return torch.randn(B, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def replay(x1, steps=1, strategy="random", t_max=1.0):
    """The random numbers of an independent-coupling draw without label dropout, in the loss's order."""
    eps = torch.randn_like(x1)
    t = t_max * torch.rand(x1.shape[0])
    return eps, simulation_times(t, steps, strategy, t_max)


def per_sample(t):
    return t.view(-1, 1, 1, 1)


def fc_weight(source, gamma, eps, normalize=True):
    """W = (1 + γ s / (mean s + ε)) / (1 + γ), s = |source| summed over channels; without the 1/(1 + γ) unless
    ``normalize``."""
    s = source.abs().sum(dim=1, keepdim=True)
    weight = 1 + gamma * s / (s.mean(dim=(1, 2, 3), keepdim=True) + eps)
    return weight / (1 + gamma) if normalize else weight


def fc_reference(pred, target, source, gamma, eps, normalize=True):
    """mean of W (pred - target)^2 with the weight map written out."""
    return (fc_weight(source, gamma, eps, normalize) * (pred - target) ** 2).mean()


def adr_reference(v, u, reduction="mean"):
    """The squared difference of the per-sample unit vectors: mean over batch and elements, or summed over a
    sample's elements and averaged over the batch."""
    v, u = v.flatten(1), u.flatten(1)
    squared = (v / v.norm(dim=1, keepdim=True) - u / u.norm(dim=1, keepdim=True)).pow(2)
    return squared.mean() if reduction == "mean" else squared.sum(1).mean()


def test_full_defar_follows_the_definitions(recording_model):
    x1, model = images(), recording_model()
    loss_fn = DEFARLoss(coupling="independent", gamma=0.7)
    torch.manual_seed(0)
    loss, logs = loss_fn(model, x1)
    torch.manual_seed(0)
    eps, (t_s, t_e) = replay(x1)
    assert (t_e >= t_s).all() and (t_e <= 1).all()

    start, simulated, true = model.calls
    x_s = (1 - per_sample(t_s)) * eps + per_sample(t_s) * x1
    x_e = (1 - per_sample(t_e)) * eps + per_sample(t_e) * x1
    x_hat = x_s + per_sample(t_e - t_s) * start.out.detach()
    torch.testing.assert_close(start.x, x_s)
    torch.testing.assert_close(start.t, t_s)
    torch.testing.assert_close(simulated.x, x_hat)
    torch.testing.assert_close(simulated.t, t_e)
    torch.testing.assert_close(true.x, x_e)
    torch.testing.assert_close(true.t, t_e)

    bias = simulated.out.detach() - true.out
    fc = fc_reference(start.out.detach(), x1 - eps, bias, 0.7, 1e-6)
    adr = adr_reference(simulated.out.detach(), x1 - x_hat)
    torch.testing.assert_close(logs["fc"], fc)
    torch.testing.assert_close(logs["adr"], adr)
    torch.testing.assert_close(logs["fm"], (start.out - (x1 - eps)).pow(2).mean())
    torch.testing.assert_close(logs["exposure_bias"], bias.pow(2).mean())
    torch.testing.assert_close(loss, fc + 10 * adr)


def test_gradients_flow_only_through_the_two_documented_passes(recording_model):
    x1, model = images(1), recording_model()
    torch.manual_seed(1)
    loss, _ = DEFARLoss(coupling="independent")(model, x1)
    loss.backward()
    start, simulated, true = model.calls
    assert start.grad_enabled and simulated.grad_enabled and not true.grad_enabled
    assert not true.out.requires_grad and not simulated.x.requires_grad

    # The gradient reaching call 1's output is the FC term's alone: nothing comes back through x̂ or the weight.
    torch.manual_seed(1)
    eps, _ = replay(x1)
    pred = start.out.detach().requires_grad_()
    bias = simulated.out.detach() - true.out
    fc_reference(pred, x1 - eps, bias, 1.0, 1e-6).backward()
    torch.testing.assert_close(start.out_grad, pred.grad)
    # And call 2's output gets the ADR term's gradient alone.
    v_hat = simulated.out.detach().requires_grad_()
    (10 * adr_reference(v_hat, x1 - simulated.x)).backward()
    torch.testing.assert_close(simulated.out_grad, v_hat.grad)

    # The parameters' gradient is that of the two terms with every other quantity a constant.
    reference = recording_model()
    fc = fc_reference(reference(start.x, start.t), x1 - eps, bias, 1.0, 1e-6)
    (fc + 10 * adr_reference(reference(simulated.x, simulated.t), x1 - simulated.x)).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, dict(reference.named_parameters())[name].grad, msg=name)


S, E, SIM = "start", "end", "simulation"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(), [(S, True), (E, True), (E, False)]),
        (dict(fc=False), [(S, True), (E, True)]),
        (dict(weight_source="image"), [(S, True), (E, True)]),
        (dict(adr=False), [(S, True), (E, False), (E, False)]),
        (dict(adr=False, weight_source="noise"), [(S, True)]),
        (dict(adr=False, fc=False), [(S, True)]),
        (dict(fc=False, beta_fc=0.0), [(S, False), (E, True)]),
        (dict(steps=3), [(S, True), (SIM, False), (SIM, False), (E, True), (E, False)]),
        (dict(steps=2, fc=False), [(S, True), (SIM, False), (E, True)]),
    ],
)
def test_forward_passes_and_their_gradients(recording_model, kwargs, expected):
    x1, model = images(2), recording_model()
    loss_fn = DEFARLoss(coupling="independent", **kwargs)
    torch.manual_seed(2)
    loss, _ = loss_fn(model, x1)
    loss.backward()
    assert [call.grad_enabled for call in model.calls] == [grad for _, grad in expected]
    assert loss_fn.forward_passes == (len(expected), sum(grad for _, grad in expected))
    # compute in forward-pass units: every call once, and a backward (two forwards' worth) per call with a graph
    assert loss_fn.forward_passes.compute == len(expected) + 2 * sum(grad for _, grad in expected)
    assert all((call.out_grad is not None) == call.grad_enabled for call in model.calls)
    torch.manual_seed(2)
    eps, times = replay(x1, loss_fn.steps)
    for k, (call, (kind, _)) in enumerate(zip(model.calls, expected, strict=True)):
        torch.testing.assert_close(call.t, {S: times[0], E: times[-1]}[kind] if kind != SIM else times[k])
    if len(expected) > 1:  # the simulation chains every step, the first from call 1's output
        x_hat = model.calls[0].x
        for k, call in enumerate(model.calls[: loss_fn.steps]):
            x_hat = x_hat + per_sample(times[k + 1] - times[k]) * call.out.detach()
        torch.testing.assert_close(model.calls[loss_fn.steps].x, x_hat)


@pytest.mark.parametrize("source", WEIGHT_SOURCES)
def test_each_weight_source_sets_the_fc_weight(recording_model, source):
    x1, model = images(3), recording_model()
    cutoff = 0.3 if source == "exposure_bias" else None
    loss_fn = DEFARLoss(adr=False, weight_source=source, image_cutoff=0.4, bias_lowpass_cutoff=cutoff,
                        coupling="independent", gamma=2.0)
    torch.manual_seed(3)
    _, logs = loss_fn(model, x1)
    torch.manual_seed(3)
    eps, _ = replay(x1)
    expected_source = {
        "exposure_bias": lambda: frequency_filter_reference(model.calls[1].out - model.calls[2].out, 0.3, "low"),
        "lowpass_image": lambda: frequency_filter_reference(x1, 0.4, "low"),
        "highpass_image": lambda: frequency_filter_reference(x1, 0.4, "high"),
        "image": lambda: x1,
        "noise": lambda: eps,
    }[source]()
    expected = fc_reference(model.calls[0].out.detach(), x1 - eps, expected_source, 2.0, 1e-6)
    torch.testing.assert_close(logs["fc"], expected)


def test_fc_until_keeps_the_weight_up_to_that_time_and_plain_flow_matching_past_it(recording_model):
    x1 = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    runs = {}
    for until in (None, 0.5, 0.0, 1.0):
        model = recording_model()
        torch.manual_seed(10)
        loss, logs = DEFARLoss(coupling="independent", gamma=1.5, fc_until=until)(model, x1)
        loss.backward()
        runs[until] = (logs, model)
    torch.manual_seed(10)
    eps, (t_s, _) = replay(x1)
    before = t_s <= 0.5
    assert 0 < before.sum() < 16  # the draw has samples on both sides of the switch
    logs, model = runs[0.5]
    start, simulated, true = model.calls
    error = (start.out.detach() - (x1 - eps)) ** 2
    weight = fc_weight(simulated.out.detach() - true.out, 1.5, 1e-6)
    expected = torch.where(before, (weight * error).mean(dim=(1, 2, 3)), error.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(logs["fc"], expected.mean())
    torch.testing.assert_close(logs["fm"], error.mean())
    # The gradient reaching call 1's output: weighted for the early samples, plain for the late ones.
    pred = start.out.detach().requires_grad_()
    plain = (pred - (x1 - eps)) ** 2
    torch.where(per_sample(before), weight * plain, plain).mean().backward()
    torch.testing.assert_close(start.out_grad, pred.grad)
    # Past every sample (t_s > 0 almost surely) it is flow matching; at 1 it is today's weight everywhere.
    torch.testing.assert_close(runs[0.0][0]["fc"], runs[0.0][0]["fm"])
    torch.testing.assert_close(runs[1.0][0]["fc"], runs[None][0]["fc"])
    assert not torch.allclose(runs[0.5][0]["fc"], runs[None][0]["fc"])
    assert runs[0.5][1].calls[0].grad_enabled and len(runs[0.5][1].calls) == 3  # δ is still needed: same calls
    settings = DEFARLoss(fc_until=0.57, bias_lowpass_cutoff=0.5).settings["fc"]
    assert settings == "normalised, gamma 1, exposure_bias low-passed at 0.5, until t_s 0.57"


def test_both_off_is_flow_matching(recording_model):
    x1, y = images(4), torch.tensor([0, 1, 2, 1])
    results = []
    for loss_fn in (DEFARLoss(adr=False, fc=False, label_dropout=0.5, null_class=3),
                    FlowMatchingLoss(label_dropout=0.5, null_class=3)):
        model = recording_model(num_classes=3)
        torch.manual_seed(4)
        loss, _ = loss_fn(model, x1, y)
        loss.backward()
        results.append((loss, [p.grad for p in model.parameters()], model.calls[0].y))
    (loss_a, grads_a, y_a), (loss_b, grads_b, y_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=0)
    assert torch.equal(y_a, y_b)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class PairOracle(nn.Module):
    """Knows the pair (ε, x1) of the next draw and returns its velocity target α'(t) x1 + σ'(t) ε (+ an offset)."""

    def __init__(self, path, eps, x1, offset=0.0):
        super().__init__()
        self.path, self.eps, self.x1, self.offset = path, eps, x1, offset
        self.v_hat = None

    def forward(self, x, t, y=None):
        v = self.path.velocity(self.eps, self.x1, t) + self.offset
        self.v_hat = v
        return v


def test_adr_vanishes_for_the_pair_oracle_on_the_linear_path():
    x1 = images(5).double()
    torch.manual_seed(5)
    eps = torch.randn_like(x1)
    torch.manual_seed(5)
    _, logs = DEFARLoss(coupling="independent")(PairOracle(LinearPath(), eps, x1), x1)
    # x̂ = x_{t_e}, so u = (1 - t_e)(x1 - ε) is parallel to the oracle's v̂ = x1 - ε: ADR agrees with FM.
    assert logs["adr"] < 1e-12 and logs["fm"] < 1e-12 and logs["exposure_bias"] < 1e-12

    torch.manual_seed(5)
    _, logs = DEFARLoss(coupling="independent", adr_normalize=False)(PairOracle(LinearPath(), eps, x1), x1)
    torch.manual_seed(5)
    _, (_, t_e) = replay(x1)
    raw = (per_sample(t_e) * (x1 - eps)).pow(2).mean()  # v̂ - u = (x1 - ε) - (1 - t_e)(x1 - ε)
    torch.testing.assert_close(logs["adr"], raw)

    torch.manual_seed(5)
    _, logs = DEFARLoss(coupling="independent")(PairOracle(LinearPath(), eps, x1, offset=0.5), x1)
    assert logs["adr"] > 1e-3


@pytest.mark.parametrize("path", [GVPInterpolant(), VPInterpolant()])
def test_adr_target_on_other_paths_is_the_direction_towards_the_data(recording_model, path):
    x1, model = images(6), recording_model()
    torch.manual_seed(6)
    _, logs = DEFARLoss(coupling="independent", interpolant=path, fc=False)(model, x1)
    start, simulated = model.calls
    assert (simulated.t <= path.t_max).all()
    expected = adr_reference(simulated.out.detach(), path.direction_towards(simulated.x, x1, simulated.t))
    torch.testing.assert_close(logs["adr"], expected)


def test_equal_timesteps_partition_the_rest_of_the_interval(recording_model):
    model = recording_model()
    DEFARLoss(steps=3, timesteps="equal_fixed")(model, images(7))
    t_s = model.calls[0].t
    for k in range(1, 4):
        torch.testing.assert_close(model.calls[k].t, t_s + k * (1 - t_s) / 4)

    model = recording_model()
    DEFARLoss(steps=3, timesteps="equal")(model, images(7))
    t_s = model.calls[0].t
    for k in range(1, 4):  # step k ends inside the k-th of 3 equal parts of [t_s, 1]
        assert (model.calls[k].t >= t_s + (k - 1) * (1 - t_s) / 3).all()
        assert (model.calls[k].t <= t_s + k * (1 - t_s) / 3).all()


def test_adr_mean_is_the_sum_over_the_elements_divided_by_their_number(recording_model):
    x1 = images(8)
    d = x1[0].numel()
    logs = {}
    for reduction in ("mean", "sum"):
        model = recording_model()
        torch.manual_seed(8)
        _, logs[reduction] = DEFARLoss(coupling="independent", fc=False, adr_reduction=reduction)(model, x1)
        start, simulated = model.calls
        expected = adr_reference(simulated.out.detach(), x1 - simulated.x, reduction)
        torch.testing.assert_close(logs[reduction]["adr"], expected)
    torch.testing.assert_close(logs["mean"]["adr"], logs["sum"]["adr"] / d, rtol=1e-6, atol=0)
    assert 0 < logs["mean"]["adr"] <= 4 / d

    # Raw ADR takes the same reductions: mean (v̂ - u)^2, or its per-sample sum.
    model = recording_model()
    torch.manual_seed(8)
    _, raw = DEFARLoss(coupling="independent", fc=False, adr_normalize=False, adr_reduction="sum")(model, x1)
    simulated = model.calls[1]
    torch.testing.assert_close(raw["adr"], (simulated.out.detach() - (x1 - simulated.x)).pow(2).sum() / B)


def test_the_normalised_fc_weight_has_mean_one_per_sample(recording_model):
    x1, gamma, eps = images(9), 1.5, 1e-9
    terms = {}
    for normalize in (True, False):
        model = recording_model()
        torch.manual_seed(9)
        _, logs = DEFARLoss(coupling="independent", adr=False, gamma=gamma, eps=eps, fc_normalize=normalize)(
            model, x1
        )
        terms[normalize] = logs["fc"]
    torch.manual_seed(9)
    noise, _ = replay(x1)
    start, simulated, true = model.calls
    bias = simulated.out - true.out
    weight = fc_weight(bias, gamma, eps)
    mean = weight.mean(dim=(1, 2, 3))
    s_bar = bias.abs().sum(dim=1).mean(dim=(1, 2))
    torch.testing.assert_close(mean, 1 - gamma * eps / ((1 + gamma) * (s_bar + eps)))  # the exact mean
    torch.testing.assert_close(mean, torch.ones(B), atol=1e-6, rtol=0)
    torch.testing.assert_close(terms[True], (weight * (start.out.detach() - (x1 - noise)) ** 2).mean())
    torch.testing.assert_close(terms[False], (1 + gamma) * terms[True])


def test_gradients_reach_the_simulation_only_with_grad_through_simulation(recording_model):
    x1 = images(10)
    for through in (False, True):
        model = recording_model()
        torch.manual_seed(10)
        loss_fn = DEFARLoss(coupling="independent", fc=False, steps=2, grad_through_simulation=through)
        loss, _ = loss_fn(model, x1)
        loss.backward()
        start, middle, end = model.calls
        assert middle.grad_enabled is through and (middle.out_grad is not None) is through
        assert loss_fn.forward_passes == (3, 3 if through else 2)
        # The explicit formula: x̂ = x_s + Δ₀ v(x_s) + Δ₁ v(x_mid), a function of θ when `through`;
        # u = x1 - sg[x̂].
        reference = recording_model()
        torch.manual_seed(10)
        noise, times = replay(x1, 2)
        v_start = reference(start.x, times[0])
        x_mid = start.x + per_sample(times[1] - times[0]) * (v_start if through else v_start.detach())
        v_mid = reference(x_mid, times[1])
        x_hat = x_mid + per_sample(times[2] - times[1]) * (v_mid if through else v_mid.detach())
        torch.testing.assert_close(end.x, x_hat.detach())
        adr = adr_reference(reference(x_hat, times[2]), x1 - x_hat.detach())
        total = (v_start - (x1 - noise)).pow(2).mean() + 10 * adr
        total.backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(p.grad, dict(reference.named_parameters())[name].grad, msg=name)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)
        self.label = nn.Embedding(4, 1)

    def forward(self, x, t, y=None):
        h = self.conv(torch.cat([x, t.view(-1, 1, 1, 1).expand_as(x)], dim=1))
        return h if y is None else h + self.label(y).view(-1, 1, 1, 1)


@pytest.mark.parametrize(
    "loss_fn",
    [
        InputPerturbationLoss(label_dropout=0.2, null_class=3),
        ScheduledSamplingLoss(4, label_dropout=0.2, null_class=3),
        DEFARLoss(label_dropout=0.2, null_class=3, bias_lowpass_cutoff=0.5),
        DEFARLoss(steps=2, timesteps="equal", interpolant=GVPInterpolant(), weight_source="highpass_image"),
    ],
    ids=["ip", "mdss", "defar", "defar-gvp-equal"],
)
def test_the_trainer_takes_every_loss_under_bf16_autocast(loss_fn):
    # bf16 computes the fp32 loss to bf16's precision, and trains alike.
    data = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def train(precision):
        torch.manual_seed(0)
        model = TinyNet()
        initial = torch.cat([p.detach().flatten() for p in model.parameters()])
        batches = InfiniteLoader(data, torch.arange(32) % 3, 8, torch.Generator().manual_seed(0))
        config = TrainConfig(steps=3, lr=1e-2, warmup_steps=0, precision=precision, log_every=1, checkpoint_every=10,
                             ema_decay=0.0)
        losses = []

        def recording(m, x, y):
            loss, logs = loss_fn(m, x, y)
            losses.append(loss.detach().float())
            return loss, logs

        Trainer(model, recording, batches, config).fit()
        return torch.stack(losses), torch.cat([p.detach().flatten() for p in model.parameters()]) - initial

    losses_bf16, moved_bf16 = train("bf16")
    losses_fp32, moved_fp32 = train("fp32")
    assert losses_bf16.dtype == torch.float32 and losses_bf16.isfinite().all()
    # The same draws, and weights that moved alike (Adam's steps are about lr * sign(gradient)).
    torch.testing.assert_close(losses_bf16, losses_fp32, rtol=0.03, atol=0)
    assert moved_bf16.norm() > 0.5 * moved_fp32.norm() > 1e-2  # gradients reached the model under bf16
    assert torch.nn.functional.cosine_similarity(moved_bf16, moved_fp32, dim=0) > 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lambda_adr=0.0), "lambda_adr must be > 0"),
        (dict(beta_fc=0.0), "beta_fc must be > 0 with fc=True"),
        (dict(adr=False, fc=False, beta_fc=0.0), "no loss term"),
        (dict(weight_source="edges"), "weight_source must be one of"),
        (dict(weight_source="image", bias_lowpass_cutoff=0.5), "bias_lowpass_cutoff applies"),
        (dict(bias_lowpass_cutoff=-1.0), "bias_lowpass_cutoff"),
        (dict(gamma=-1.0), "gamma"),
        (dict(eps=0.0), "eps must be > 0"),
        (dict(steps=0), "steps"),
        (dict(timesteps="linear"), "timesteps"),
        (dict(interpolant=LinearPath(0.2)), "noise-free"),
        (dict(label_dropout=0.1), "null_class"),
        (dict(adr_reduction="max"), "adr_reduction must be one of"),
        (dict(adr=False, grad_through_simulation=True), "grad_through_simulation needs adr"),
        (dict(fc_until=1.5), "fc_until must be a finite float in \\[0, 1\\]"),
        (dict(fc_until=-0.1), "fc_until"),
        (dict(fc_until=float("nan")), "fc_until"),
        (dict(fc=False, fc_until=0.5), "fc_until needs fc=True"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DEFARLoss(**kwargs)
