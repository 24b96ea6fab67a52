"""Checkpoints as training libraries write them: nested, several networks, DataParallel and compile prefixes,
diffusers EMA states; and one-line errors that tell the user what to do with their own file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.pipelines.weights import load_weights, select_weights, strip_wrapper_prefixes


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 4))


def _state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: torch.randn_like(v) for k, v in _net().state_dict().items()}


def _loaded(path, key=None) -> dict[str, torch.Tensor]:
    net = _net()
    load_weights(net, path, key, "net()")
    return net.state_dict()


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "wrap",
    [lambda s: s, lambda s: {"state_dict": s}, lambda s: {"model": s, "optimizer": {"state": {}, "param_groups": []},
                                                          "epoch": 3},
     lambda s: {"net": {f"module.{k}": v for k, v in s.items()}, "step": 7},
     lambda s: {f"_orig_mod.module.{k}": v for k, v in s.items()}],
    ids=["bare", "state_dict", "model+optimizer", "dataparallel", "compiled-dataparallel"],
)
def test_the_one_set_of_weights_is_found(tmp_path, wrap):
    weights = _state(1)
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(weights), path)
    assert _same(_loaded(path), weights)


def test_torchcfm_checkpoints_name_their_networks_and_the_key_chooses(tmp_path):
    """torchcfm's {"net_model", "ema_model", "sched", "optim", "step"}, from DataParallel."""
    net, ema = _state(1), _state(2)
    optim = torch.optim.Adam(_net().parameters())
    payload = {"net_model": {f"module.{k}": v for k, v in net.items()},
               "ema_model": {f"module.{k}": v for k, v in ema.items()},
               "sched": {"last_epoch": 3}, "optim": optim.state_dict(), "step": 3}
    path = tmp_path / "cfm.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError) as caught:
        _loaded(path)
    message = str(caught.value)
    assert "ema_model, net_model" in message and "--checkpoint-key ema_model" in message and "\n" not in message
    assert _same(_loaded(path, "ema_model"), ema)
    assert _same(_loaded(path, "net_model"), net)
    with pytest.raises(ValueError, match=r"--checkpoint-key: .* has no entry 'ema'; its entries: \['ema_model'"):
        _loaded(path, "ema")
    with pytest.raises(ValueError, match=r"\['sched'\] is a dict, not a state dict"):
        _loaded(path, "sched")


def test_a_diffusers_ema_state_loads_parameters_in_order(tmp_path):
    net = _net()
    shadow = [torch.randn_like(p) for p in net.parameters()]
    path = tmp_path / "ema.pt"
    torch.save({"decay": 0.999, "optimization_step": 10, "shadow_params": shadow}, path)
    loaded = _net()
    load_weights(loaded, path, None, "net()")
    assert all(torch.equal(p, s) for p, s in zip(loaded.parameters(), shadow, strict=True))
    torch.save({"shadow_params": shadow[:-1]}, path)
    with pytest.raises(ValueError, match="EMA state of 3 parameters; net\\(\\) has 4"):
        load_weights(_net(), path, None, "net()")


def test_prefixes_are_stripped_only_when_every_key_has_them():
    assert strip_wrapper_prefixes({"module.a": torch.ones(1), "b": torch.ones(1)}).keys() == {"module.a", "b"}
    assert strip_wrapper_prefixes({"module._orig_mod.a": torch.ones(1)}).keys() == {"a"}


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"hello, I am a text file\n", "not a readable checkpoint"),
     (b"", "not a readable checkpoint")],
    ids=["text", "empty"],
)
def test_a_file_that_is_no_checkpoint_is_one_line_with_advice_for_a_users_file(tmp_path, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError) as caught:
        _loaded(path)
    text = str(caught.value)
    assert message in text and str(path) in text and "\n" not in text
    assert "torch.save(model.state_dict(), path)" in text and "delete it" not in text  # it is the user's own file


def test_a_pickled_module_is_refused_with_what_to_save_instead(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(_net(), path)
    with pytest.raises(ValueError, match=r"holds more than tensors.*torch.save\(model.state_dict\(\), path\)"):
        _loaded(path)


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.ones(2)}, path)
    with pytest.raises(ValueError, match=r"does not fit net\(\): 4 missing keys .* 1 unexpected \['encoder.weight'\]"):
        _loaded(path)
    torch.save({"payload": [1, 2]}, path)
    with pytest.raises(ValueError, match="holds no state dict"):
        _loaded(path)


def test_select_weights_returns_the_payload_itself_when_it_is_the_state():
    state = _state(3)
    assert select_weights(state, None, "p") is state
