"""The pitch listener's learned head: a small causal GRU over YIN's difference functions.

Per 2 ms hop it reads :data:`~cadenza.engine.dsp.pitch_kernels.N_INPUTS` numbers the
tracker's kernel computes (:func:`cadenza.engine.dsp.pitch_kernels._head_features`):
the CMNDF of the short (6 ms) and of the long (24 ms) window, each on 98 log-frequency
bins (55-1585 Hz, 60 cents apart), and both windows' levels. It gives a voicing logit
and logits over the same bins; the kernel takes the peak and snaps it to YIN's precise
dip (:func:`~cadenza.engine.dsp.pitch_kernels._head_pick`).

Network: Linear(198 → 64) + LeakyReLU(0.1) → GRU(64) → Linear(64 → 1 + 98): about 31k
multiply-adds per hop. The live path is the numba port
:func:`cadenza.engine.dsp.pitch_kernels.head_step`, tested to agree with :class:`PitchHead`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cadenza.engine.dsp.pitch_kernels import N_BINS, N_INPUTS
from cadenza.engine.errors import ModelError
from cadenza.models.weights import load_weights, reading

WEIGHTS = Path(__file__).resolve().parent / "head.pt"
HIDDEN = 64


class PitchHead(nn.Module):
    """(B, T, N_INPUTS) → logits (B, T, 1 + N_BINS): voicing, then the pitch bins; and the GRU state."""

    def __init__(self, hidden: int = HIDDEN):
        super().__init__()
        self.inp = nn.Linear(N_INPUTS, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1 + N_BINS)

    def forward(self, x, state=None):
        proj = nn.functional.leaky_relu(self.inp(x), 0.1)
        h, state = self.gru(proj, state)
        return self.out(h), state


def load(path: Path = WEIGHTS) -> PitchHead:
    """The weights at ``path`` (sha256-checked, weights_only) in a PitchHead, eval mode."""
    if not Path(path).is_file():
        raise ModelError(f"{path}: pitch-head weights not found (train them: python -m cadenza.models.pitch.train, "
                         "or use YIN's rules: the pitch node with learned = false, cadenza pitch --rules, "
                         "PitchTracker without head=)")
    state = load_weights(path)
    with reading(path, "pitch-head weights"):
        hidden = state["gru.weight_hh_l0"].shape[1]
        net = PitchHead(hidden)
        net.load_state_dict(state)
    return net.eval()


def to_numba(net: PitchHead) -> tuple:
    """The net's weights as contiguous float32 arrays, in :func:`head_step`'s order."""
    def a(t):
        return np.ascontiguousarray(t.detach().cpu().numpy(), np.float32)

    g = net.gru
    return (a(net.inp.weight), a(net.inp.bias), a(g.weight_ih_l0), a(g.bias_ih_l0), a(g.weight_hh_l0),
            a(g.bias_hh_l0), a(net.out.weight), a(net.out.bias))


@lru_cache(maxsize=1)
def numba_weights() -> tuple:
    """The shipped weights for the live kernel, loaded once per process."""
    weights = to_numba(load())
    return weights
