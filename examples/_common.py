"""What the three example scripts share: the digits, an argument parser, and running the refine command."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from bfr_fast.data import InfiniteLoader, load_dataset


def parser(description: str, steps: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, required=True, help="folder for the checkpoint and the refine run")
    p.add_argument("--steps", type=int, default=steps, help=f"training steps (default {steps})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-only", action="store_true", help="train and save, print the refine command, stop")
    return p


def digits_batches(batch_size: int, seed: int) -> tuple[InfiniteLoader, int]:
    """Minibatches of scikit-learn's digits (images in [-1, 1], (B, 1, 8, 8), labels 0-9) and the class count."""
    data = load_dataset("digits")
    return InfiniteLoader(data.train_x, data.train_y, batch_size, torch.Generator().manual_seed(seed)), 10


def refine(flags: list[str], out: Path, train_only: bool) -> int:
    """Prints ``python -m bfr_fast.refine FLAGS --data digits --out OUT/refine`` and runs it (unless train_only)."""
    command = [sys.executable, "-m", "bfr_fast.refine", *flags, "--data", "digits", "--out", str(out / "refine")]
    print("refine:", shlex.join(["python", *command[1:]]), flush=True)
    return 0 if train_only else subprocess.call(command)
