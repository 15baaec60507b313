"""The streaming pitch and loudness tracker: f0 (Hz), voicing probability, A-weighted loudness (dB).

:class:`PitchTracker` is the streaming core, usable outside the graph (the
pitch listener node, the harmonizer and the models' feature extractors run it)::

    tracker = PitchTracker(48000)
    frames = tracker.process(block)   # any block length; per-hop arrays
    frames.time_s, frames.f0_hz, frames.voicing, frames.loudness_db

It is causal: each hop (2 ms) is analysed from audio already received, with a
short window (see :data:`WINDOW_MS`), so a result emitted live at time t
describes the signal around ``t - DELAY_S``; ``time_s`` is stamped that way.
Given ``head`` (the weights of the small learned head in ``models/pitch``, see
its CARD.md: ``cadenza.models.pitch.model.numba_weights()``), the head chooses
the f0 and the voicing from YIN's difference functions; without it, YIN's
hand-made rules do. ``cadenza pitch`` and the node (``learned = true``, its default) use the head.
The numba kernels are in :mod:`cadenza.engine.dsp.pitch_kernels`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import signal

from cadenza.engine.dsp import pitch_kernels as K

INTERNAL_RATE = 16000  # Hz, target rate of the coarse period search
HOP_MS = 2.0  # analysis hop, ms
WINDOW_MS = 6.0  # analysis window, ms
FMIN_HZ = 55.0
FMAX_HZ = 1600.0
DELAY_S = 0.006  # the listener's fixed delay (s): a row emitted at t describes t - DELAY_S

DEFAULTS = {  # tuned on the training part (110 clips, 5 conditions) by `python -m bench.pitch --tune`
    "threshold": 0.2,  # CMNDF first-dip threshold
    "voicing_center": 0.20,  # full-rate dip depth nd with voicing probability 0.5
    "voicing_slope": 0.08,
    "voicing_hysteresis": 0.0,
    "gate_db": -60.0,  # window level (dBFS) below which nothing is voiced
    "octave_ratio": 0.5,  # drop an octave when nd(2 tau) < ratio * nd(tau) ...
    "octave_margin": 0.015,  # ... and nd(2 tau) < nd(tau) - margin (nd: full-rate dip depth)
    "cmndf_weight": 0.8,  # voicing depth = max(nd, weight * CMNDF at the pick)
    "near_best": 0.1,  # the first dip must also be within this of the deepest
    "stick": 0.05,  # nd bonus of staying near the previous voiced pitch
}
# The settings the learned voices' weights were trained under (the defaults before the issue-14 re-tune):
# the neural vocoder and the DDSP decoder read f0 and voicing as inputs, so their feature paths and live
# nodes keep these until they are retrained; the re-tuned voicing reads later and differently. Spelled out
# in full, not as changes to DEFAULTS, so that a later re-tune of DEFAULTS cannot move them.
MODEL_INPUT_SETTINGS = {
    "threshold": 0.2, "voicing_center": 0.40, "voicing_slope": 0.08, "voicing_hysteresis": 0.05, "gate_db": -60.0,
    "octave_ratio": 0.5, "octave_margin": 0.015, "cmndf_weight": 0.5, "near_best": 0.1, "stick": 0.05,
}


class PitchFrames(NamedTuple):
    """Per-hop results. ``time_s``: emission time minus ``DELAY_S`` (s); ``f0_hz``: best
    guess, also while unvoiced (Hz); ``voicing``: probability 0..1; ``loudness_db``: A-weighted dB."""

    time_s: np.ndarray
    f0_hz: np.ndarray
    voicing: np.ndarray
    loudness_db: np.ndarray

    @property
    def voiced(self) -> np.ndarray:
        return self.voicing >= 0.5


def a_weighting_sos(sample_rate: float) -> np.ndarray:
    """IEC 61672 A-weighting as a digital SOS (bilinear transform), 0 dB at 1 kHz."""
    poles = -2 * np.pi * np.array([20.598997, 20.598997, 107.65265, 737.86223, 12194.217, 12194.217])
    z, p, k = signal.bilinear_zpk(np.zeros(4), poles, 1.0, sample_rate)
    sos = signal.zpk2sos(z, p, k)
    _, h = signal.sosfreqz(sos, worN=[1000.0], fs=sample_rate)
    sos[0, :3] /= abs(h[0])
    return sos


def pitch_path_sos(sample_rate: float, internal_rate: float) -> np.ndarray:
    """High-pass (40 Hz) + anti-alias low-pass (0.4 × the internal rate) before decimation."""
    hp = signal.butter(2, 40.0, "highpass", fs=sample_rate, output="sos")
    lp = signal.butter(8, 0.4 * internal_rate, "lowpass", fs=sample_rate, output="sos")
    return np.ascontiguousarray(np.vstack([hp, lp]))


class PitchTracker:
    """Causal f0 / voicing / loudness tracker for mono audio at ``sample_rate`` Hz.

    ``process(block)`` takes float audio of any length and returns the hops
    completed in it; ``process_into`` is the allocation-free path the node uses.
    State lives in the object; ``reset()`` clears it.
    """

    def __init__(self, sample_rate: int, fmin: float = FMIN_HZ, fmax: float = FMAX_HZ,
                 window_ms: float = WINDOW_MS, head: tuple | None = None, features: bool = False, **settings):
        """``head``: the learned head's numba weights (``cadenza.models.pitch.model.numba_weights()``),
        which then decides f0 and voicing (its bins span 55-1585 Hz, so it needs ``fmin`` >= 55 and
        ``fmax`` <= 1600); None: YIN's rules. ``features``: also compute the head's inputs
        (:meth:`head_features`)."""
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown tracker setting(s): {', '.join(sorted(unknown))}")
        if not 8000 <= sample_rate <= 192000:
            raise ValueError(f"sample rate {sample_rate} Hz: allowed 8000..192000")
        if not 30.0 <= fmin < fmax <= 4000.0:
            raise ValueError(f"fmin {fmin} / fmax {fmax} Hz: allowed 30 <= fmin < fmax <= 4000")
        self.sample_rate = int(sample_rate)
        self.settings = DEFAULTS | settings
        dec = max(1, round(sample_rate / INTERNAL_RATE))
        low_rate = sample_rate / dec
        self.hop = dec * max(1, round(HOP_MS * 1e-3 * low_rate))  # input samples
        win = max(8, round(window_ms * 1e-3 * low_rate))
        tau_min = max(2, math.floor(low_rate / fmax))
        tau_max = math.ceil(low_rate / fmin)
        learned = head is not None
        if learned and not (fmin >= K.HEAD_FMIN_HZ - 1e-9 and fmax <= FMAX_HZ):
            raise ValueError(f"fmin {fmin} / fmax {fmax} Hz: the learned head covers {K.HEAD_FMIN_HZ:g}.."
                             f"{FMAX_HZ:g} Hz (run without it, on YIN's rules, for a wider range)")
        bins = head_bins(low_rate)
        lag_max = max(tau_max, int(bins[2][0]) + 1) if learned or features else tau_max
        s = self.settings
        cfg = np.zeros(K.N_CONFIG, np.float64)
        cfg[K.C_DEC], cfg[K.C_HOP], cfg[K.C_WIN] = dec, self.hop, win
        cfg[K.C_TAU_MIN], cfg[K.C_TAU_MAX] = tau_min, tau_max
        cfg[K.C_THRESH] = s["threshold"]
        cfg[K.C_V_CENTER], cfg[K.C_V_SLOPE] = s["voicing_center"], s["voicing_slope"]
        cfg[K.C_V_HYST], cfg[K.C_GATE_DB] = s["voicing_hysteresis"], s["gate_db"]
        cfg[K.C_OCT_RATIO], cfg[K.C_OCT_MARGIN] = s["octave_ratio"], s["octave_margin"]
        cfg[K.C_STICK], cfg[K.C_NEAR_BEST] = s["stick"], s["near_best"]
        cfg[K.C_CMNDF_WEIGHT] = s["cmndf_weight"]
        cfg[K.C_LOUD_WIN] = win * dec
        cfg[K.C_SR] = sample_rate
        cfg[K.C_HEAD], cfg[K.C_FEATURES] = float(learned), float(learned or features)
        cfg[K.C_LAG_MAX], cfg[K.C_LOW_RATE] = lag_max, low_rate
        freqs = head_freqs()
        allowed = np.flatnonzero((freqs >= fmin * 2 ** (-1 / 24)) & (freqs <= fmax * 2 ** (1 / 24)))
        cfg[K.C_FMIN_BIN], cfg[K.C_FMAX_BIN] = allowed[0], allowed[-1]
        self.cfg = cfg
        self.head = head_arrays(head if learned else NO_HEAD, bins, lag_max)
        self.sos_pitch = pitch_path_sos(sample_rate, low_rate)
        self.sos_aw = a_weighting_sos(sample_rate)
        self.z_pitch = np.zeros((self.sos_pitch.shape[0], 2))
        self.z_aw = np.zeros((self.sos_aw.shape[0], 2))
        self.lo = np.zeros(2 * (max(win, K.LONG_HOPS * (self.hop // dec)) + lag_max + 8))
        self.hi = np.zeros(2 * (win * dec + (lag_max + 3) * dec + 8))
        self.ld = np.zeros(2 * (win * dec + 1))
        self.d = np.zeros(lag_max + 3)
        self.c = np.zeros(lag_max + 3)
        self.r = np.zeros(2 * dec + 4)
        self.st = np.zeros(K.N_STATE)
        self.ist = np.zeros(K.N_ISTATE, np.int64)
        self.delay_s = DELAY_S
        self._hops = np.zeros((4, 0))
        self._pub = np.zeros((4, 0))
        self._no_features = np.zeros((K.N_INPUTS, 0), np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget all audio heard so far."""
        for arr in (self.z_pitch, self.z_aw, self.lo, self.hi, self.ld, self.st, self.ist, *self.head[11:]):
            arr[...] = 0
        self.st[K.S_LOUD] = self.st[K.S_PEAK_DB] = K.LOUD_FLOOR_DB

    def buffers(self, max_block: int) -> tuple[np.ndarray, np.ndarray]:
        """Preallocated (hops, per-sample) outputs for blocks up to ``max_block`` frames."""
        return np.zeros((4, max_block // self.hop + 2)), np.zeros((4, max_block))

    def process_into(self, block: np.ndarray, hops_out: np.ndarray, pub: np.ndarray,
                     features_out: np.ndarray | None = None) -> int:
        """Real-time path: fill ``hops_out`` / ``pub`` (see :func:`pitch_kernels.track`); returns hops.
        ``features_out`` (N_INPUTS, hops), when given, receives the head's inputs per hop."""
        return K.track(block, self.cfg, self.st, self.ist, self.sos_pitch, self.z_pitch,
                       self.sos_aw, self.z_aw, self.lo, self.hi, self.ld, self.d, self.c, self.r,
                       self.head, hops_out, pub, self._no_features if features_out is None else features_out)

    def process(self, block) -> PitchFrames:
        """Stream one block (float, mono) and return the hops completed in it."""
        block = np.ascontiguousarray(block, np.float32).reshape(-1)
        if self._pub.shape[1] < block.shape[0]:
            self._hops, self._pub = self.buffers(block.shape[0])
        n = self.process_into(block, self._hops, self._pub)
        h = self._hops[:, :n]
        return PitchFrames(h[3] / self.sample_rate - self.delay_s, h[0].copy(), h[1].copy(), h[2].copy())

    def process_file(self, audio: np.ndarray, block: int = 128) -> PitchFrames:
        """Run a whole mono signal through the streaming path in ``block``-frame pieces."""
        parts = [self.process(audio[i:i + block]) for i in range(0, len(audio), block)]
        return PitchFrames(*(np.concatenate(col) for col in zip(*parts)))

    def head_features(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The head's inputs per hop of a whole mono signal, (hops, N_INPUTS) float32, and each
        hop's time stamp (s, as :attr:`PitchFrames.time_s`). Needs ``features=True`` or a ``head``."""
        if not self.cfg[K.C_FEATURES]:
            raise ValueError("head_features needs a tracker made with features=True")
        x = np.ascontiguousarray(audio, np.float32).reshape(-1)
        hops, pub = self.buffers(x.shape[0])
        feats = np.zeros((K.N_INPUTS, hops.shape[1]), np.float32)
        n = self.process_into(x, hops, pub, feats)
        return np.ascontiguousarray(feats[:, :n].T), hops[3, :n] / self.sample_rate - self.delay_s


def head_freqs() -> np.ndarray:
    """(N_BINS,) centre frequency of each of the head's log-frequency bins, Hz."""
    return K.HEAD_FMIN_HZ * 2.0 ** (np.arange(K.N_BINS) / K.BINS_PER_OCTAVE)


def head_bins(low_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per log-frequency bin of the head: its lag (low-rate samples, float), and the first and last
    integer lags within half a bin of it (first > last where none is)."""
    tau = low_rate / head_freqs()
    half = 2.0 ** (0.5 / K.BINS_PER_OCTAVE)
    return tau, np.ceil(tau / half).astype(np.int64), np.floor(tau * half).astype(np.int64)


NO_HEAD = tuple(np.zeros((1, 1) if k in (0, 2, 4, 6) else 1, np.float32) for k in range(8))


def head_arrays(weights: tuple, bins: tuple, lag_max: int) -> tuple:
    """The head's kernel tuple: weights (8 arrays), bins (3), the long window's partial-sum ring,
    its difference function and CMNDF, and the net's input, projection, state, gates and logits."""
    hidden = weights[1].shape[0]
    state = (np.zeros((K.LONG_HOPS, lag_max + 3)), np.zeros(lag_max + 3), np.zeros(lag_max + 3),
             np.zeros(K.N_INPUTS, np.float32), np.zeros(hidden, np.float32), np.zeros(weights[4].shape[1], np.float32),
             np.zeros(3 * weights[4].shape[1], np.float32), np.zeros(3 * weights[4].shape[1], np.float32),
             np.zeros(weights[6].shape[0], np.float32))
    return (*weights, *bins, *state)
