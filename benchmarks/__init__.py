"""Benchmarks of the fused ops against their eager references and torch.compile (``python -m benchmarks.run``)."""
