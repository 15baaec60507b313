"""The safety stage, last node of every patch: nothing harmful reaches the PA.

NaN/Inf scrub → DC blocker (one pole at 5 Hz) → peak limiter with instant
attack (so no sample exceeds the ceiling) → hard clip at the ceiling as a
last guard. Panic (CC 120/123 or a PANIC event) resets every node, which cuts
notes and tails; this stage's own state is cleared too.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from cadenza.engine.node import Node, Option

DC_CUTOFF_HZ = 5.0
RELEASE_S = 0.15


@njit(nogil=True, cache=True)
def safety_kernel(x, y, state, ceiling, dc_pole, release):
    """x, y: (channels, frames) float32. state: [dc_x1, dc_y1] per channel, then the
    limiter envelope, then the running output peak (linear).

    Returns the number of non-finite samples scrubbed.
    """
    channels, frames = x.shape
    env = state[2 * channels]
    out_peak = state[2 * channels + 1]
    bad = 0
    for i in range(frames):
        peak = 0.0
        for c in range(channels):
            v = x[c, i]
            if not math.isfinite(v):
                v = 0.0
                bad += 1
            x1 = state[2 * c]
            y1 = state[2 * c + 1]
            d = v - x1 + dc_pole * y1
            state[2 * c] = v
            state[2 * c + 1] = d
            y[c, i] = d
            a = abs(d)
            if a > peak:
                peak = a
        env = peak if peak > env else env * release
        gain = ceiling / env if env > ceiling else 1.0
        for c in range(channels):
            v = min(max(y[c, i] * gain, -ceiling), ceiling)
            y[c, i] = v
            if abs(v) > out_peak:
                out_peak = abs(v)
    state[2 * channels] = env
    state[2 * channels + 1] = out_peak
    return bad


class Safety(Node):
    """Scrub, DC-block and limit the patch's output. Added to every patch automatically."""

    OPTIONS = {"ceiling_db": Option(float, default=-1.0, lo=-24.0, hi=-0.1, doc="limiter ceiling, dBFS")}

    def __init__(self, node_id: str = "safety", **options):
        super().__init__(node_id, **options)
        self.inputs = {"in": 2}
        self.outputs = {"out": 2}
        self.ceiling = 10.0 ** (self.options["ceiling_db"] / 20.0)
        self.state = np.zeros(6, np.float64)
        self.scrubbed = 0

    def prepare(self, ctx) -> None:
        self.dc_pole = 1.0 - 2.0 * math.pi * DC_CUTOFF_HZ / ctx.sample_rate
        self.release = math.exp(-1.0 / (RELEASE_S * ctx.sample_rate))

    def process(self, io) -> None:
        out = io.outputs["out"]
        self.scrubbed += safety_kernel(io.inputs["in"], out, self.state, self.ceiling,
                                       self.dc_pole, self.release)

    def take_peak(self) -> float:
        """Peak output since the last call (linear), for the status line."""
        peak = float(self.state[-1])
        self.state[-1] = 0.0
        return peak

    def peek_peak(self) -> float:
        """Peak output since the status line last took it (linear; at most 0.5 s while playing),
        read without resetting it: the browser panel's meter."""
        return float(self.state[-1])

    def reset(self) -> None:
        self.state[:-1] = 0.0
