"""DDSP: synth kernels vs their torch twins, the decoder weights, the voice node."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instruments.ddsp_kernels import (fill_noise, harmonic_amplitudes, harmonic_render, noise_matrix,
                                      noise_render, taper_hz)
from models.ddsp import synth_torch as st


def _render_kernels(f0, amps, mags, noise, hop, sr, max_hz, mat):
    """Hop-by-hop numba render of frames (the way the live voice calls the kernels)."""
    t_frames = len(f0)
    out = np.zeros(t_frames * hop, np.float32)
    phase = np.zeros(1)
    taps = mat.shape[0]
    ir, work, tail = (np.zeros(taps, np.float32), np.zeros(hop + taps, np.float32),
                      np.zeros(taps - 1, np.float32))
    for t in range(t_frames):
        seg = out[t * hop:(t + 1) * hop]
        prev = max(t - 1, 0)
        harmonic_render(seg, f0[prev], f0[t], amps[prev], amps[t], phase, sr, max_hz, taper_hz(max_hz))
        noise_render(seg, noise[t * hop:(t + 1) * hop], mags[t], mat, ir, work, tail)
    return out


def test_torch_twin_agrees_with_numba_kernels():
    rng = np.random.default_rng(1)
    sr, hop, n_harm, n_bands, max_hz, t_frames = 24000, 64, 60, 65, 12000.0, 40
    f0 = np.geomspace(60.0, 3000.0, t_frames).astype(np.float32)
    f0[7] = 0.0  # unvoiced frame in the middle
    amp = (rng.random(t_frames) * 0.3).astype(np.float32)
    dist = rng.random((t_frames, n_harm)).astype(np.float32)
    mags = (rng.random((t_frames, n_bands)) * 0.02).astype(np.float32)
    noise = (rng.random(t_frames * hop) * 2 - 1).astype(np.float32)
    mat = noise_matrix(n_bands, max_hz, sr)
    amps = np.zeros((t_frames, n_harm), np.float32)
    for t in range(t_frames):
        harmonic_amplitudes(amp[t], dist[t], f0[t], max_hz, taper_hz(max_hz), amps[t])
    ours = _render_kernels(f0, amps, mags, noise, hop, sr, max_hz, mat)

    amps_t = st.harmonic_amplitudes(torch.tensor(amp)[None], torch.tensor(dist)[None],
                                    torch.tensor(f0)[None], max_hz, taper_hz(max_hz))
    np.testing.assert_allclose(amps_t[0].numpy(), amps, atol=1e-7)
    twin = (st.harmonic_synth(torch.tensor(f0)[None], amps_t, hop, sr, max_hz, taper_hz(max_hz))
            + st.noise_synth(torch.tensor(mags)[None], torch.tensor(noise)[None], torch.tensor(mat), hop))
    assert np.abs(ours).max() > 0.05
    np.testing.assert_allclose(twin[0].numpy(), ours, atol=2e-5)


def _spectrum(x, sr):
    win = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * win))
    return np.fft.rfftfreq(len(x), 1 / sr), mag


def test_harmonics_land_on_exact_multiples_and_nothing_above_nyquist():
    sr, hop, n_harm = 48000, 128, 60
    f0 = 1000.0  # 60 harmonics would reach 60 kHz: everything from 24 kHz up must be silent
    amps = np.full(n_harm, 1.0 / n_harm, np.float32)
    out = np.zeros(hop * 375, np.float32)  # 1 s
    phase = np.zeros(1)
    max_hz = sr / 2
    for t in range(375):
        harmonic_render(out[t * hop:(t + 1) * hop], f0, f0, amps, amps, phase, sr, max_hz, taper_hz(max_hz))
    freqs, mag = _spectrum(out, sr)
    peaks = [freqs[i] for i in range(1, len(mag) - 1)
             if mag[i] > mag[i - 1] and mag[i] > mag[i + 1] and mag[i] > 0.01 * mag.max()]
    assert len(peaks) == 23  # 1..23 kHz; the 24th sits at Nyquist and is tapered to zero
    np.testing.assert_allclose(peaks, 1000.0 * np.arange(1, 24), atol=1.0)
    # Aliases would land between the harmonics: nothing there above -80 dB of the peak.
    between = (np.abs((freqs / 1000.0) - np.round(freqs / 1000.0)) > 0.05)
    assert mag[between].max() < 1e-4 * mag.max()


def test_noise_stays_in_its_bands():
    sr, hop = 48000, 128
    mat = noise_matrix(65, 12000.0, sr)
    mags = np.zeros(65, np.float32)
    mags[20:30] = 1.0  # 3.75 .. 5.44 kHz
    out = np.zeros(hop * 200, np.float32)
    noise = np.zeros(hop, np.float32)
    taps = mat.shape[0]
    ir, work, tail = (np.zeros(taps, np.float32), np.zeros(hop + taps, np.float32),
                      np.zeros(taps - 1, np.float32))
    for t in range(200):
        fill_noise(noise)
        noise_render(out[t * hop:(t + 1) * hop], noise, mags, mat, ir, work, tail)
    freqs, mag = _spectrum(out, sr)
    inside = (freqs > 3900) & (freqs < 5300)
    far = (freqs < 2000) | (freqs > 8000)
    assert np.mean(mag[inside] ** 2) > 100 * np.mean(mag[far] ** 2)
