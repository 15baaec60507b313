"""The DDSP decoder: (f0, loudness, voicing) per control frame → synth controls.

A small causal recurrent net (DDSP's RNN-FC decoder, shrunk to fit a live
block): an input MLP, one GRU, an output MLP that also sees the inputs.
Outputs per frame: overall harmonic amplitude, a harmonic distribution over
:data:`N_HARMONICS` harmonics and :data:`N_BANDS` noise band magnitudes, all
through DDSP's scaled sigmoid (positive, at most 2). :func:`render` turns them
into audio with the torch twins of the live kernels.

Input scaling: f0 as MIDI pitch / 127 (0 where f0 ≤ 0), loudness as
(dB + 100) / 100, voicing 0..1.
"""

from __future__ import annotations

import torch
from torch import nn

from cadenza.engine.dsp.ddsp import taper_hz
from cadenza.models import ddsp_torch as st
from cadenza.models.ddsp_torch import exp_sigmoid
from cadenza.models.weights import load_weights, reading, save_weights

N_HARMONICS = 60
N_BANDS = 65
NOISE_BIAS = -5.0  # starts the noise quiet, as DDSP does
LEAK = 0.1  # LeakyReLU slope


def scale_inputs(f0_hz: torch.Tensor, loudness_db: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
    """(…, 3) network inputs from f0 (Hz), loudness (dB) and voicing (0..1)."""
    midi = 69.0 + 12.0 * torch.log2(f0_hz.clamp_min(1e-3) / 440.0)
    f0s = torch.where(f0_hz > 0, midi.clamp(0.0, 127.0) / 127.0, torch.zeros_like(midi))
    ld = ((loudness_db + 100.0) / 100.0).clamp(0.0, 1.2)
    return torch.stack([f0s, ld, voicing.clamp(0.0, 1.0)], dim=-1)


class Decoder(nn.Module):
    """f0/loudness/voicing frames (B, T) → amp (B, T), dist (B, T, H), noise mags (B, T, bands)."""

    def __init__(self, hidden: int = 128, sample_rate: int = 24000, hop: int = 64):
        super().__init__()
        self.hidden = hidden
        self.sample_rate = sample_rate
        self.hop = hop
        self.inp = nn.Sequential(nn.Linear(3, hidden), nn.LeakyReLU(LEAK), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(LEAK))
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Sequential(nn.Linear(hidden + 3, hidden), nn.LeakyReLU(LEAK),
                                 nn.Linear(hidden, 1 + N_HARMONICS + N_BANDS))

    @property
    def band_hz(self) -> float:
        """Top of the harmonic and noise bands: the training Nyquist frequency."""
        return self.sample_rate / 2.0

    def forward(self, f0_hz, loudness_db, voicing, h0=None):
        x = scale_inputs(f0_hz, loudness_db, voicing)
        y, h = self.gru(self.inp(x), h0)
        raw = self.out(torch.cat([y, x], dim=-1))
        amp = exp_sigmoid(raw[..., 0])
        dist = exp_sigmoid(raw[..., 1:1 + N_HARMONICS])
        mags = exp_sigmoid(raw[..., 1 + N_HARMONICS:] + NOISE_BIAS)
        return amp, dist, mags, h


def render(decoder: Decoder, f0_hz, amp, dist, mags, noise, mat, basis=None) -> torch.Tensor:
    """(B, T·hop) audio at the decoder's rate, as the live kernels would make it
    (``basis``: a precomputed :func:`fast_basis` of ``f0_hz``)."""
    max_hz = decoder.band_hz
    amps = st.harmonic_amplitudes(amp, dist, f0_hz, max_hz, taper_hz(max_hz))
    harm = st.harmonic_synth(f0_hz, amps, decoder.hop, decoder.sample_rate, max_hz, taper_hz(max_hz),
                             basis=basis)
    return harm + st.noise_synth(mags, noise, mat, decoder.hop)


def fast_basis(decoder: Decoder, f0_hz: torch.Tensor) -> torch.Tensor:
    """The harmonic basis of the decoder's f0 frames (B, T) from the numba kernel
    (:func:`cadenza.models.ddsp_torch.fast_harmonic_basis`)."""
    return st.fast_harmonic_basis(f0_hz, N_HARMONICS, decoder.hop, decoder.sample_rate, decoder.band_hz,
                                  taper_hz(decoder.band_hz))


def save(decoder: Decoder, path, meta: dict) -> None:
    """Weights + plain-typed metadata, loadable with ``torch.load(..., weights_only=True)``, with its sha256."""
    save_weights({"state_dict": decoder.state_dict(), "hidden": decoder.hidden,
                "sample_rate": decoder.sample_rate, "hop": decoder.hop, "meta": meta}, path)


def load(path) -> tuple[Decoder, dict]:
    """The decoder saved by :func:`save` (CPU, eval mode) and its metadata."""
    blob = load_weights(path)
    with reading(path, "a DDSP decoder"):
        decoder = Decoder(blob["hidden"], blob["sample_rate"], blob["hop"])
        decoder.load_state_dict(blob["state_dict"])
        meta = blob["meta"]
    return decoder.eval(), meta
