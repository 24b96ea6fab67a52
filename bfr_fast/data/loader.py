"""An endless, seeded, shuffled minibatch stream over an in-memory data set."""

from collections.abc import Iterator
from typing import Any

import torch

from bfr_fast.checks import positive_int

__all__ = ["InfiniteLoader"]


class InfiniteLoader(Iterator[tuple[torch.Tensor, torch.Tensor]]):
    """Yield ``(x, y)`` minibatches forever, reshuffling at every epoch.

    The tensors are moved to ``device`` once, at construction; each batch is then one index gather on the
    device. Epoch k draws a fresh permutation ``torch.randperm(N, generator=generator)`` and walks it in
    consecutive slices of ``batch_size``: every sample appears exactly once per epoch. With ``drop_last`` the
    final ``N mod batch_size`` samples of each permutation are skipped, so every batch has the same size (no
    recompilation, stable batch statistics); which samples are skipped changes with each epoch's permutation.

    The stream is a function of the generator's state alone: the same seed gives the same batches.
    :meth:`state_dict` / :meth:`load_state_dict` save and restore the position for an exact resume.

    Args:
        x: ``(N, ...)`` inputs, e.g. images.
        y: ``(N,)`` labels (or any ``(N, ...)`` tensor that travels with ``x``).
        batch_size: samples per batch, at most ``N`` when ``drop_last`` is set.
        generator: a CPU ``torch.Generator``, seeded by the caller; the loader draws only permutations from it.
        device: where the batches live; ``None`` keeps the tensors' device.
        drop_last: skip each epoch's final incomplete batch.

    Raises:
        ValueError: on mismatched lengths, an empty data set, a bad ``batch_size`` or a non-CPU generator.

    Example:
        >>> loader = InfiniteLoader(data.train_x, data.train_y, 128, torch.Generator().manual_seed(0), "cuda")
        >>> x, y = next(loader)
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator,
                 device: torch.device | str | None = None, drop_last: bool = True) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"y: expected {x.shape[0]} entries like x, got {y.shape[0]}")
        if x.shape[0] == 0:
            raise ValueError("x: expected at least one sample, got none")
        positive_int("batch_size", batch_size)
        if drop_last and batch_size > x.shape[0]:
            raise ValueError(f"batch_size: {batch_size} exceeds the {x.shape[0]} samples, so drop_last would "
                             "drop every batch; lower it or pass drop_last=False")
        if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
            raise ValueError(f"generator: expected a CPU torch.Generator, got {generator!r}")
        self.x = x.to(device) if device is not None else x
        self.y = y.to(self.x.device)
        self.batch_size = batch_size
        self.generator = generator
        self.drop_last = drop_last
        self.epoch = -1
        self._position = 0
        self._order = torch.empty(0, dtype=torch.int64, device=self.x.device)
        self._epoch_start_state = generator.get_state()

    @property
    def num_samples(self) -> int:
        """N, the number of samples."""
        return self.x.shape[0]

    @property
    def batches_per_epoch(self) -> int:
        """Batches in one pass over the data: ``N // batch_size``, rounded up without ``drop_last``."""
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _epoch_end(self) -> int:
        return self.batches_per_epoch * self.batch_size if self.drop_last else self.num_samples

    def _shuffle(self) -> None:
        self._epoch_start_state = self.generator.get_state()
        self._order = torch.randperm(self.num_samples, generator=self.generator).to(self.x.device)
        self._position = 0
        self.epoch += 1

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.epoch < 0 or self._position >= self._epoch_end():
            self._shuffle()
        index = self._order[self._position:self._position + self.batch_size]
        self._position += len(index)
        return self.x[index], self.y[index]

    def state_dict(self) -> dict[str, Any]:
        """The position in the stream: epoch, offset into the epoch, and the generator state the epoch began at."""
        return {"epoch": self.epoch, "position": self._position, "epoch_start_state": self._epoch_start_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the stream where :meth:`state_dict` was taken (the data and ``batch_size`` must match).

        The epoch's permutation is redrawn from its saved generator state, which also leaves the generator
        exactly where it was when the state was saved.
        """
        self.generator.set_state(state["epoch_start_state"])
        self.epoch = state["epoch"]
        if self.epoch >= 0:
            self.epoch -= 1  # _shuffle counts the redrawn epoch again
            self._shuffle()
        self._position = state["position"]
