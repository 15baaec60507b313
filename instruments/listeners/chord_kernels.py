"""Numba kernels and tables of the streaming chord and key listener.

The input is low-passed (a linear-phase FIR) and decimated by ``decimate``
(a power of two: 4 at 44.1 / 48 kHz), so the FFT is a quarter the size; the
semitone bands stop at 2 kHz, far below the lowered Nyquist. Per hop (``hop``
decimated samples), on the newest ``n`` decimated samples (a power of two,
about 0.17 s):

1. **Log-frequency front end.** A Hann-windowed real FFT (rocket-fft, into a
   preallocated spectrum); each spectral peak (its frequency interpolated
   from the log magnitudes of its bin and neighbours) adds its magnitude to
   the semitone band nearest it (MIDI ``P_LO`` .. ``P_HI - 1``), as essentia's
   HPCP does; the bands normalised by the loudest and compressed with
   ``log(1 + gamma * x)``.
2. **Chroma.** The bands folded onto 12 pitch classes twice: a treble chroma
   (MIDI ``TREBLE_LO`` and up) and a bass chroma (below ``BASS_HI``), each of
   unit norm, and each also smoothed over hops (``smooth``: the weight kept of
   the previous value); then the treble and bass chroma of ``lags`` hops ago
   (kept in a ring). These ``4 + 2 * len(lags)`` chroma vectors are the
   features ``x[f, c]``.
3. **Chords.** A small learned network, shared by the 12 roots: for root ``r``
   the features rolled to it, ``u[f * 12 + c] = x[f, (c + r) % 12]`` (``c``
   counts semitones above the root), go through one ReLU layer
   (``w1``, ``b1``) to a major and a minor score (``w2``, plus ``bias[q]``);
   no-chord scores ``bias[2]`` — a softmax classifier trained on the bench's
   train renders (``python -m bench.chords --train``). No-chord wins outright
   while the input is below ``gate_db``. A forward pass of a 25-state HMM (stay probability
   ``stay``, a switch equally likely to any other state; emission
   ``exp(beta * score)``, the classifier's probability at ``beta`` = 1) gives
   the posterior; the chord is its argmax, the confidence its value.
4. **Key.** A leaky histogram of the chords heard (one count per tonal hop to
   the current chord, time constant ``key_tau_s``) scored against each of the
   24 keys' chord log-probabilities ``key_lp[k, j] = log P(chord j | key k)``
   (learned with the classifier): a key's score is the mean log-probability of
   the chords heard. The key changes when another key beats it by
   ``key_margin``; no key until ``KEY_MIN_S`` of tonal input.

Zero lookahead: a label emitted at sample ``S`` is computed from samples up
to ``S``. Everything lives in preallocated arrays; nothing here allocates.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from cadenza.engine.dsp.onset import rfft_mag
from cadenza.engine.events import Kind

P_LO, P_HI = 36, 96  # semitone bands, MIDI (C2 .. B6)
TREBLE_LO = 48  # treble chroma from C3 up
BASS_HI = 60  # bass chroma below C4
N_BASE = 4  # chroma vectors per hop before the lagged ones: treble, bass, smoothed treble, smoothed bass
N_CHORDS = 24  # 12 major, then 12 minor triads; state 24 is no chord
NO_CHORD_STATE = 24
N_KEYS = 24  # tonic + 12 x mode (0 major, 1 minor)
KEY_MIN_S = 1.0  # tonal input needed before a key is reported, s
KEY_KAPPA = 4.0  # key confidence: softmax of KEY_KAPPA x the keys' mean chord log-probability
SILENT = -1e3  # a chord's score while the input is below the gate

# indices into the float64 config array ``cfg``
C_HOP, C_GATE, C_GAMMA, C_SMOOTH, C_BETA, C_STAY, C_KEY_COEF, C_KEY_MARGIN, C_KEY_MIN_HOPS, C_DECIMATE, \
    C_BIN_TO_MIDI = range(11)
N_CFG = 11

# indices into the float64 state array ``st``
S_WPOS, S_HOPC, S_CHORD, S_CONF, S_KEY, S_KEY_CONF, S_TONAL_HOPS, S_HPOS, S_PHASE, S_PAST = range(10)
N_ST = 10
FIR_TAPS = 64  # the decimation low-pass

EV_CHORD = Kind.CHORD
EV_KEY = Kind.KEY


# --------------------------------------------------------------------------- tables


def decimation(sr: float) -> tuple[int, np.ndarray]:
    """The decimation factor at ``sr`` (Hz; a power of two leaving at least 11 kHz) and its low-pass FIR,
    cut at 0.8 of the new Nyquist."""
    from scipy.signal import firwin

    factor = 1 << max(0, int(math.floor(math.log2(sr / 11000.0))))
    return factor, firwin(FIR_TAPS, 0.8 / factor)


def key_chord_logp(mode_logp: np.ndarray) -> np.ndarray:
    """(24 keys, 24 chords) ``log P(chord | key)`` from (2 modes, 24) log-probabilities of the chords
    relative to the tonic (column ``q * 12 + i``: quality ``q``, root ``i`` semitones above the tonic)."""
    out = np.zeros((N_KEYS, N_CHORDS))
    for k in range(N_KEYS):
        tonic, mode = k % 12, k // 12
        for j in range(N_CHORDS):
            out[k, j] = mode_logp[mode, (j // 12) * 12 + (j % 12 - tonic) % 12]
    return out


# --------------------------------------------------------------------------- per hop


@njit(nogil=True, cache=True)
def _peaks_to_semitones(mag, bin_hz_log, semi):
    """Each spectral peak's magnitude into the semitone band nearest its interpolated frequency.

    ``bin_hz_log`` is log2 of one bin's width in Hz; a peak at fractional bin ``k + d`` (parabolic
    interpolation on the log magnitudes) has MIDI ``69 + 12 * (log2(k + d) + bin_hz_log - log2(440))``.
    """
    semi[:] = 0.0
    nb = semi.shape[0]
    k_lo = max(2, int(440.0 * 2.0 ** ((P_LO - 0.5 - 69.0) / 12.0 - bin_hz_log)))
    k_hi = min(mag.shape[0] - 2, int(440.0 * 2.0 ** ((P_HI - 0.5 - 69.0) / 12.0 - bin_hz_log)) + 1)
    for k in range(k_lo, k_hi + 1):
        m = mag[k]
        if m <= 0.0 or m <= mag[k - 1] or m < mag[k + 1]:
            continue
        a = math.log(mag[k - 1] + 1e-12)
        b = math.log(m)
        c = math.log(mag[k + 1] + 1e-12)
        den = a - 2.0 * b + c
        d = 0.5 * (a - c) / den if den < 0.0 else 0.0
        midi = 69.0 + 12.0 * (math.log2(k + d) + bin_hz_log - math.log2(440.0))
        band = int(math.floor(midi + 0.5)) - P_LO
        if 0 <= band < nb:
            semi[band] += math.exp(b - 0.25 * (a - c) * d)


@njit(nogil=True, cache=True)
def _fold(semi, lo, hi, out):
    """Pitch classes of the semitone bands ``lo <= MIDI < hi`` into ``out`` (12,), scaled to unit norm;
    returns the norm before scaling."""
    out[:] = 0.0
    for b in range(max(lo - P_LO, 0), min(hi - P_LO, semi.shape[0])):
        out[(b + P_LO) % 12] += semi[b]
    norm = 0.0
    for k in range(12):
        norm += out[k] * out[k]
    norm = math.sqrt(norm)
    for k in range(12):
        out[k] = out[k] / norm if norm > 0.0 else 0.0
    return norm


@njit(nogil=True, cache=True)
def analyse_hop(cfg, st, ring, window, frame, spec, mag, semi, x, past, lags, u, hid, w1, b1, w2, bias, score, post,
                key_acc, key_lp):
    """One hop: front end, the features ``x`` (4 + 2 * len(lags), 12), chord HMM step and key update.
    ``past`` (max lag + 1, 2, 12) is the ring of treble and bass chroma. Updates ``st``; returns True when tonal."""
    n = window.shape[0]
    wpos = int(st[S_WPOS])
    power = 0.0
    wsum = 0.0
    for i in range(n):
        v = ring[(wpos + i) % n]
        frame[i] = v * window[i]
        power += frame[i] * frame[i]
        wsum += window[i] * window[i]
    tonal = power / wsum > cfg[C_GATE]
    if tonal:
        rfft_mag(frame, spec, mag)
        _peaks_to_semitones(mag, cfg[C_BIN_TO_MIDI], semi)
        peak = 0.0
        for b in range(semi.shape[0]):
            peak = max(peak, semi[b])
        if peak <= 0.0:
            peak = 1.0
        for b in range(semi.shape[0]):
            semi[b] = math.log(1.0 + cfg[C_GAMMA] * semi[b] / peak)
        tonal = _fold(semi, TREBLE_LO, P_HI, x[0]) > 0.0
        _fold(semi, P_LO, BASS_HI, x[1])
    if not tonal:
        x[0, :] = 0.0
        x[1, :] = 0.0
    a = cfg[C_SMOOTH]
    n_past = past.shape[0]
    pos = int(st[S_PAST])
    for c in range(12):
        x[2, c] = a * x[2, c] + (1.0 - a) * x[0, c]
        x[3, c] = a * x[3, c] + (1.0 - a) * x[1, c]
        past[pos, 0, c] = x[0, c]
        past[pos, 1, c] = x[1, c]
    for i in range(lags.shape[0]):
        then = (pos - lags[i]) % n_past
        for c in range(12):
            x[N_BASE + 2 * i, c] = past[then, 0, c]
            x[N_BASE + 2 * i + 1, c] = past[then, 1, c]
    st[S_PAST] = (pos + 1) % n_past
    _chord_step(cfg, st, x, u, hid, w1, b1, w2, bias, score, post, tonal)
    if tonal:
        _key_step(cfg, st, key_acc, key_lp, score)
    return tonal


@njit(nogil=True, cache=True)
def chord_scores(x, u, hid, w1, b1, w2, bias, score):
    """The classifier's score of each triad and of no-chord (``score``, 25) from the features ``x``;
    ``u`` (x.size,) and ``hid`` (hidden units,) are scratch."""
    nf = x.shape[0]
    for r in range(12):
        for f in range(nf):
            for c in range(12):
                u[f * 12 + c] = x[f, (c + r) % 12]
        for k in range(hid.shape[0]):
            s = b1[k]
            for d in range(u.shape[0]):
                s += w1[k, d] * u[d]
            hid[k] = s if s > 0.0 else 0.0
        for q in range(2):
            s = bias[q]
            for k in range(hid.shape[0]):
                s += w2[q, k] * hid[k]
            score[q * 12 + r] = s
    score[NO_CHORD_STATE] = bias[2]


@njit(nogil=True, cache=True)
def _chord_step(cfg, st, x, u, hid, w1, b1, w2, bias, score, post, tonal):
    """Classifier scores of the features, then one forward step of the chord HMM."""
    if tonal:
        chord_scores(x, u, hid, w1, b1, w2, bias, score)
    else:
        score[:] = SILENT
        score[NO_CHORD_STATE] = 0.0
    best = score[0]
    for j in range(NO_CHORD_STATE + 1):
        best = max(best, score[j])
    stay = cfg[C_STAY]
    switch = (1.0 - stay) / NO_CHORD_STATE
    total = 0.0
    for j in range(NO_CHORD_STATE + 1):
        post[j] = (post[j] * stay + (1.0 - post[j]) * switch) * math.exp(cfg[C_BETA] * (score[j] - best))
        total += post[j]
    top = 0
    for j in range(NO_CHORD_STATE + 1):
        post[j] /= total
        if post[j] > post[top]:
            top = j
    st[S_CHORD] = top
    st[S_CONF] = post[top]


@njit(nogil=True, cache=True)
def _key_step(cfg, st, key_acc, key_lp, score):
    """Leaky histogram of the chords heard, each key's mean chord log-probability, key change past the margin."""
    g = cfg[C_KEY_COEF]
    total = 0.0
    for j in range(N_CHORDS):
        key_acc[j] *= g
        total += key_acc[j]
    chord = int(st[S_CHORD])
    if chord < N_CHORDS:
        key_acc[chord] += 1.0
        total += 1.0
    st[S_TONAL_HOPS] += 1.0
    if total <= 0.0 or st[S_TONAL_HOPS] < cfg[C_KEY_MIN_HOPS]:
        return
    top = 0
    for k in range(N_KEYS):
        s = 0.0
        for j in range(N_CHORDS):
            s += key_lp[k, j] * key_acc[j]
        score[k] = s / total
        if score[k] > score[top]:
            top = k
    cur = int(st[S_KEY])
    if cur < 0 or score[top] > score[cur] + cfg[C_KEY_MARGIN]:
        cur = top
    z = 0.0
    for k in range(N_KEYS):
        z += math.exp(KEY_KAPPA * (score[k] - score[top]))
    st[S_KEY] = cur
    st[S_KEY_CONF] = math.exp(KEY_KAPPA * (score[cur] - score[top])) / z


# --------------------------------------------------------------------------- per block


@njit(nogil=True, cache=True)
def chord_block(audio, cfg, st, fir, hist, ring, window, frame, spec, mag, semi, x, past, lags, u, hid, w1, b1, w2,
                bias, score, post, key_acc, key_lp, out_root, out_quality, out_key, out_conf, out_key_conf,
                ev_off, ev_kind, ev_a, ev_b, ev_val):
    """Stream one block ``audio`` (frames,): per-frame controls out, CHORD / KEY events on change.

    Controls: root pitch class (-1: no chord), quality (0 major, 1 minor, -1 no chord),
    key index (tonic + 12 x mode, -1 none yet), chord confidence, key confidence.
    Events (``ev_*``, returns how many): at the frame where the hop that changed them ends.
    ``hist`` (FIR_TAPS,) holds the newest input samples for the decimation filter ``fir``.
    """
    n = ring.shape[0]
    taps = hist.shape[0]
    hop = int(cfg[C_HOP])
    factor = int(cfg[C_DECIMATE])
    n_ev = 0
    for i in range(audio.shape[0]):
        hpos = int(st[S_HPOS])
        hist[hpos] = audio[i]
        st[S_HPOS] = (hpos + 1) % taps
        st[S_PHASE] += 1.0
        if st[S_PHASE] < factor:
            _write_controls(st, i, out_root, out_quality, out_key, out_conf, out_key_conf)
            continue
        st[S_PHASE] = 0.0
        y = 0.0
        for k in range(taps):
            y += fir[k] * hist[(hpos - k) % taps]
        wpos = int(st[S_WPOS])
        ring[wpos] = y
        st[S_WPOS] = (wpos + 1) % n
        st[S_HOPC] += 1.0
        if st[S_HOPC] >= hop:
            st[S_HOPC] = 0.0
            chord_before = st[S_CHORD]
            key_before = st[S_KEY]
            analyse_hop(cfg, st, ring, window, frame, spec, mag, semi, x, past, lags, u, hid, w1, b1, w2, bias, score,
                        post, key_acc, key_lp)
            if st[S_CHORD] != chord_before and n_ev < ev_off.shape[0]:
                c = int(st[S_CHORD])
                ev_off[n_ev] = i
                ev_kind[n_ev] = EV_CHORD
                ev_a[n_ev] = -1 if c == NO_CHORD_STATE else c % 12
                ev_b[n_ev] = 0 if c == NO_CHORD_STATE else c // 12
                ev_val[n_ev] = st[S_CONF]
                n_ev += 1
            if st[S_KEY] != key_before and n_ev < ev_off.shape[0]:
                k = int(st[S_KEY])
                ev_off[n_ev] = i
                ev_kind[n_ev] = EV_KEY
                ev_a[n_ev] = k % 12
                ev_b[n_ev] = k // 12
                ev_val[n_ev] = st[S_KEY_CONF]
                n_ev += 1
        _write_controls(st, i, out_root, out_quality, out_key, out_conf, out_key_conf)
    return n_ev


@njit(nogil=True, cache=True, inline="always")
def _write_controls(st, i, out_root, out_quality, out_key, out_conf, out_key_conf):
    c = int(st[S_CHORD])
    out_root[i] = -1.0 if c == NO_CHORD_STATE else c % 12
    out_quality[i] = -1.0 if c == NO_CHORD_STATE else c // 12
    out_key[i] = st[S_KEY]
    out_conf[i] = st[S_CONF]
    out_key_conf[i] = st[S_KEY_CONF]
