"""The neural vocoder: causal log-mel + f0 → parameters of the DDSP harmonic-plus-noise synth.

A light DDSP vocoder in the spirit of SawSing and the 15-MFLOP DDSP vocoder:
the network does not make audio, it drives the synth of
``engine/dsp/ddsp.py`` (torch twins in ``models/ddsp_torch.py``).

Per frame (every 2.67 ms) it predicts

- ``amp``: the harmonic part's overall amplitude (linear);
- ``env``: a log spectral envelope sampled at the 80 mel-band centres — the
  voice's formants, independent of pitch. Harmonic k of a line at f0 gets
  weight ``exp(env(k · f0))`` (linear interpolation on the mel axis), so the
  same envelope serves the original line and any harmony line: formants are
  kept when the pitch moves. The net predicts a correction to the input
  log-mel itself, which is already a rough envelope;
- ``noise``: ``N_NOISE`` filtered-noise band magnitudes (breath, consonants).

Network: Linear(80 mel + 2 pitch → 384) → GRU(384) → Linear(384 + 384 → 1 + 80 + 65):
1.03M multiply-adds per frame. :func:`gru_step` is its numba port for the live
node (tested to agree with torch).

Output is the input delayed by ``DELAY_HOPS`` frames: the frame ending at
sample t drives the synth for the audio around t − ``DELAY_HOPS`` hops, which
lets the 21 ms mel window and the pitch tracker's 5 ms delay see the sound
they describe.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit
from torch import nn

from cadenza.engine.dsp.nn import exp_sigmoid as exp_sigmoid_nb
from cadenza.engine.dsp.nn import gru_layer
from cadenza.engine.dsp.units import hz_to_mel
from cadenza.models.ddsp_torch import exp_sigmoid
from cadenza.models.vocoder import features as F
from cadenza.models.weights import load_weights, reading

N_HARMONICS = 64
MAX_HZ = 11000.0  # harmonics fade out below this, Hz
N_NOISE = 65  # noise bands, evenly spaced 0..NOISE_HZ
NOISE_HZ = 12000.0
HIDDEN = 384
N_OUT = 1 + F.N_MELS + N_NOISE
DELAY_HOPS = 2
NOISE_BIAS = -5.0  # initial noise band logits (quiet)
MEL_LO = float(hz_to_mel(F.FMIN_HZ))  # env's mel axis: band i is centred at MEL_LO + (i + 1) · MEL_STEP
MEL_STEP = float((hz_to_mel(F.FMAX_HZ) - MEL_LO) / (F.N_MELS + 1))


class VocoderNet(nn.Module):
    """Causal frame-by-frame net. ``forward`` takes (B, T) sequences and an optional GRU state."""

    def __init__(self, hidden: int | None = None):
        super().__init__()
        hidden = hidden or HIDDEN
        self.inp = nn.Linear(F.N_MELS + 2, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(2 * hidden, N_OUT)
        self.register_buffer("mel_mean", torch.zeros(()))
        self.register_buffer("mel_std", torch.ones(()))
        with torch.no_grad():
            self.out.bias[1 + F.N_MELS:] = NOISE_BIAS

    def forward(self, mel, f0_hz, voicing, state=None):
        """mel (B, T, 80) log-mel, f0_hz (B, T) held f0, voicing (B, T) → (amp, env, noise, state).

        amp (B, T) linear; env (B, T, 80) log envelope; noise (B, T, N_NOISE) linear magnitudes.
        """
        x = torch.cat([(mel - self.mel_mean) / self.mel_std,
                       torch.log2(f0_hz.clamp_min(20.0) / 440.0)[..., None], voicing[..., None]], -1)
        proj = nn.functional.leaky_relu(self.inp(x), 0.1)
        h, state = self.gru(proj, state)
        y = self.out(torch.cat([h, proj], -1))
        amp = exp_sigmoid(y[..., 0])
        env = mel + y[..., 1:1 + F.N_MELS]
        noise = exp_sigmoid(y[..., 1 + F.N_MELS:])
        return amp, env, noise, state


def envelope_weights(env: torch.Tensor, f0_hz: torch.Tensor) -> torch.Tensor:
    """(B, T, H) harmonic weights ``exp(env(k · f0))`` from env (B, T, 80) and f0 (B, T) Hz.

    Differentiable in ``env``; the harmonics' mel positions depend on f0 alone and come from
    :func:`cadenza.engine.dsp.units.hz_to_mel` (on the CPU), the function the numba twin calls.
    """
    k = torch.arange(1, N_HARMONICS + 1, dtype=env.dtype, device=env.device)
    f = (f0_hz[..., None] * k).clamp(F.FMIN_HZ, F.FMAX_HZ)
    mel = torch.from_numpy(hz_to_mel(f.detach().cpu().numpy())).to(env.device, env.dtype)
    pos = ((mel - MEL_LO) / MEL_STEP - 1.0).clamp(0.0, F.N_MELS - 1.0)
    lo = pos.floor().clamp(max=F.N_MELS - 2).long()
    frac = pos - lo
    a = torch.gather(env, -1, lo)
    b = torch.gather(env, -1, lo + 1)
    return torch.exp(a + (b - a) * frac - env.amax(-1, keepdim=True))


@njit(nogil=True, cache=True, fastmath=True)
def envelope_weights_nb(env, f0_hz, out):
    """Numba twin of :func:`envelope_weights` for one frame: env (80,), f0 Hz → out (H,)."""
    top = env[0]
    for i in range(env.shape[0]):
        top = max(top, env[i])
    n = env.shape[0]
    for k in range(out.shape[0]):
        mel = hz_to_mel(min(max(f0_hz * (k + 1), 40.0), 12000.0))
        pos = min(max((mel - MEL_LO) / MEL_STEP - 1.0, 0.0), n - 1.0)
        lo = min(int(math.floor(pos)), n - 2)
        frac = pos - lo
        out[k] = math.exp(env[lo] + (env[lo + 1] - env[lo]) * frac - top)


@njit(nogil=True, cache=True, fastmath=True)
def gru_step(mel, f0_hz, voicing, w, h, proj, gates, y):
    """One frame of :class:`VocoderNet` in numba. Updates ``h`` (HIDDEN,) in place; ``y`` (N_OUT,) raw outputs.

    ``w`` is the tuple from :func:`numba_weights`; ``proj`` (HIDDEN,), ``gates`` (2, 3·HIDDEN) scratch: the
    input and hidden projections :func:`cadenza.engine.dsp.nn.gru_layer` fills.
    """
    w_in, b_in, w_ih, b_ih, w_hh, b_hh, w_out, b_out, mean, std = w
    n_mel = mel.shape[0]
    hid = h.shape[0]
    f0_feat = math.log2(max(f0_hz, 20.0) / 440.0)
    for j in range(hid):
        acc = b_in[j] + w_in[j, n_mel] * f0_feat + w_in[j, n_mel + 1] * voicing
        for i in range(n_mel):
            acc += w_in[j, i] * ((mel[i] - mean) / std)
        proj[j] = acc if acc > 0.0 else 0.1 * acc
    gru_layer(proj, h, w_ih, b_ih, w_hh, b_hh, gates[0], gates[1])
    for o in range(y.shape[0]):
        acc = b_out[o]
        for i in range(hid):
            acc += w_out[o, i] * h[i] + w_out[o, hid + i] * proj[i]
        y[o] = acc


def numba_weights(net: VocoderNet) -> tuple:
    """The net's weights as contiguous float32 arrays, in :func:`gru_step`'s order."""
    def a(t):
        return np.ascontiguousarray(t.detach().cpu().numpy(), np.float32)

    g = net.gru
    return (a(net.inp.weight), a(net.inp.bias), a(g.weight_ih_l0), a(g.bias_ih_l0), a(g.weight_hh_l0),
            a(g.bias_hh_l0), a(net.out.weight), a(net.out.bias),
            np.float32(net.mel_mean.item()), np.float32(net.mel_std.item()))


@njit(nogil=True, cache=True)
def decode_outputs(y, mel, amp_out, env, noise):
    """Raw outputs ``y`` (N_OUT,) → amp_out (1,), env (80,) log envelope, noise (N_NOISE,) magnitudes."""
    amp_out[0] = exp_sigmoid_nb(y[0])
    n_mel = env.shape[0]
    for i in range(n_mel):
        env[i] = mel[i] + y[1 + i]
    for i in range(noise.shape[0]):
        noise[i] = exp_sigmoid_nb(y[1 + n_mel + i])


def load(path) -> VocoderNet:
    """The weights at ``path`` (sha256-checked, weights_only) in a VocoderNet, eval mode."""
    state = load_weights(path)
    net = VocoderNet()
    with reading(path, "vocoder weights"):
        net.load_state_dict(state)
    return net.eval()
