"""A user's weights, from checkpoints as training libraries write them, into the network they were trained for.

What loads (always with ``weights_only=True``: no code from the file runs):

- a bare ``state_dict``;
- a training checkpoint that nests it: torchcfm's ``{"net_model", "ema_model", "sched", "optim", "step"}``, or
  ``{"model": ...}``, ``{"state_dict": ...}``, ``{"ema": ...}`` ...: the one entry that is a state dict (or a
  diffusers ``EMAModel`` state) is taken; with several (a model and its EMA), ``key`` must choose;
- a diffusers ``EMAModel.state_dict()`` (``shadow_params``, one tensor per parameter in ``parameters()`` order);
- keys prefixed by ``DataParallel``/``DistributedDataParallel`` (``module.``) or ``torch.compile``
  (``_orig_mod.``), which are stripped.

A ``save_pretrained`` folder is not a checkpoint file: the network's class loads it itself
(:func:`~bfr_fast.pipelines.generators.build_factory_network`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bfr_fast.checkpoint import load

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes of DataParallel / DistributedDataParallel and of torch.compile's wrapper, stripped on load."""

USER_FILE_ADVICE = ("save the network's weights with torch.save(model.state_dict(), path) (a pickled module or "
                    "a file of another format does not load safely), or check that the file is whole")
"""What :func:`~bfr_fast.checkpoint.load` tells a user whose own checkpoint does not load."""


def is_state_dict(value: object) -> bool:
    """A non-empty mapping of string keys to tensors: what ``nn.Module.state_dict()`` returns."""
    return (isinstance(value, Mapping) and len(value) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()))


def is_ema_state(value: object) -> bool:
    """A diffusers ``EMAModel.state_dict()``: a mapping whose ``shadow_params`` is a list of tensors."""
    shadow = value.get("shadow_params") if isinstance(value, Mapping) else None
    return isinstance(shadow, (list, tuple)) and len(shadow) > 0 and all(isinstance(p, torch.Tensor) for p in shadow)


def _weights_kind(value: object) -> bool:
    return is_state_dict(value) or is_ema_state(value)


def select_weights(payload: object, key: str | None, path: Path) -> Any:
    """The weights in a loaded checkpoint: the payload itself, or the one entry (``key``'s) holding weights.

    Args:
        payload: What :func:`~bfr_fast.checkpoint.load` returned.
        key: The entry to take (``--checkpoint-key``), or None to find it.
        path: The checkpoint, for messages.

    Returns:
        A state dict, or a diffusers ``EMAModel`` state.

    Raises:
        ValueError: No weights in the file, a missing ``key``, or several candidate entries without ``key`` (the
            message lists them).
    """
    if key is not None:
        if not isinstance(payload, Mapping) or key not in payload:
            have = sorted(map(str, payload)) if isinstance(payload, Mapping) else []
            raise ValueError(f"--checkpoint-key: {path} has no entry {key!r}; its entries: {have}")
        if not _weights_kind(payload[key]):
            raise ValueError(f"--checkpoint-key: {path}[{key!r}] is a {type(payload[key]).__name__}, not a state "
                             "dict; choose the entry that holds the network's weights")
        return payload[key]
    if _weights_kind(payload):
        return payload
    if not isinstance(payload, Mapping):
        raise ValueError(f"--checkpoint: {path} holds a {type(payload).__name__}, not a state dict; "
                         f"{USER_FILE_ADVICE}")
    candidates = sorted(str(k) for k, v in payload.items() if _weights_kind(v))
    if not candidates:
        raise ValueError(f"--checkpoint: {path} holds no state dict (entries {sorted(map(str, payload))}); "
                         f"{USER_FILE_ADVICE}")
    if len(candidates) > 1:
        raise ValueError(f"--checkpoint: {path} holds several networks' weights ({', '.join(candidates)}); "
                         f"choose one with --checkpoint-key (e.g. --checkpoint-key {_preferred(candidates)})")
    return payload[candidates[0]]


def _preferred(candidates: list[str]) -> str:
    """The EMA entry when there is one: the weights a trained generator is sampled with."""
    return next((c for c in candidates if "ema" in c.lower()), candidates[0])


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the :data:`WRAPPER_PREFIXES` removed from keys that all carry them (repeatedly: a compiled
    DataParallel module has both)."""
    out = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if out and all(k.startswith(prefix) for k in out):
                out = {k.removeprefix(prefix): v for k, v in out.items()}
                changed = True
    return out


def key_mismatch(network: nn.Module, state: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(missing, unexpected)``: the sorted keys of ``network``'s state dict absent from ``state``, and the keys of
    ``state`` the network does not have."""
    expected = set(network.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def load_weights(network: nn.Module, path: Path, key: str | None, source: str) -> None:
    """Loads the weights in the checkpoint file ``path`` into ``network``.

    Args:
        network: The freshly built network.
        path: The checkpoint file.
        key: ``--checkpoint-key``, or None (:func:`select_weights`).
        source: The generator, for messages.

    Raises:
        ValueError: A file that does not load, holds no (or several) weights, or whose weights do not fit the
            network (the first missing and unexpected keys, or the first mismatched shape, named).
    """
    weights = select_weights(load(path, advice=USER_FILE_ADVICE), key, path)
    if is_ema_state(weights):
        _load_ema(network, weights["shadow_params"], path, source)
        return
    state = strip_wrapper_prefixes(weights)
    missing, unexpected = key_mismatch(network, state)
    if missing or unexpected:
        raise ValueError(f"--checkpoint: {path} does not fit {source}: {len(missing)} missing keys {missing[:3]}, "
                         f"{len(unexpected)} unexpected {unexpected[:3]}; check --generator and its arguments "
                         "(--generator-kwargs) against the training script")
    try:
        network.load_state_dict(state)
    except RuntimeError as error:  # same keys, other shapes
        first = str(error).strip().splitlines()[-1].strip()
        raise ValueError(f"--checkpoint: {path} does not fit {source}: {first}") from None


def _load_ema(network: nn.Module, shadow: list[torch.Tensor], path: Path, source: str) -> None:
    params = list(network.parameters())
    if len(shadow) != len(params):
        raise ValueError(f"--checkpoint: {path} is an EMA state of {len(shadow)} parameters; {source} has "
                         f"{len(params)}")
    for i, (param, value) in enumerate(zip(params, shadow, strict=True)):
        if param.shape != value.shape:
            raise ValueError(f"--checkpoint: {path}'s EMA parameter {i} has shape {tuple(value.shape)}; {source} "
                             f"expects {tuple(param.shape)}")
    with torch.no_grad():
        for param, value in zip(params, shadow, strict=True):
            param.copy_(value)
