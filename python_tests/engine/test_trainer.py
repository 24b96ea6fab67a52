"""Trainer: exact resume, EMA, clipping after unscaling, Ctrl-C checkpoints, config errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.checkpoint import load
from bfr_fast.data import InfiniteLoader
from bfr_fast.engine.trainer import TrainConfig, Trainer


def regression_setup(seed: int = 0, batch_size: int = 8):
    torch.manual_seed(seed)
    x = torch.randn(64, 4)
    y = torch.zeros(64, dtype=torch.long)
    target = x @ torch.randn(4, 1)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def loss_fn(m, xb, yb):
        # Noise from the global RNG makes the resume test also check that RNG state is restored.
        noisy = xb + 0.01 * torch.randn_like(xb)
        pred = m(noisy)
        ref = xb @ torch.linalg.lstsq(x, target).solution
        loss = (pred - ref).pow(2).mean()
        return loss, {"mse": loss.detach()}

    batches = InfiniteLoader(x, y, batch_size, torch.Generator().manual_seed(seed))
    return model, loss_fn, batches


def make_trainer(tmp_path, steps, **overrides):
    model, loss_fn, batches = regression_setup()
    settings = dict(steps=steps, lr=1e-2, warmup_steps=3, ema_decay=0.9, checkpoint_every=5, log_every=5)
    config = TrainConfig(**{**settings, **overrides})
    return Trainer(model, loss_fn, batches, config, checkpoint_path=tmp_path / "ckpt.pt")


def test_training_reduces_the_loss(tmp_path):
    trainer = make_trainer(tmp_path, steps=200)
    first = trainer.loss_fn(trainer.model, *next(regression_setup()[2]))[0].item()
    last = trainer.fit()["loss"]
    assert last < 0.1 * first


def test_resume_is_exact(tmp_path):
    straight = make_trainer(tmp_path / "a", steps=20)
    straight.fit()

    first = make_trainer(tmp_path / "b", steps=10)
    first.fit()
    resumed = make_trainer(tmp_path / "b", steps=20)
    assert resumed.resume() and resumed.step == 10
    resumed.fit()

    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(straight.ema_model.parameters(), resumed.ema_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_ema_follows_the_recursion_written_out(tmp_path):
    # e_1 = w_1 (the first update copies), then e_k = d e_(k-1) + (1 - d) w_k, with w_k the weights after step k.
    decay, steps = 0.9, 12
    trainer = make_trainer(tmp_path, steps=steps, ema_decay=decay)
    inner = trainer.loss_fn
    weights = []  # w_0, ..., w_(steps-1): the weights each step starts from

    def recording(m, x, y):
        weights.append([p.detach().clone() for p in trainer.model.parameters()])
        return inner(m, x, y)

    trainer.loss_fn = recording
    trainer.fit()
    weights = weights[1:] + [[p.detach().clone() for p in trainer.model.parameters()]]  # w_1, ..., w_steps
    assert len(weights) == steps
    ema = weights[0]
    for w in weights[1:]:
        ema = [decay * e + (1 - decay) * p for e, p in zip(ema, w, strict=True)]
    for expected, got in zip(ema, trainer.ema_model.parameters(), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    moved = max((e - w).abs().max().item() for e, w in zip(ema, weights[-1], strict=True))
    assert moved > 1e-3  # the average lags the weights clearly: a no-op EMA, or a copy of the model, is seen


@pytest.mark.parametrize("warmup", [4, 1, 0])
def test_the_learning_rate_warms_up_linearly_then_holds(tmp_path, warmup):
    """Update s (from 0) runs at lr (s + 1) / W while s < W, then at lr; W = 0 (and W = 1) starts at lr."""
    lr, steps = 1e-2, 9
    trainer = make_trainer(tmp_path, steps=steps, lr=lr, warmup_steps=warmup)
    used = []  # the rate each update reads, as the optimizer is about to apply it
    trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    trainer.fit()
    expected = [lr * (s + 1) / warmup if s < warmup else lr for s in range(steps)]
    assert used == pytest.approx(expected, rel=1e-12, abs=0)


def test_ema_decay_zero_is_the_model(tmp_path):
    trainer = make_trainer(tmp_path, steps=3, ema_decay=0.0)
    trainer.fit()
    assert trainer.ema_model is trainer.model


def test_checkpoint_is_loadable_weights_only_and_no_temp_files_remain(tmp_path):
    trainer = make_trainer(tmp_path, steps=7)
    trainer.fit()
    state = load(tmp_path / "ckpt.pt")
    assert state["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_keyboard_interrupt_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    trainer = make_trainer(tmp_path / "b", steps=20)
    inner = trainer.loss_fn
    calls = {"n": 0}

    def interrupting(m, x, y):  # Ctrl-C in step 13, after its batch was drawn and its noise partly
        calls["n"] += 1
        if calls["n"] == 13:
            torch.randn(3)
            raise KeyboardInterrupt
        return inner(m, x, y)

    trainer.loss_fn = interrupting
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load(tmp_path / "b" / "ckpt.pt")["step"] == 12
    resumed = make_trainer(tmp_path / "b", steps=20)
    assert resumed.resume() and resumed.step == 12
    resumed.fit()
    straight = make_trainer(tmp_path / "a", steps=20)
    straight.fit()
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)  # step 13 redone with its own batch and draws


def _failing_at(trainer: Trainer, step: int, failure) -> None:
    """Makes ``failure(model, loss)`` turn the loss of call ``step`` of ``trainer.loss_fn`` bad."""
    inner = trainer.loss_fn
    calls = {"n": 0}

    def failing(m, x, y):
        calls["n"] += 1
        loss, logs = inner(m, x, y)
        return (failure(m, loss) if calls["n"] == step else loss), logs

    trainer.loss_fn = failing


@pytest.mark.parametrize("failure", [
    lambda m, loss: loss * float("inf"),  # a non-finite loss
    lambda m, loss: loss * 1e38,  # a finite loss whose gradient norm overflows (clipping would zero it)
], ids=["loss", "grad-norm"])
def test_divergence_stops_naming_the_step_and_keeps_the_finite_checkpoint(tmp_path, failure):
    trainer = make_trainer(tmp_path, steps=20, log_every=100)  # the checkpoint at step 10 is the first check
    _failing_at(trainer, 7, failure)
    with pytest.raises(FloatingPointError, match="diverged at step 7"):
        trainer.fit()
    state = load(tmp_path / "ckpt.pt")
    assert state["step"] == 5 and all(v.isfinite().all() for v in state["model"].values())


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    trainer = make_trainer(tmp_path, steps=5)
    trainer.fit()
    with torch.no_grad():
        trainer.model[0].weight[0, 0] = float("nan")  # whatever the cause, with finite losses so far
    trainer.step = 6
    with pytest.raises(FloatingPointError, match="model weights are not finite at step 6"):
        trainer.save_checkpoint()
    assert load(tmp_path / "ckpt.pt")["step"] == 5


def test_resume_from_another_networks_checkpoint_names_the_file(tmp_path):
    make_trainer(tmp_path, steps=5).fit()
    model, loss_fn, batches = regression_setup()
    wider = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))  # another architecture, same file
    trainer = Trainer(wider, loss_fn, batches, TrainConfig(steps=5), checkpoint_path=tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=f"{tmp_path / 'ckpt.pt'} does not fit this network .*delete it"):
        trainer.resume()


def test_clipping_sees_unscaled_gradients(tmp_path):
    # With fp16 gradient scaling the raw gradients are multiplied by 2**16; the logged norm must be the true one.
    fp32 = make_trainer(tmp_path / "a", steps=1, grad_clip=1e6)
    fp16 = make_trainer(tmp_path / "b", steps=1, grad_clip=1e6, precision="fp16")
    fp16.scaler = torch.amp.GradScaler("cpu", init_scale=256.0)  # the default 2**16 overflows this toy loss
    norm32 = fp32._train_step(*next(fp32.batches))["grad_norm"]
    norm16 = fp16._train_step(*next(fp16.batches))["grad_norm"]
    assert fp16.scaler.is_enabled() and fp16.scaler.get_scale() > 1
    torch.testing.assert_close(norm16, norm32, rtol=0.05, atol=1e-3)


def test_clipping_bounds_the_gradient_norm(tmp_path):
    trainer = make_trainer(tmp_path, steps=1, grad_clip=1e-3)
    logs = trainer._train_step(*next(trainer.batches))
    assert logs["grad_norm"] > 1e-2  # the raw norm, before clipping
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()]))
    assert clipped <= 1e-3 * (1 + 1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(steps=0), "steps must be a positive integer"),
        (dict(steps=-3), "steps must be a positive integer"),
        (dict(lr=0.0), "lr must be a positive number"),
        (dict(ema_decay=1.0), r"ema_decay must be in \[0, 1\)"),
        (dict(precision="fp8"), "precision must be one of"),
        (dict(warmup_steps=-1), "warmup_steps must be >= 0"),
    ],
)
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
