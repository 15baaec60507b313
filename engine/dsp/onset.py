"""The onset front end of the beat tracker: spectral-flux novelty per band and the onset GRU step.

Onset novelty (one value per hop, ``fps`` frames per second): a Hann-windowed
real FFT of the newest ``win`` samples (rocket-fft's ``r2c``: DUCC0, the FFT of
``scipy.fft``, called from numba into a preallocated spectrum), magnitudes
summed into log-spaced triangular bands (``bands_per_octave``), compressed
with ``log10(1 + x)``, then the positive spectral flux against the previous frame, each band compared with the
maximum of its neighbours (the SuperFlux trick, so vibrato does not count).
Each band's positive difference, summed into fixed third-octave groups, is the
input of a small causal onset network (a one-layer GRU, :func:`gru_step`; a second
:func:`readout` of its state gives a downbeat activation).

:class:`OnsetFrontEnd` holds the tables and scratch at one sample rate; the
beat tracker node (:mod:`cadenza.instruments.listeners.beat`) streams through
it and the network's trainer (:mod:`cadenza.models.beat.train`) computes the
same numbers over whole clips with :meth:`OnsetFrontEnd.features`.
Nothing in the per-hop kernels allocates.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from rocket_fft import r2c

from cadenza.engine.dsp.nn import gru_layer, sigmoid

FPS = 100.0  # novelty frames per second (default)
WINDOW_MS = 46.0  # analysis window, ms (rounded to a power of two in samples)
DELAY_MS = 12.0  # how far a frame's onset evidence lags its last sample, ms
BANDS_PER_OCTAVE = 12
LOW_HZ = 250.0  # bands centred below this get the ``low_boost``
LOW_BOOST = 3.0  # extra weight of the flux below LOW_HZ (kick, bass)
MAX_FILTER = 1  # SuperFlux neighbour bands each side
GROUP_FMIN, N_GROUPS = 30.0, 27  # the network's input: band differences in third octaves from 30 Hz
_AXES = np.zeros(1, np.int64)  # r2c transforms axis 0


@njit(nogil=True, cache=True)
def rfft_mag(frame, spec, mag):
    """Magnitudes of bins 0 .. n/2 of the real FFT of ``frame`` (n,); ``spec`` is (n/2 + 1,) complex scratch."""
    r2c(frame, spec, _AXES, True, 1.0, 1)
    for k in range(mag.shape[0]):
        mag[k] = abs(spec[k])


# --------------------------------------------------------------------------- filterbank


def log_filterbank(win: int, sr: float, bands_per_octave: int = 12, fmin: float = 30.0,
                   fmax: float = 17000.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangular log-spaced bands over the ``win // 2 + 1`` FFT bins, each of unit area.

    Returns (start bin, length, weights packed one band after another).
    """
    n_bins = win // 2 + 1
    fmax = min(fmax, sr / 2 * 0.98)
    n_oct = math.log2(fmax / fmin)
    centers = fmin * 2.0 ** (np.arange(int(n_oct * bands_per_octave) + 1) / bands_per_octave)
    bins = np.unique(np.round(centers * win / sr).astype(np.int64))
    bins = bins[(bins > 0) & (bins < n_bins)]
    starts, lengths, weights = [], [], []
    for i in range(1, len(bins) - 1):
        lo, mid, hi = bins[i - 1], bins[i], bins[i + 1]
        w = np.concatenate([np.linspace(0, 1, mid - lo, endpoint=False), np.linspace(1, 0, hi - mid + 1)])
        w = w[1:-1] if len(w) > 2 else np.ones(1)
        first = lo + 1 if hi - lo > 1 else mid
        w = w / w.sum()
        starts.append(first)
        lengths.append(len(w))
        weights.append(w)
    return (np.array(starts, np.int64), np.array(lengths, np.int64), np.concatenate(weights))


# --------------------------------------------------------------------------- per frame


@njit(nogil=True, cache=True)
def novelty(ring, wpos, window, frame, spec, mag, b_start, b_len, b_w, b_gain, cur, prev, bdiff, max_w):
    """Spectral flux of the newest window in ``ring`` (write position ``wpos``), band ``b`` weighted ``b_gain[b]``.

    ``bdiff`` receives each band's positive difference (the onset network's input). ``frame``, ``spec``
    and ``mag`` are scratch (:class:`OnsetFrontEnd`'s).
    """
    n = window.shape[0]
    for i in range(n):
        frame[i] = ring[(wpos + i) % n] * window[i]
    rfft_mag(frame, spec, mag)
    k = 0
    for b in range(b_start.shape[0]):
        acc = 0.0
        for i in range(b_len[b]):
            acc += b_w[k] * mag[b_start[b] + i]
            k += 1
        cur[b] = math.log10(1.0 + acc)
    nb = cur.shape[0]
    flux = 0.0
    for b in range(nb):
        ref = prev[b]
        for d in range(1, max_w + 1):
            if b - d >= 0 and prev[b - d] > ref:
                ref = prev[b - d]
            if b + d < nb and prev[b + d] > ref:
                ref = prev[b + d]
        diff = max(cur[b] - ref, 0.0)
        bdiff[b] = diff
        flux += diff * b_gain[b]
    for b in range(nb):
        prev[b] = cur[b]
    return flux


@njit(nogil=True, cache=True)
def gru_step(x, h, gi, gh, w_ih, w_hh, b_ih, b_hh, w_out, b_out):
    """One step of a one-layer GRU (torch's gate order r, z, n) and a sigmoid read-out.

    ``x`` (inputs,), ``h`` (hidden,) updated in place; ``gi``/``gh`` (3 * hidden,) scratch.
    Returns the beat activation 0..1.
    """
    gru_layer(x, h, w_ih, b_ih, w_hh, b_hh, gi, gh)
    return readout(h, w_out, b_out)


@njit(nogil=True, cache=True)
def readout(h, w, b):
    """One sigmoid read-out of the GRU state ``h`` (hidden,): ``sigmoid(w · h + b[0])``, 0..1."""
    out = b[0]
    for k in range(h.shape[0]):
        out += w[k] * h[k]
    return sigmoid(out)


@njit(nogil=True, cache=True)
def group_bands(bdiff, group, xin):
    """Sum band differences into the network's fixed third-octave groups (rate-independent)."""
    for g in range(xin.shape[0]):
        xin[g] = 0.0
    for b in range(bdiff.shape[0]):
        xin[group[b]] += bdiff[b]


@njit(nogil=True, cache=True)
def band_features(audio, hop, window, frame, spec, mag, b_start, b_len, b_w, b_gain, cur, prev, bdiff, max_w,
                  group, out):
    """Each frame's grouped band differences, (frames, groups) into ``out``: the same numbers the
    streaming kernel feeds the network (frame ``k`` ends at sample ``(k + 1) * hop``). For training."""
    win = window.shape[0]
    ring = np.zeros(win)
    for k in range(out.shape[0]):
        end = (k + 1) * hop
        for i in range(win):
            j = end - win + i
            ring[i] = audio[j] if 0 <= j < audio.shape[0] else 0.0
        novelty(ring, 0, window, frame, spec, mag, b_start, b_len, b_w, b_gain, cur, prev, bdiff, max_w)
        group_bands(bdiff, group, out[k])


class OnsetFrontEnd:
    """Tables and scratch of the onset novelty for mono audio at ``sample_rate`` Hz.

    ``hop`` (samples) and ``fps`` (frames per second), ``win`` (FFT size),
    ``window`` (Hann), the log filterbank (``b_start``, ``b_len``, ``b_w``,
    per-band ``b_gain``), each band's network ``group`` and the per-frame
    scratch (``frame``, ``spec``, ``mag``, ``cur``, ``prev``, ``bdiff``).
    """

    def __init__(self, sample_rate: float, fps: float = FPS, window_ms: float = WINDOW_MS,
                 bands_per_octave: int = BANDS_PER_OCTAVE, low_boost: float = LOW_BOOST,
                 max_filter: int = MAX_FILTER):
        sr = float(sample_rate)
        hop = max(1, int(round(sr / fps)))
        win = 1 << int(np.round(np.log2(window_ms * 1e-3 * sr)))
        self.hop, self.fps, self.win = hop, sr / hop, win
        self.max_filter = int(max_filter)
        self.window = np.hanning(win).astype(np.float64)
        self.b_start, self.b_len, self.b_w = log_filterbank(win, sr, bands_per_octave)
        n_bands = self.b_start.shape[0]
        centre_hz = (self.b_start + self.b_len / 2) * sr / win
        self.b_gain = 1.0 + low_boost * (centre_hz < LOW_HZ)
        self.group = np.clip(np.floor(np.log2(centre_hz / GROUP_FMIN) * 3), 0, N_GROUPS - 1).astype(np.int64)
        self.frame = np.zeros(win, np.float64)
        self.spec = np.zeros(win // 2 + 1, np.complex128)
        self.mag = np.zeros(win // 2 + 1, np.float64)
        self.cur = np.zeros(n_bands, np.float64)
        self.prev = np.zeros(n_bands, np.float64)
        self.bdiff = np.zeros(n_bands, np.float64)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(frames, groups) network inputs of a whole clip (frame ``k`` ends at sample ``(k + 1) * hop``);
        starts from silence and leaves ``prev`` at the clip's last frame. Not for live use."""
        out = np.zeros((len(audio) // self.hop, N_GROUPS), np.float64)
        self.prev[:] = 0.0
        band_features(audio, self.hop, self.window, self.frame, self.spec, self.mag, self.b_start, self.b_len,
                      self.b_w, self.b_gain, self.cur, self.prev, self.bdiff, self.max_filter, self.group, out)
        return out
