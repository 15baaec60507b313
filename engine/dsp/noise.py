"""White noise from a generator state each node owns, so a render repeats whatever else plays.

A 32-bit linear congruential generator (Numerical Recipes' constants): its
whole state is one integer in a node's own array, so two nodes never share a
stream and a node's output depends only on its seed, never on node order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MODULUS = 4294967296  # 2**32


def noise_state(seed: int) -> np.ndarray:
    """A generator state for :func:`white_noise` / :func:`next_noise` (int64 array of one)."""
    return np.array([seed % MODULUS], np.int64)


@njit(nogil=True, cache=True)
def next_noise(state):
    """The next uniform sample in [-1, 1), advancing ``state[0]``."""
    s = (state[0] * 1664525 + 1013904223) & 0xFFFFFFFF
    state[0] = s
    return s * (2.0 / 4294967296.0) - 1.0


@njit(nogil=True, cache=True)
def white_noise(out, state):
    """Fill ``out`` with uniform white noise in [-1, 1) from ``state``."""
    for i in range(out.shape[0]):
        out[i] = next_noise(state)
