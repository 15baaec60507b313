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
   ``log(1 + gamma * x)``; each band less the mean of its ``whiten`` neighbours
   each side (a broadband drum hit lifts every band alike, a note only its own).
2. **Chroma.** The bands folded onto 12 pitch classes twice: a treble chroma
   (MIDI ``TREBLE_LO`` and up) and a bass chroma (below ``BASS_HI``), each
   smoothed over hops (``smooth``: the weight kept of the previous value).
3. **Chords.** Cosine of the treble chroma with 24 triad templates (each chord
   tone with its first six harmonics, ``harmonic_decay`` per harmonic) plus
   ``bass_weight`` × the bass chroma's cosine with the root; no-chord scores
   the constant ``n_score``, and wins outright while the input is below
   ``gate_db``. A forward pass of a 25-state HMM (stay probability ``stay``,
   a switch equally likely to any other state; emission ``exp(beta * score)``)
   gives the posterior; the chord is its argmax, the confidence its value.
4. **Key.** A leaky sum of the normalised treble + ``key_bass_weight`` × bass
   chroma (time constant ``key_tau_s``) correlated with the 24 rotated
   Krumhansl–Kessler key profiles; the key changes when another key beats it by
   ``key_margin`` in correlation. No key until ``KEY_MIN_S`` of tonal input.

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
N_CHORDS = 24  # 12 major, then 12 minor triads; state 24 is no chord
NO_CHORD_STATE = 24
KEY_MIN_S = 1.0  # tonal input needed before a key is reported, s
KEY_KAPPA = 20.0  # key confidence: softmax of KEY_KAPPA x correlation

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

# indices into the float64 config array ``cfg``
C_HOP, C_GATE, C_GAMMA, C_WHITEN, C_SMOOTH, C_BASS_W, C_BETA, C_STAY, C_N_SCORE, C_KEY_COEF, \
    C_KEY_BASS_W, C_KEY_MARGIN, C_KEY_MIN_HOPS, C_DECIMATE, C_BIN_TO_MIDI = range(15)
N_CFG = 15

# indices into the float64 state array ``st``
S_WPOS, S_HOPC, S_CHORD, S_CONF, S_KEY, S_KEY_CONF, S_TONAL_HOPS, S_HPOS, S_PHASE = range(9)
N_ST = 9
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


def chord_templates(harmonic_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm treble templates (24, 12) and bass templates (24, 12) of the 24 triads.

    Row ``q * 12 + r`` is root ``r`` of quality ``q`` (0 major, 1 minor). A chord tone adds its
    harmonics 1..6 (at 0, 12, 19, 24, 28, 31 semitones) weighted ``harmonic_decay ** (h - 1)``.
    """
    tone = np.zeros(12)
    for h, offset in enumerate((0, 12, 19, 24, 28, 31)):
        tone[offset % 12] += harmonic_decay ** h
    treble = np.zeros((N_CHORDS, 12))
    bass = np.zeros((N_CHORDS, 12))
    for q, third in enumerate((4, 3)):
        for r in range(12):
            for interval in (0, third, 7):
                treble[q * 12 + r] += np.roll(tone, r + interval)
            bass[q * 12 + r, r] = 1.0
    treble /= np.linalg.norm(treble, axis=1, keepdims=True)
    return treble, bass


def key_profiles() -> np.ndarray:
    """(24, 12) zero-mean, unit-norm key profiles: row ``m * 12 + t`` is tonic ``t``, mode ``m``."""
    rows = [np.roll(profile, t) for profile in (KK_MAJOR, KK_MINOR) for t in range(12)]
    prof = np.array(rows) - np.mean(rows, axis=1, keepdims=True)
    return prof / np.linalg.norm(prof, axis=1, keepdims=True)


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
def _fold(semi, whiten, lo, hi, out):
    """Pitch classes of the whitened semitone bands ``lo <= MIDI < hi`` into ``out`` (12,); returns the L2 norm."""
    out[:] = 0.0
    nb = semi.shape[0]
    for b in range(max(lo - P_LO, 0), min(hi - P_LO, nb)):
        v = semi[b]
        if whiten > 0:
            acc = 0.0
            cnt = 0
            for d in range(-whiten, whiten + 1):
                if d != 0 and 0 <= b + d < nb:
                    acc += semi[b + d]
                    cnt += 1
            v -= acc / cnt
        if v > 0.0:
            out[(b + P_LO) % 12] += v
    norm = 0.0
    for k in range(12):
        norm += out[k] * out[k]
    return math.sqrt(norm)


@njit(nogil=True, cache=True)
def analyse_hop(cfg, st, ring, window, frame, spec, mag, semi, treble, bass,
                treble_s, bass_s, t_tpl, b_tpl, score, post, key_acc, key_prof):
    """One hop: front end, chroma, chord HMM step and key update. Updates ``st``; returns True when tonal."""
    n = window.shape[0]
    wpos = int(st[S_WPOS])
    power = 0.0
    wsum = 0.0
    for i in range(n):
        x = ring[(wpos + i) % n]
        frame[i] = x * window[i]
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
        whiten = int(cfg[C_WHITEN])
        nt = _fold(semi, whiten, TREBLE_LO, P_HI, treble)
        nbass = _fold(semi, whiten, P_LO, BASS_HI, bass)
        tonal = nt > 0.0
        for c in range(12):
            treble[c] = treble[c] / nt if nt > 0.0 else 0.0
            bass[c] = bass[c] / nbass if nbass > 0.0 else 0.0
    else:
        treble[:] = 0.0
        bass[:] = 0.0
    a = cfg[C_SMOOTH]
    for c in range(12):
        treble_s[c] = a * treble_s[c] + (1.0 - a) * treble[c]
        bass_s[c] = a * bass_s[c] + (1.0 - a) * bass[c]
    _chord_step(cfg, st, treble_s, bass_s, t_tpl, b_tpl, score, post, tonal)
    if tonal:
        _key_step(cfg, st, treble, bass, key_acc, key_prof, score)
    return tonal


@njit(nogil=True, cache=True)
def _chord_step(cfg, st, treble, bass, t_tpl, b_tpl, score, post, tonal):
    """Template scores of the smoothed chroma, then one forward step of the chord HMM."""
    nt = 0.0
    nb = 0.0
    for c in range(12):
        nt += treble[c] * treble[c]
        nb += bass[c] * bass[c]
    nt = math.sqrt(nt)
    nb = math.sqrt(nb)
    bw = cfg[C_BASS_W]
    best = cfg[C_N_SCORE] if tonal else 1.0
    score[NO_CHORD_STATE] = best
    for j in range(N_CHORDS):
        s = 0.0
        if tonal and nt > 0.0:
            dt = 0.0
            db = 0.0
            for c in range(12):
                dt += t_tpl[j, c] * treble[c]
                db += b_tpl[j, c] * bass[c]
            s = (dt / nt + (bw * db / nb if nb > 0.0 else 0.0)) / (1.0 + bw)
        score[j] = s
        best = max(best, s)
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
def _key_step(cfg, st, treble, bass, key_acc, key_prof, corr):
    """Leaky key evidence, correlation with the 24 key profiles, key change past the margin."""
    g = cfg[C_KEY_COEF]
    mean = 0.0
    for c in range(12):
        key_acc[c] = g * key_acc[c] + treble[c] + cfg[C_KEY_BASS_W] * bass[c]
        mean += key_acc[c]
    mean /= 12.0
    norm = 0.0
    for c in range(12):
        norm += (key_acc[c] - mean) ** 2
    norm = math.sqrt(norm)
    st[S_TONAL_HOPS] += 1.0
    if norm <= 0.0 or st[S_TONAL_HOPS] < cfg[C_KEY_MIN_HOPS]:
        return
    top = 0
    for j in range(24):
        r = 0.0
        for c in range(12):
            r += key_prof[j, c] * (key_acc[c] - mean)
        corr[j] = r / norm
        if corr[j] > corr[top]:
            top = j
    cur = int(st[S_KEY])
    if cur < 0 or corr[top] > corr[cur] + cfg[C_KEY_MARGIN]:
        cur = top
    total = 0.0
    for j in range(24):
        total += math.exp(KEY_KAPPA * (corr[j] - corr[top]))
    st[S_KEY] = cur
    st[S_KEY_CONF] = math.exp(KEY_KAPPA * (corr[cur] - corr[top])) / total


# --------------------------------------------------------------------------- per block


@njit(nogil=True, cache=True)
def chord_block(x, cfg, st, fir, hist, ring, window, frame, spec, mag, semi, treble, bass,
                treble_s, bass_s, t_tpl, b_tpl, score, post, key_acc, key_prof,
                out_root, out_quality, out_key, out_conf, out_key_conf, ev_off, ev_kind, ev_a, ev_b, ev_val):
    """Stream one block ``x`` (frames,): per-frame controls out, CHORD / KEY events on change.

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
    for i in range(x.shape[0]):
        hpos = int(st[S_HPOS])
        hist[hpos] = x[i]
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
            analyse_hop(cfg, st, ring, window, frame, spec, mag, semi, treble, bass,
                        treble_s, bass_s, t_tpl, b_tpl, score, post, key_acc, key_prof)
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
