"""Numba kernels of the beat tracker's bar inference: which beat is the downbeat, where in the bar we are.

Causal and beat-synchronous, on top of :mod:`cadenza.instruments.listeners.beat_kernels`.
Every novelty frame goes into a short history ring (``hist``, one row per frame: the
audio time it stands for in samples, its low-band flux below ``onset.LOW_HZ``, its whole
flux, the onset network's downbeat activation, then its log band magnitudes). Each emitted beat waits in a small queue until the
audio ``EVAL_AFTER`` of a period after it has been heard; then its accent is scored:

- ``low``: the strongest low-band flux within ``ACCENT_WIN`` of a period around the beat
  (kick drum, bass note);
- ``flux``: the strongest whole-band flux there (a harder hit);
- ``down``: the strongest downbeat activation of the onset network there (0 without one);
- ``change``: how much the sustained spectrum after the beat differs from the one before
  it (mean absolute difference of the mean log band magnitudes over the body of the beat
  after, ``BODY_AFTER``, and of the beat before, ``BODY_BEFORE``): a chord change;

each divided by its running mean over beats, and summed with weights ``W_*`` (chosen on the
bench's tune split: ``SLOT_KEEP``, ``SWITCH_MARGIN`` and the whole hit's small weight on 18 of
its clips before the network had a downbeat output; then ``W_CHANGE`` and ``W_DOWN`` on all 36,
mean downbeat F 0.672 — the network's activation alone gave 0.670, the others without it 0.636). The accent of beat ``n`` updates
slot ``n mod M`` of a leaky per-slot mean (``acc``, weights ``accw``) for every bar length
``M`` of 2 .. ``MAX_M`` beats. The downbeat slot of ``M`` is its strongest slot. With
``beats_per_bar`` 0 the bar length is the one of ``AUTO_M`` (2, 3, 4) whose strongest slot
stands out most from its others (relative contrast; a new one must beat the held one by
``SWITCH_MARGIN``); otherwise it is fixed. A beat is a downbeat when its index falls on the
downbeat slot, once ``2 M`` beats have been scored.

All state lives in preallocated arrays: ``bar`` (``B_*`` indices), ``hist``, ``pend``
(``P_*`` rows, one column per queued beat), ``acc``/``accw`` (rows: bar length, columns:
slot). Nothing here allocates.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_M = 8  # longest bar a fixed beats_per_bar may name, beats
AUTO_M = (2, 3, 4)  # bar lengths chosen among when beats_per_bar is 0
N_PEND = 8  # beats waiting to be scored
H_TIME, H_LOW, H_FLUX, H_DOWN, H_BANDS = 0, 1, 2, 3, 4  # columns of a history row (bands from H_BANDS on)
P_TIME, P_INDEX, P_PERIOD = range(3)  # rows of the queue: beat sample, beat index, period (samples)
B_HPOS, B_NPEND, B_MU_LOW, B_MU_FLUX, B_MU_CHANGE, B_M, B_SLOT, B_CONTRAST, B_SCORED, B_BARS, B_MU_DOWN = range(11)
N_BAR = 11

ACCENT_WIN = 0.1  # a beat's hit: frames within this fraction of a period of it
BODY_AFTER = (0.2, 0.9)  # the sustained part of the beat after it, fractions of a period
BODY_BEFORE = (-0.8, -0.1)  # ... and of the beat before it
EVAL_AFTER = BODY_AFTER[1]  # a beat is scored once the audio this far after it is in
MU_KEEP = 0.9  # running mean of each accent feature, per beat
SLOT_KEEP = 0.85  # leaky mean of a bar slot's accent, per visit
W_LOW, W_FLUX, W_CHANGE, W_DOWN = 1.0, 0.25, 0.5, 2.0  # weights of the accent's features
SWITCH_MARGIN = 1.3  # a bar length replaces the held one when its contrast is this many times higher
FLOOR = 1e-3  # smallest mean a feature or slot is divided by (log band magnitudes are ~0.1 .. 3)


def history_rows(max_period_frames: int) -> int:
    """Rows of the history ring: the frames from a beat before a queued beat to its scoring, and some."""
    return int(np.ceil((EVAL_AFTER - BODY_BEFORE[0]) * max_period_frames)) + 16


def new_state(max_period_frames: int, n_bands: int):
    """Preallocated ``bar``, ``hist``, ``pend``, ``acc``, ``accw`` and two band scratch rows."""
    return (np.zeros(N_BAR, np.float64), np.zeros((history_rows(max_period_frames), H_BANDS + n_bands), np.float64),
            np.zeros((3, N_PEND), np.float64), np.zeros((MAX_M + 1, MAX_M), np.float64),
            np.zeros((MAX_M + 1, MAX_M), np.float64), np.zeros(n_bands, np.float64), np.zeros(n_bands, np.float64))


@njit(nogil=True, cache=True)
def bar_reset(bar, hist, pend, acc, accw):
    """Forget every beat and frame: no bar length known (``bar[B_M]`` 0)."""
    bar[:] = 0.0
    hist[:, :] = 0.0
    hist[:, H_TIME] = -1e18
    pend[:, :] = 0.0
    acc[:, :] = 0.0
    accw[:, :] = 0.0


@njit(nogil=True, cache=True)
def bar_frame(bar, hist, e, low, flux, down, cur):
    """Keep one frame: audio time ``e`` (samples), low-band and whole flux, downbeat activation,
    log band magnitudes ``cur``."""
    row = int(bar[B_HPOS])
    hist[row, H_TIME] = e
    hist[row, H_LOW] = low
    hist[row, H_FLUX] = flux
    hist[row, H_DOWN] = down
    for b in range(cur.shape[0]):
        hist[row, H_BANDS + b] = cur[b]
    bar[B_HPOS] = (row + 1) % hist.shape[0]


@njit(nogil=True, cache=True)
def bar_on_beat(bar, pend, t_beat, index, period):
    """A beat was emitted at sample ``t_beat`` with beat index ``index``: queue it for scoring and
    return the bar number (≥ 0) when it is a downbeat, else -1."""
    k = int(bar[B_NPEND])
    if k == N_PEND:  # full (never, at sane tempi): drop the oldest
        for c in range(N_PEND - 1):
            for r in range(3):
                pend[r, c] = pend[r, c + 1]
        k -= 1
    pend[P_TIME, k] = t_beat
    pend[P_INDEX, k] = index
    pend[P_PERIOD, k] = period
    bar[B_NPEND] = k + 1
    m = int(bar[B_M])
    if m == 0 or int(index) % m != int(bar[B_SLOT]):
        return -1
    n = int(bar[B_BARS])
    bar[B_BARS] = n + 1
    return n


@njit(nogil=True, cache=True)
def _body_mean(hist, lo, hi, out):
    """Mean log band magnitudes of the frames standing for samples ``lo`` .. ``hi``; the frame count."""
    out[:] = 0.0
    count = 0
    for r in range(hist.shape[0]):
        t = hist[r, H_TIME]
        if lo <= t < hi:
            count += 1
            for b in range(out.shape[0]):
                out[b] += hist[r, H_BANDS + b]
    if count > 0:
        for b in range(out.shape[0]):
            out[b] /= count
    return count


@njit(nogil=True, cache=True)
def _accent(bar, hist, t, period, after, before):
    """The accent of the beat at sample ``t``: low-band hit, whole hit, downbeat activation and
    spectral change, each over its running mean (updated here), weighted and summed."""
    low = 0.0
    flux = 0.0
    down = 0.0
    win = ACCENT_WIN * period
    for r in range(hist.shape[0]):
        if abs(hist[r, H_TIME] - t) <= win:
            low = max(low, hist[r, H_LOW])
            flux = max(flux, hist[r, H_FLUX])
            down = max(down, hist[r, H_DOWN])
    change = 0.0
    if (_body_mean(hist, t + BODY_AFTER[0] * period, t + BODY_AFTER[1] * period, after) > 0
            and _body_mean(hist, t + BODY_BEFORE[0] * period, t + BODY_BEFORE[1] * period, before) > 0):
        for b in range(after.shape[0]):
            change += abs(after[b] - before[b])
        change /= after.shape[0]
    total = 0.0
    unbias = 1.0 - MU_KEEP ** (bar[B_SCORED] + 1.0)  # the running means start from 0
    for idx, v, w in ((B_MU_LOW, low, W_LOW), (B_MU_FLUX, flux, W_FLUX), (B_MU_CHANGE, change, W_CHANGE),
                      (B_MU_DOWN, down, W_DOWN)):
        bar[idx] = MU_KEEP * bar[idx] + (1.0 - MU_KEEP) * v
        total += w * v / max(bar[idx] / unbias, FLOOR)
    return total


@njit(nogil=True, cache=True)
def _strongest(acc, accw, m):
    """(slot, contrast) of bar length ``m``: its strongest slot, and how far that slot's mean accent
    stands above the mean of the others, relative to the mean of all."""
    best = 0
    best_v = -1.0
    total = 0.0
    for k in range(m):
        v = acc[m, k] / max(accw[m, k], FLOOR)
        total += v
        if v > best_v:
            best_v = v
            best = k
    others = (total - best_v) / (m - 1)
    return best, (best_v - others) / max(total / m, FLOOR)


@njit(nogil=True, cache=True)
def bar_score(bar, hist, pend, acc, accw, e_now, beats_per_bar, after, before):
    """Score the queued beats whose body has been heard by audio time ``e_now`` (samples), then
    choose the bar length (``beats_per_bar``, or the clearest of ``AUTO_M`` when 0) and its downbeat slot."""
    while bar[B_NPEND] > 0 and e_now >= pend[P_TIME, 0] + EVAL_AFTER * pend[P_PERIOD, 0]:
        a = _accent(bar, hist, pend[P_TIME, 0], pend[P_PERIOD, 0], after, before)
        index = int(pend[P_INDEX, 0])
        for m in range(2, MAX_M + 1):
            k = index % m
            acc[m, k] = SLOT_KEEP * acc[m, k] + (1.0 - SLOT_KEEP) * a
            accw[m, k] = SLOT_KEEP * accw[m, k] + (1.0 - SLOT_KEEP)
        bar[B_SCORED] += 1
        n = int(bar[B_NPEND]) - 1
        for c in range(n):
            for r in range(3):
                pend[r, c] = pend[r, c + 1]
        bar[B_NPEND] = n
        held = int(bar[B_M])
        if beats_per_bar > 0:
            m_new = beats_per_bar
        else:
            m_new = held
            best_c = -1e9
            if held > 0:
                best_c = _strongest(acc, accw, held)[1] * SWITCH_MARGIN
            for m in AUTO_M:
                c = _strongest(acc, accw, m)[1]
                if c > best_c:
                    best_c = c
                    m_new = m
        if bar[B_SCORED] < 2 * m_new:
            continue
        slot, contrast = _strongest(acc, accw, m_new)
        bar[B_M] = m_new
        bar[B_SLOT] = slot
        bar[B_CONTRAST] = contrast


@njit(nogil=True, cache=True)
def fill_bar_phase(bar, beats_done, active, phase, bar_phase_out):
    """Position in the bar, 0 at the downbeat .. 1, per frame from the beat ``phase`` (0..1) and the
    number of beats emitted so far; 0 while the bar length is unknown or the tracker is not ``active``."""
    m = int(bar[B_M])
    known = m > 0 and active
    pos = (beats_done - 1 - int(bar[B_SLOT])) % m if known else 0
    for k in range(phase.shape[0]):
        bar_phase_out[k] = (pos + phase[k]) / m if known else 0.0
