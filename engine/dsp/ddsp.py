"""DDSP synthesis kernels: a harmonic oscillator bank and a filtered-noise generator.

Both are driven by *control frames* and render audio one frame-hop (``n``
samples) at a time, so the same call serves a live block and a training
segment. ``models/ddsp_torch.py`` holds their torch twins (same maths,
differentiable, batched); ``tests/test_ddsp.py`` checks that they agree.

Conventions shared by the kernels and their twins
-------------------------------------------------
* A hop of ``n`` samples goes from control frame ``a`` (the previous one) to
  frame ``b`` (the new one). Sample ``i`` (0..n-1) of the hop uses
  ``a + (b - a) * (i + 1) / n``: per-sample linear interpolation that lands on
  ``b`` exactly at the hop's last sample.
* Harmonic oscillator: the fundamental's phase (radians, float64, kept in
  ``[0, 2π)``) advances by ``2π f0 / sr`` *before* each sample, and harmonic
  ``k`` (1-based) is ``sin(k · phase)``: phase-continuous across hops, exact
  integer multiples of f0. Harmonic ``k`` is gained by
  :func:`band_gain` ``(k f0)``, which is 1 below ``max_hz - taper`` and falls
  linearly to 0 at ``max_hz`` (``max_hz`` ≤ Nyquist): no energy above Nyquist.
* Per-harmonic amplitudes come from (overall amplitude, harmonic distribution)
  via :func:`harmonic_amplitudes`, which silences the harmonics at or above
  ``max_hz`` for that frame's f0 and renormalises the rest to sum to one.
* Filtered noise: ``n_bands`` magnitudes (linear, bands evenly spaced from 0 Hz
  to ``band_hz``) become one FIR impulse response per frame, ``ir = M @ mags``
  with the fixed matrix of :func:`noise_matrix` (zero-phase frequency sampling,
  centred, Hann-windowed). White noise of the hop is convolved with it and
  overlap-added: the tail (``taps - 1`` samples) spills into later hops. The
  noise itself is an input (uniform in [-1, 1)), so a twin can be fed the same.

Typical live use (one voice, per hop; all arrays preallocated, float32 unless noted)::

    M = noise_matrix(65, band_hz, sr)                 # once: (taps, 65)
    taper = taper_hz(max_hz)                          # max_hz = min(sr / 2, band_hz)
    harmonic_amplitudes(amp, dist, f0, max_hz, taper, amps_new)
    out[:] = 0
    harmonic_render(out, f0_old, f0, amps_old, amps_new, phase, sr, max_hz, taper)  # phase: (1,) float64
    white_noise(noise, gen)                           # gen: the voice's noise_state(seed)
    noise_render(out, noise, mags, M, ir, work, tail)  # ir (taps,), work (n+taps,), tail (taps-1,)
    amps_old[:] = amps_new; f0_old = f0

``harmonic_basis`` gives the per-sample factors of ``harmonic_render`` for a
whole sequence (training, where f0 is data and needs no gradient).

Units: frequencies in Hz, ``sr`` in Hz, amplitudes linear (full scale 1).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

TWO_PI = 2.0 * math.pi
TAPER_FRACTION = 0.04  # harmonics fade out over the top 4 % below max_hz


@njit(nogil=True, cache=True, inline="always")
def _advance_phase(ph, f0, sr):
    """The fundamental's phase (radians, kept in [0, 2π)) one sample on at ``f0`` Hz (negative: held)."""
    ph += TWO_PI * max(f0, 0.0) / sr
    if ph >= TWO_PI:
        ph -= TWO_PI * math.floor(ph / TWO_PI)
    return ph


@njit(nogil=True, cache=True)
def taper_hz(max_hz):
    """Width (Hz) of the fade below ``max_hz`` over which harmonics are silenced."""
    return TAPER_FRACTION * max_hz


@njit(nogil=True, cache=True, inline="always")
def band_gain(freq_hz, max_hz, taper):
    """1 below ``max_hz - taper``, linear to 0 at ``max_hz``, 0 above (and for freq ≤ 0)."""
    if freq_hz <= 0.0:
        return 0.0
    g = (max_hz - freq_hz) / taper
    if g >= 1.0:
        return 1.0
    if g <= 0.0:
        return 0.0
    return g


@njit(nogil=True, cache=True)
def harmonic_amplitudes(amp, dist, f0_hz, max_hz, taper, out):
    """Per-harmonic amplitudes into ``out`` (H,): ``amp · dist_k · gain_k / Σ dist·gain``.

    ``amp`` linear overall amplitude, ``dist`` (H,) non-negative weights,
    ``gain_k = band_gain(k f0)``. All zeros when no harmonic fits below ``max_hz``.
    """
    total = 0.0
    n = dist.shape[0]
    for k in range(n):
        g = band_gain((k + 1) * f0_hz, max_hz, taper)
        out[k] = dist[k] * g
        total += out[k]
    scale = amp / total if total > 1e-12 else 0.0
    for k in range(n):
        out[k] *= scale


@njit(nogil=True, cache=True)
def harmonic_render(out, f0_a, f0_b, amps_a, amps_b, phase, sr, max_hz, taper):
    """Add one hop of the harmonic bank into ``out`` (n,) float32.

    f0 goes from ``f0_a`` to ``f0_b`` Hz and harmonic k's amplitude from
    ``amps_a[k]`` to ``amps_b[k]`` (H,), interpolated per sample (see module
    docstring). ``phase`` (1,) float64 carries the fundamental's phase across hops.
    Sines are made by the Chebyshev recurrence sin((k+1)x) = 2cos(x) sin(kx) − sin((k−1)x).
    """
    n = out.shape[0]
    n_harm = amps_a.shape[0]
    f_lo = min(f0_a, f0_b)
    top = n_harm
    if f_lo > 0.0:
        top = min(n_harm, int(max_hz / f_lo) + 1)
    ph = phase[0]
    inv_n = 1.0 / n
    for i in range(n):
        t = (i + 1) * inv_n
        f0 = f0_a + (f0_b - f0_a) * t
        ph = _advance_phase(ph, f0, sr)
        if f0 <= 0.0:
            continue
        s1 = math.sin(ph)
        c2 = 2.0 * math.cos(ph)
        s_prev = 0.0
        s_k = s1
        acc = 0.0
        for k in range(top):
            g = band_gain((k + 1) * f0, max_hz, taper)
            if g == 0.0:
                break
            a = amps_a[k] + (amps_b[k] - amps_a[k]) * t
            acc += a * g * s_k
            s_next = c2 * s_k - s_prev
            s_prev = s_k
            s_k = s_next
        out[i] += acc
    phase[0] = ph


def noise_matrix(n_bands: int, band_hz: float, sr: float, taps_at_band: int | None = None) -> np.ndarray:
    """The (taps, n_bands) float32 matrix turning band magnitudes into an FIR at ``sr``.

    Bands are evenly spaced centres from 0 to ``band_hz`` Hz, linearly
    interpolated onto the FFT grid (zero above ``band_hz``). The response is
    zero-phase, shifted to the centre (a delay of taps/2 samples) and Hann
    windowed. ``taps`` is ``2 (n_bands − 1)`` at a rate of ``2 band_hz`` and scales
    with ``sr`` so the filter lasts the same time; the matrix is scaled by
    ``sqrt(sr / (2 band_hz))`` so unit-variance white noise through it has the
    same spectral level at any rate.
    """
    base_sr = 2.0 * band_hz
    base_taps = taps_at_band or 2 * (n_bands - 1)
    taps = max(2, int(round(base_taps * sr / base_sr / 2.0)) * 2)
    bins = np.arange(taps // 2 + 1) * sr / taps
    centres = np.linspace(0.0, band_hz, n_bands)
    window = np.hanning(taps + 1)[:taps]
    mat = np.zeros((taps, n_bands), np.float64)
    for b in range(n_bands):
        onehot = np.zeros(n_bands)
        onehot[b] = 1.0
        response = np.interp(bins, centres, onehot, right=0.0)
        ir = np.roll(np.fft.irfft(response, taps), taps // 2) * window
        mat[:, b] = ir
    return (mat * math.sqrt(sr / base_sr)).astype(np.float32)


@njit(nogil=True, cache=True)
def noise_render(out, noise, mags, mat, ir, work, tail):
    """Add one hop of filtered noise into ``out`` (n,) float32.

    ``noise`` (n,) white noise; ``mags`` (n_bands,) linear band magnitudes of
    this frame; ``mat`` from :func:`noise_matrix`; scratch ``ir`` (taps,) and
    ``work`` (≥ n + taps − 1,); ``tail`` (taps − 1,) carries the overlap-add.
    """
    n = out.shape[0]
    taps = mat.shape[0]
    n_bands = mat.shape[1]
    for j in range(taps):
        acc = 0.0
        for b in range(n_bands):
            acc += mat[j, b] * mags[b]
        ir[j] = acc
    m = n + taps - 1
    for j in range(m):
        work[j] = 0.0
    for j in range(taps - 1):
        work[j] = tail[j]
    for i in range(n):
        x = noise[i]
        if x == 0.0:
            continue
        for j in range(taps):
            work[i + j] += x * ir[j]
    for i in range(n):
        out[i] += work[i]
    for j in range(taps - 1):
        tail[j] = work[n + j]


@njit(nogil=True, cache=True)
def harmonic_basis(f0_frames, f0_prev, hop, sr, max_hz, taper, out):
    """Per-sample ``band_gain(k f0) · sin(k · phase)`` into ``out`` (T·hop, H) float32, from phase 0.

    Exactly the factors :func:`harmonic_render` multiplies the interpolated
    amplitudes by; training uses it (f0 is data, so this needs no gradient).
    """
    n_harm = out.shape[1]
    ph = 0.0
    f_a = f0_prev
    inv_n = 1.0 / hop
    for t in range(f0_frames.shape[0]):
        f_b = f0_frames[t]
        for i in range(hop):
            n = t * hop + i
            f0 = f_a + (f_b - f_a) * (i + 1) * inv_n
            ph = _advance_phase(ph, f0, sr)
            for k in range(n_harm):
                out[n, k] = 0.0
            if f0 <= 0.0:
                continue
            s1 = math.sin(ph)
            c2 = 2.0 * math.cos(ph)
            s_prev = 0.0
            s_k = s1
            for k in range(n_harm):
                g = band_gain((k + 1) * f0, max_hz, taper)
                if g == 0.0:
                    break
                out[n, k] = g * s_k
                s_next = c2 * s_k - s_prev
                s_prev = s_k
                s_k = s_next
        f_a = f_b
