"""Per-coordinate standardisation of flattened conformers, the coordinates the molecule flows are trained on."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Standardizer:
    """Per-coordinate standardisation of flattened conformers: ``encode(x) = (x.flatten(1) - mean) / std``.

    Attributes:
        mean: ``(D,)`` training mean of each coordinate, nm.
        std: ``(D,)`` training standard deviation of each coordinate, nm (positive).
        atoms: Atoms per conformer (``D = 3 * atoms``).
    """

    mean: torch.Tensor
    std: torch.Tensor
    atoms: int

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardizer:
        """The standardizer of ``(N, atoms, 3)`` conformers ``x``.

        Raises:
            ValueError: ``x`` is not ``(N, atoms, 3)`` with N >= 2, or a coordinate does not vary.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != 3 or x.shape[0] < 2:
            raise ValueError(f"x: expected (N >= 2, atoms, 3) conformers, got {tuple(getattr(x, 'shape', ()))}")
        flat = x.flatten(1).double()
        std = flat.std(dim=0)
        if not bool((std > 0).all()):
            raise ValueError("x: some coordinate is constant over the frames; it cannot be standardised")
        return cls(flat.mean(dim=0).float(), std.float(), x.shape[1])

    @property
    def dim(self) -> int:
        """Features per conformer, ``3 * atoms``."""
        return 3 * self.atoms

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, atoms, 3)`` conformers in nm to ``(N, 3 * atoms)`` standardised vectors."""
        return (x.flatten(1) - self.mean.to(x.device)) / self.std.to(x.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, 3 * atoms)`` standardised vectors back to ``(N, atoms, 3)`` conformers in nm."""
        return (z * self.std.to(z.device) + self.mean.to(z.device)).reshape(-1, self.atoms, 3)
