"""Torch twins of :mod:`cadenza.engine.dsp.ddsp`, shared by the DDSP and vocoder models: the same
harmonic-plus-noise synthesis, batched and differentiable; DDSP's scaled sigmoid; its multiscale spectral loss.

Shapes: B batch, T control frames, H harmonics, n hop samples. Frame ``t``
covers output samples ``t·n … (t+1)·n − 1`` and interpolates from frame
``t − 1`` (frame ``−1`` is ``prev``, default frame 0) to frame ``t``, exactly as
the numba kernels do hop by hop. See the kernels' module docstring for the
conventions (phase, band gain, noise FIR).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cadenza.engine.dsp.ddsp import TWO_PI
from cadenza.engine.dsp.ddsp import harmonic_basis as numba_harmonic_basis


def band_gain(freq_hz: torch.Tensor, max_hz: float, taper: float) -> torch.Tensor:
    """1 below ``max_hz - taper``, linear to 0 at ``max_hz``, 0 for freq ≤ 0."""
    g = ((max_hz - freq_hz) / taper).clamp(0.0, 1.0)
    return torch.where(freq_hz > 0.0, g, torch.zeros_like(g))


def harmonic_amplitudes(amp: torch.Tensor, dist: torch.Tensor, f0_hz: torch.Tensor,
                        max_hz: float, taper: float) -> torch.Tensor:
    """(B, T, H) per-harmonic amplitudes from amp (B, T), dist (B, T, H), f0 (B, T) Hz."""
    k = torch.arange(1, dist.shape[-1] + 1, device=dist.device, dtype=dist.dtype)
    masked = dist * band_gain(f0_hz[..., None] * k, max_hz, taper)
    total = masked.sum(-1, keepdim=True)
    return amp[..., None] * masked / total.clamp_min(1e-12) * (total > 1e-12)


def upsample(frames: torch.Tensor, hop: int, prev: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample linear interpolation of frames (B, T, ...) → (B, T·hop, ...)."""
    if prev is None:
        prev = frames[:, :1]
    else:
        prev = prev[:, None]
    before = torch.cat([prev, frames[:, :-1]], dim=1)
    t = torch.arange(1, hop + 1, device=frames.device, dtype=frames.dtype) / hop
    shape = (1, 1, hop) + (1,) * (frames.dim() - 2)
    t = t.view(shape)
    out = before[:, :, None] + (frames - before)[:, :, None] * t
    return out.reshape(frames.shape[0], frames.shape[1] * hop, *frames.shape[2:])


def harmonic_basis(f0_hz: torch.Tensor, n_harm: int, hop: int, sr: float, max_hz: float, taper: float,
                   phase0: float = 0.0, f0_prev=None) -> torch.Tensor:
    """(B, T·hop, H) per-sample ``band_gain(k f0) · sin(k phase)`` from f0 frames (B, T), no gradient.

    (``cadenza.engine.dsp.ddsp.harmonic_basis`` computes the same from phase 0, faster on CPU.)
    """
    with torch.no_grad():
        f0 = upsample(f0_hz, hop, f0_prev)
        inc = TWO_PI * f0.clamp_min(0.0).double() / sr
        phase = torch.remainder(torch.cumsum(inc, dim=1) + phase0, TWO_PI).float()
        k = torch.arange(1, n_harm + 1, device=f0.device, dtype=torch.float32)
        return band_gain(f0[..., None] * k, max_hz, taper) * torch.sin(phase[..., None] * k)


def fast_harmonic_basis(f0_hz: torch.Tensor, n_harm: int, hop: int, sr: float, max_hz: float, taper: float,
                        f0_prev: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`harmonic_basis` from phase 0 by the numba kernel (``cadenza.engine.dsp.ddsp.harmonic_basis``,
    which it equals and several times faster on a CPU): (B, T·hop, ``n_harm``) float32 on ``f0_hz``'s device;
    ``f0_prev`` (B,) the frame before each row's first (default: the first frame itself)."""
    f0 = f0_hz.detach().cpu().numpy().astype(np.float64)
    prev = f0[:, 0] if f0_prev is None else f0_prev.detach().cpu().numpy().astype(np.float64)
    out = np.empty((f0.shape[0], f0.shape[1] * hop, n_harm), np.float32)
    for b in range(f0.shape[0]):
        numba_harmonic_basis(f0[b], prev[b], hop, float(sr), max_hz, taper, out[b])
    return torch.from_numpy(out).to(f0_hz.device)


def harmonic_synth(f0_hz: torch.Tensor, amps: torch.Tensor, hop: int, sr: float, max_hz: float,
                   taper: float, phase0: float = 0.0, f0_prev=None, amps_prev=None,
                   basis: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T·hop) harmonic bank output from f0 (B, T) Hz and per-harmonic amps (B, T, H).

    f0 carries no gradient (it is data, not a prediction), so the per-sample
    basis (:func:`harmonic_basis`, or ``basis`` when given) is built without
    autograd and each hop is two small matrix products with the interpolated
    amplitudes.
    """
    b, t, n_harm = amps.shape
    if basis is None:
        basis = harmonic_basis(f0_hz, n_harm, hop, sr, max_hz, taper, phase0, f0_prev)
    basis = basis.reshape(b * t, hop, n_harm)
    ramp = (torch.arange(1, hop + 1, device=amps.device, dtype=amps.dtype) / hop)[:, None]
    before = torch.cat([amps[:, :1] if amps_prev is None else amps_prev[:, None], amps[:, :-1]], dim=1)
    start = torch.bmm(basis, before.reshape(b * t, n_harm, 1))
    slope = torch.bmm(basis, (amps - before).reshape(b * t, n_harm, 1))
    return (start + ramp * slope).reshape(b, t * hop)


def noise_synth(mags: torch.Tensor, noise: torch.Tensor, mat: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, T·hop) filtered noise from band mags (B, T, bands), white noise (B, T·hop), FIR matrix (taps, bands).

    Per-frame FIR ``mat @ mags``, convolved with the frame's noise via FFT,
    overlap-added; the tail past the last frame is dropped (as it is still
    pending in the kernel's ``tail``).
    """
    b, t, _ = mags.shape
    taps = mat.shape[0]
    ir = mags @ mat.T  # (B, T, taps)
    seg = noise.reshape(b, t, hop)
    n_fft = 1 << math.ceil(math.log2(hop + taps - 1))
    y = torch.fft.irfft(torch.fft.rfft(seg, n_fft) * torch.fft.rfft(ir, n_fft), n_fft)
    y = y[..., : hop + taps - 1]  # (B, T, L)
    length = t * hop + taps - 1
    out = torch.nn.functional.fold(
        y.transpose(1, 2), output_size=(1, length), kernel_size=(1, hop + taps - 1), stride=(1, hop))
    return out.reshape(b, length)[:, : t * hop]


def exp_sigmoid(x: torch.Tensor, exponent: float = math.log(10.0), max_value: float = 2.0,
                threshold: float = 1e-7) -> torch.Tensor:
    """DDSP's positive, bounded non-linearity: max · sigmoid(x)^ln10 + threshold
    (numba twin: :func:`cadenza.engine.dsp.nn.exp_sigmoid`)."""
    return max_value * torch.sigmoid(x) ** exponent + threshold


def multiscale_spectral_loss(x: torch.Tensor, y: torch.Tensor,
                             sizes=(2048, 1024, 512, 256, 128, 64), eps: float = 1e-7) -> torch.Tensor:
    """DDSP's loss: Σ over FFT sizes of mean |S_x − S_y| + mean |log S_x − log S_y| (hop = size/4)."""
    total = x.new_zeros(())
    for n in sizes:
        win = torch.hann_window(n, device=x.device)
        sx = torch.stft(x, n, n // 4, window=win, return_complex=True).abs()
        sy = torch.stft(y, n, n // 4, window=win, return_complex=True).abs()
        total = total + (sx - sy).abs().mean() + (torch.log(sx + eps) - torch.log(sy + eps)).abs().mean()
    return total
