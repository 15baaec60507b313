"""Shared real-time building blocks: numba kernels used by nodes and by model training."""
