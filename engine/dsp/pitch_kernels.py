"""Numba kernels of the streaming pitch and loudness tracker.

One kernel call consumes a block of mono input samples of any length. Per
input sample it runs

- the pitch path: a high-pass + anti-alias low-pass (one SOS cascade), kept
  at the full rate (for the refinement, where its smooth dips interpolate well)
  and decimated by ``dec`` into a low-rate history (for the coarse search);
- the loudness path: an A-weighting filter (SOS), squared into a history.

Every ``hop`` input samples it analyses the newest window (no lookahead):

1. the YIN difference function d(tau) at the low rate over ``W`` samples,
   its cumulative-mean-normalised form c(tau) (CMNDF);
2. a candidate dip: the first local minimum of c below ``threshold`` and
   within ``near_best`` of the deepest, or the dip near the previous voiced
   period when it is nearly as deep (continuity);
3. a refinement at the full rate (normalised difference nd on a few lags
   around the pick, parabolic interpolation), then the octave settled on
   those precise dips: of tau and 2 tau, 2 tau wins only when its dip is
   clearly deeper (weak fundamentals and strong even harmonics leave a
   shallow dip at T/2; integer-lag CMNDF is too coarse to judge high notes);
4. voicing probability from the dip depth (full-rate nd, or the coarse CMNDF
   when that is clearly worse) and the window level;
5. A-weighted mean-square loudness over the same window duration, in dB.

With the learned head on (``C_HEAD``; weights in ``models/pitch``), steps 2-4
are replaced: the CMNDF of the short window and of a long one (``LONG_HOPS``
hops, summed from per-hop partial differences so it costs one hop's worth),
each read on a log-frequency grid of ``N_BINS`` bins, plus both windows'
levels, go through a small GRU (:func:`head_step`) that gives the voicing
probability and a posterior over the bins; the f0 is the posterior's peak,
snapped to the YIN dip at the full rate when one lies within ``SNAP_CENTS``
(YIN's precision, the net's choice of octave and voicing), then moved to a
shorter period only where its dip is as deep (:func:`_subperiod`: a pure tone).

Histories are "double-written" rings: each sample is stored at ``i`` and
``i + N``, so the newest ``N`` samples are always contiguous. Per-hop cost is
fixed by the window and lag range, never by how long the tracker has run.
"""

from __future__ import annotations

import math

from numba import njit

from cadenza.engine.dsp.nn import gru_layer

# --- configuration vector (float64), indices -------------------------------------------
C_DEC = 0  # decimation factor, input samples per low-rate sample
C_HOP = 1  # hop, input samples
C_WIN = 2  # pitch window, low-rate samples
C_TAU_MIN = 3  # shortest period searched, low-rate samples (fmax)
C_TAU_MAX = 4  # longest period searched, low-rate samples (fmin)
C_THRESH = 5  # CMNDF first-dip threshold
C_V_CENTER = 6  # dip depth nd at which the voicing probability is 0.5
C_V_SLOPE = 7  # nd units per e-fold of the voicing odds
C_V_HYST = 8  # added to C_V_CENTER while voiced (hysteresis)
C_GATE_DB = 9  # window level (dBFS, mean square) below which the input counts as silence
C_OCT_RATIO = 10  # the dip at 2 tau (an octave down) wins when nd(2 tau) < nd(tau) * C_OCT_RATIO ...
C_OCT_MARGIN = 11  # ... and nd(2 tau) < nd(tau) - C_OCT_MARGIN (nd: full-rate normalised difference)
C_STICK = 12  # nd bonus of a dip within a semitone of the previous voiced period
C_LOUD_WIN = 13  # loudness window, input samples
C_SR = 14  # input sample rate, Hz
C_NEAR_BEST = 15  # the first dip must be under C_THRESH and within this of the deepest
C_CMNDF_WEIGHT = 16  # voicing depth = max(nd, C_CMNDF_WEIGHT * CMNDF at the pick)
C_HEAD = 17  # 1: the learned head decides f0 and voicing; 0: YIN's rules (steps 2-4)
C_FEATURES = 18  # 1: compute the head's inputs every hop (head on, or dumping them for training)
C_LAG_MAX = 19  # longest lag of the difference functions, low-rate samples (>= C_TAU_MAX + 1)
C_LOW_RATE = 20  # the low rate, Hz
C_FMIN_BIN = 21  # the head's lowest and highest allowed bins (the tracker's fmin .. fmax)
C_FMAX_BIN = 22
N_CONFIG = 23

# --- learned head -----------------------------------------------------------------------
HEAD_FMIN_HZ = 55.0  # centre of bin 0
BINS_PER_OCTAVE = 20  # 60 cents per bin
N_BINS = 98  # 55 .. 1585 Hz
LONG_HOPS = 12  # the long window, hops (24 ms at the 2 ms hop)
N_INPUTS = 2 * N_BINS + 3  # short- and long-window CMNDF bins, both levels, the long level below its recent peak
PEAK_DECAY_DB = 0.04  # the recent peak level falls this much per hop (20 dB/s)
SNAP_CENTS = 50.0  # the net's f0 takes YIN's precise period when it lies this close
# voiced only where the net is ~95 % sure (its voicing logit minus this): chosen on the bench's training part,
# where it cut false alarms in noise and rooms ~4x and the frames the net lags on at note changes
VOICING_LOGIT_OFFSET = 3.0
VOICED_MAX_ND = 0.6  # ... and voiced only on a snapped dip at least this deep (0 periodic .. 1 none)
OCTAVE_DOWN_MAX_ND = 0.02  # the head's f0 drops an octave as the rules would only onto a dip this deep
SUBPERIOD_MAX_ND = 0.1  # ... and rises to a 1/2, 1/3, 1/5 or 1/7 of its period where that dip is this deep
SUBPERIOD_MARGIN = 0.01  # ... and no more than this shallower than the dip it leaves
LEVEL_OFFSET_DB, LEVEL_SCALE_DB = 40.0, 20.0  # head input level = (dB + offset) / scale

# --- float state vector, indices --------------------------------------------------------
S_F0 = 0  # latest f0 estimate, Hz (best guess, also while unvoiced)
S_VOICING = 1  # latest voicing probability 0..1
S_LOUD = 2  # latest loudness, dB
S_PREV_TAU = 3  # previous voiced period, input samples (0: none)
S_HELD = 4  # latest voiced f0, Hz, held through unvoiced hops (0 before the first)
S_PEAK_DB = 5  # the long window's recent peak level, dB (falls PEAK_DECAY_DB per hop)
N_STATE = 6

# --- int state vector, indices ----------------------------------------------------------
I_COUNT = 0  # input samples consumed since reset
I_LO_POS = 1  # write position in the low-rate ring
I_HI_POS = 2  # write position in the full-rate ring
I_LD_POS = 3  # write position in the loudness ring
I_HOPS = 4  # hops analysed since reset
N_ISTATE = 5

LOUD_FLOOR_DB = -120.0


@njit(nogil=True, cache=True, inline="always")
def _biquads(sos, zi, x):
    """One sample through an SOS cascade (transposed direct form II)."""
    for s in range(sos.shape[0]):
        y = sos[s, 0] * x + zi[s, 0]
        zi[s, 0] = sos[s, 1] * x - sos[s, 4] * y + zi[s, 1]
        zi[s, 1] = sos[s, 2] * x - sos[s, 5] * y
        x = y
    return x


@njit(nogil=True, cache=True, inline="always")
def _push(ring, pos, value):
    """Write ``value`` at ``pos`` and ``pos + N`` of a double-written ring; returns the next pos."""
    n = ring.shape[0] // 2
    ring[pos] = value
    ring[pos + n] = value
    pos += 1
    return 0 if pos == n else pos


@njit(nogil=True, cache=True, fastmath=True)
def _sq_diff(x, base, n, tau):
    """Sum over j < n of (x[base + j] - x[base + j - tau])**2 (vectorised: fastmath, and slices, whose
    indices cannot be negative, so LLVM drops the per-element wrap-around check: ~10x faster)."""
    a = x[base: base + n]
    b = x[base - tau: base - tau + n]
    acc = 0.0
    for j in range(n):
        diff = a[j] - b[j]
        acc += diff * diff
    return acc


@njit(nogil=True, cache=True)
def _local_min_near(c, lo_bound, hi_bound, tau_max):
    """The lowest CMNDF value and its lag within ``[lo_bound, hi_bound]``, clipped to 2..tau_max."""
    lo = max(int(lo_bound), 2)
    hi = min(int(hi_bound), tau_max)
    best = 1e9
    best_tau = -1
    for t in range(lo, hi + 1):
        if c[t] < best:
            best = c[t]
            best_tau = t
    return best, best_tau


@njit(nogil=True, cache=True, fastmath=True)
def _norm_diff(x, base, n, tau):
    """Normalised squared difference d / (energy of both segments), 0 (periodic) .. 2."""
    acc = 0.0
    e = 0.0
    for j in range(n):
        a = x[base + j]
        b = x[base + j - tau]
        acc += (a - b) * (a - b)
        e += a * a + b * b
    return acc / e if e > 1e-30 else 1.0


@njit(nogil=True, cache=True)
def _refine(hi, hbase, hwin, c, pick, dec, r):
    """Period (input samples, fractional) and its normalised difference, from the full-rate
    signal at the lags around the low-rate dip ``pick``."""
    off = _parabola(c[pick - 1], c[pick], c[pick + 1])
    centre = (pick + off) * dec
    t_lo = max(int(centre) - dec, 2)
    n_r = min(2 * dec + 4, r.shape[0])
    for k in range(n_r):  # lags t_lo - 1 ... t_lo + n_r - 2
        r[k] = _norm_diff(hi, hbase, hwin, t_lo - 1 + k)
    kb = 1
    for k in range(2, n_r - 1):
        if r[k] < r[kb]:
            kb = k
    off = _parabola(r[kb - 1], r[kb], r[kb + 1])
    nd = r[kb] - 0.25 * (r[kb - 1] - r[kb + 1]) * off
    return t_lo - 1 + kb + off, max(nd, 0.0)


@njit(nogil=True, cache=True)
def _parabola(y0, y1, y2):
    """Offset of the vertex of the parabola through (-1, y0), (0, y1), (1, y2), within ±1."""
    den = y0 - 2.0 * y1 + y2
    if den <= 0.0:
        return 0.0
    off = 0.5 * (y0 - y2) / den
    return min(max(off, -1.0), 1.0)


@njit(nogil=True, cache=True)
def _analyse(cfg, st, ist, lo, lo_end, hi, hi_end, ld, ld_end, d, c, r, head, feats_out, hop_index):
    """One hop: update st[S_F0], st[S_VOICING], st[S_LOUD] from the newest window.

    ``head``: the learned head's weights and state (see :func:`head_arrays`); with
    ``C_FEATURES`` its inputs are computed, and also written to ``feats_out[:, hop_index]``
    when ``feats_out`` has that column (the training features).
    """
    dec = int(cfg[C_DEC])
    win = int(cfg[C_WIN])
    lag_max = int(cfg[C_LAG_MAX])
    base = lo_end - win
    # level of the window (low-rate signal, mean square)
    energy = 0.0
    for j in range(win):
        energy += lo[base + j] * lo[base + j]
    level_db = 10.0 * math.log10(energy / win + 1e-20)
    # YIN difference and CMNDF
    for tau in range(1, lag_max + 2):
        d[tau] = _sq_diff(lo, base, win, tau)
    _cmndf(d, c, lag_max)
    hwin = win * dec
    hbase = hi_end - hwin
    if cfg[C_FEATURES] > 0.0:
        _head_features(cfg, st, ist, lo, lo_end, c, level_db, head)
        if hop_index < feats_out.shape[1]:
            feats_out[:, hop_index] = head[14]
    if cfg[C_HEAD] > 0.0:
        head_step(head[14], head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
                  head[15], head[16], head[17], head[18], head[19])
        _head_pick(cfg, st, hi, hbase, hwin, c, r, head[19], level_db)
    else:
        _yin_pick(cfg, st, hi, hbase, hwin, c, r, level_db)
    # A-weighted loudness over the loudness window
    lw = int(cfg[C_LOUD_WIN])
    ms = 0.0
    for j in range(ld_end - lw, ld_end):
        ms += ld[j]
    ms /= lw
    st[S_LOUD] = max(10.0 * math.log10(ms + 1e-30), LOUD_FLOOR_DB)


@njit(nogil=True, cache=True)
def _cmndf(d, c, lag_max):
    """c(tau) = d(tau) · tau / sum of d(1..tau), c(0) = 1, for tau up to lag_max + 1."""
    c[0] = 1.0
    running = 0.0
    for tau in range(1, lag_max + 2):
        running += d[tau]
        c[tau] = d[tau] * tau / running if running > 0.0 else 1.0


@njit(nogil=True, cache=True)
def _set_result(cfg, st, f0, p, period, level_db):
    """Gate ``p`` by the window level and store f0 (Hz), voicing and the held values in ``st``."""
    g = (level_db - cfg[C_GATE_DB]) / 3.0
    g = min(max(g, -30.0), 30.0)
    p *= 1.0 / (1.0 + math.exp(-g))
    if not (f0 > 0.0) or not math.isfinite(f0):
        f0 = st[S_F0]
        p = 0.0
    st[S_F0] = f0
    st[S_VOICING] = p
    st[S_PREV_TAU] = period if p >= 0.5 else 0.0
    if p >= 0.5:
        st[S_HELD] = f0


@njit(nogil=True, cache=True)
def _octave_down(cfg, hi, hbase, hwin, c, r, pick, period, nd):
    """(pick, period, nd) moved down an octave (to the dip near 2 pick) while that dip is clearly deeper."""
    dec = int(cfg[C_DEC])
    tau_max = int(cfg[C_TAU_MAX])
    while 2 * pick - 2 <= tau_max:
        _, t2 = _local_min_near(c, 2 * pick - 2, 2 * pick + 2, tau_max)
        if t2 < 0:
            break
        period2, nd2 = _refine(hi, hbase, hwin, c, t2, dec, r)
        if nd2 < nd * cfg[C_OCT_RATIO] and nd2 < nd - cfg[C_OCT_MARGIN]:
            pick, period, nd = t2, period2, nd2
        else:
            break
    return pick, period, nd


@njit(nogil=True, cache=True)
def _subperiod(cfg, hi, hbase, hwin, c, r, pick, period, nd):
    """(pick, period, nd) moved to the dip near pick / 2, 3, 5 or 7 while that dip is as deep and clearly
    periodic: YIN's shortest period that explains the signal (a pure tone dips at every multiple of its period)."""
    dec = int(cfg[C_DEC])
    tau_min = int(cfg[C_TAU_MIN])
    tau_max = int(cfg[C_TAU_MAX])
    moved = True
    while moved:
        moved = False
        for div in (7, 5, 3, 2):
            lo = (pick - 2) // div
            if lo < max(tau_min, 2):
                continue
            _, t = _local_min_near(c, lo, (pick + 2) // div + 1, tau_max)
            if t < 2 or t >= pick or c[t - 1] < c[t] or c[t + 1] < c[t]:  # t < pick: the loop ends
                continue
            period_s, nd_s = _refine(hi, hbase, hwin, c, t, dec, r)
            if period_s > 0.0 and nd_s < SUBPERIOD_MAX_ND and nd_s < nd + SUBPERIOD_MARGIN:
                pick, period, nd = t, period_s, nd_s
                moved = True
                break
    return pick, period, nd


@njit(nogil=True, cache=True)
def _yin_pick(cfg, st, hi, hbase, hwin, c, r, level_db):
    """YIN's rules (steps 2-4 of the module docstring) on the CMNDF ``c``."""
    dec = int(cfg[C_DEC])
    tau_min = int(cfg[C_TAU_MIN])
    tau_max = int(cfg[C_TAU_MAX])
    # candidate: the first dip under the threshold that is also nearly as deep as the
    # deepest (a mixture of two notes, as in legato or reverb, dips deepest at their
    # common period; strong formant partials make shallow dips at fractions of T)
    gbest = 1e9
    gtau = tau_min
    for tau in range(tau_min, tau_max + 1):
        if c[tau] < gbest:
            gbest = c[tau]
            gtau = tau
    limit = max(min(cfg[C_THRESH], gbest + cfg[C_NEAR_BEST]), gbest)
    pick = gtau
    for tau in range(tau_min, tau_max + 1):
        if c[tau] <= limit and c[tau] <= c[tau - 1] and c[tau] <= c[tau + 1]:
            pick = tau
            break
    # refine at the full rate (precise dips: normalised difference nd)
    ratio = cfg[C_OCT_RATIO]
    margin = cfg[C_OCT_MARGIN]
    period, nd = _refine(hi, hbase, hwin, c, pick, dec, r)
    # continuity: return to the previous voiced period when its dip is nearly as deep —
    # but never to a multiple of the pick (a multiple of the true period always dips too)
    prev = st[S_PREV_TAU] / dec
    q = prev / pick
    if prev > 0.0 and (q < 1.5 or abs(q - round(q)) > 0.15):
        _, tp = _local_min_near(c, prev * 0.944, prev * 1.059 + 1.0, tau_max)
        if tp >= tau_min and tp != pick and c[tp - 1] >= c[tp] and c[tp + 1] >= c[tp]:
            period_p, nd_p = _refine(hi, hbase, hwin, c, tp, dec, r)
            if nd_p < nd + cfg[C_STICK]:
                pick, period, nd = tp, period_p, nd_p
    # settle the octave: of two lags tau and 2 tau, 2 tau wins only when its dip is
    # clearly deeper (a weak fundamental or strong even harmonics leave a shallow
    # dip at T/2; integer-lag CMNDF is too coarse to judge this for high notes)
    while pick // 2 - 1 >= tau_min:
        _, th = _local_min_near(c, pick / 2 - 1.5, pick / 2 + 1.5, tau_max)
        if th < tau_min:
            break
        period_h, nd_h = _refine(hi, hbase, hwin, c, th, dec, r)
        if nd < nd_h * ratio and nd < nd_h - margin:
            break
        pick, period, nd = th, period_h, nd_h
    pick, period, nd = _octave_down(cfg, hi, hbase, hwin, c, r, pick, period, nd)
    # depth for voicing: the full-rate dip, unless the coarse CMNDF disagrees (an abrupt
    # level change makes short lags look periodic to nd, never to the cumulative-mean form)
    depth = max(nd, cfg[C_CMNDF_WEIGHT] * min(c[pick - 1], c[pick], c[pick + 1]))
    f0 = cfg[C_SR] / period if period > 0.0 else 0.0
    # voicing probability: dip depth with hysteresis, gated by level
    centre_v = cfg[C_V_CENTER] + (cfg[C_V_HYST] if st[S_VOICING] >= 0.5 else 0.0)
    z = (centre_v - depth) / cfg[C_V_SLOPE]
    z = min(max(z, -30.0), 30.0)
    p = 1.0 / (1.0 + math.exp(-z))
    _set_result(cfg, st, f0, p, period, level_db)


@njit(nogil=True, cache=True)
def _bins(c, bin_tau, bin_lo, bin_hi, feat, offset):
    """``feat[offset + i]``: the CMNDF ``c`` on bin i's lags (its minimum over the integer lags
    within half a bin of ``bin_tau[i]``, or interpolated there when none lies so close)."""
    for i in range(bin_tau.shape[0]):
        k = int(bin_tau[i])
        v = c[k] + (c[k + 1] - c[k]) * (bin_tau[i] - k)
        for j in range(bin_lo[i], bin_hi[i] + 1):
            v = min(v, c[j])
        feat[offset + i] = v


@njit(nogil=True, cache=True, fastmath=True)
def _head_features(cfg, st, ist, lo, lo_end, c, level_db, head):
    """The head's inputs into ``head[14]``: short- and long-window CMNDF bins, both levels, and how far
    the long window's level lies below its recent peak (a release or a reverberant tail falls away from it).

    The long window's difference function is the sum of the last ``LONG_HOPS`` per-hop
    partial sums (each over the hop's new low-rate samples), kept in the ring ``head[11]``.
    """
    hop_lo = int(cfg[C_HOP]) // int(cfg[C_DEC])
    lag_max = int(cfg[C_LAG_MAX])
    bin_tau, bin_lo, bin_hi, part, dlong, clong, feat = (head[8], head[9], head[10], head[11], head[12],
                                                        head[13], head[14])
    row = ist[I_HOPS] % LONG_HOPS
    base = lo_end - hop_lo
    for tau in range(1, lag_max + 2):
        part[row, tau] = _sq_diff(lo, base, hop_lo, tau)
    dlong[:] = 0.0
    for k in range(LONG_HOPS):  # row by row: contiguous, and each sum still runs k = 0, 1, ... in order
        for tau in range(1, lag_max + 2):
            dlong[tau] += part[k, tau]
    _cmndf(dlong, clong, lag_max)
    n_long = hop_lo * LONG_HOPS
    energy = 0.0
    for j in range(lo_end - n_long, lo_end):
        energy += lo[j] * lo[j]
    long_db = 10.0 * math.log10(energy / n_long + 1e-20)
    _bins(c, bin_tau, bin_lo, bin_hi, feat, 0)
    _bins(clong, bin_tau, bin_lo, bin_hi, feat, N_BINS)
    feat[2 * N_BINS] = (level_db + LEVEL_OFFSET_DB) / LEVEL_SCALE_DB
    feat[2 * N_BINS + 1] = (long_db + LEVEL_OFFSET_DB) / LEVEL_SCALE_DB
    st[S_PEAK_DB] = max(long_db, st[S_PEAK_DB] - PEAK_DECAY_DB)
    feat[2 * N_BINS + 2] = (long_db - st[S_PEAK_DB]) / LEVEL_SCALE_DB


@njit(nogil=True, cache=True, fastmath=True)
def head_step(feat, w_in, b_in, w_ih, b_ih, w_hh, b_hh, w_out, b_out, proj, h, gi, gh, logits):
    """One hop of the head (``models/pitch/model.py: PitchHead``): Linear + LeakyReLU(0.1) → GRU →
    Linear. Advances ``h`` in place; ``logits`` = (voicing logit, N_BINS pitch logits)."""
    for j in range(proj.shape[0]):
        acc = b_in[j]
        for i in range(feat.shape[0]):
            acc += w_in[j, i] * feat[i]
        proj[j] = acc if acc > 0.0 else 0.1 * acc
    gru_layer(proj, h, w_ih, b_ih, w_hh, b_hh, gi, gh)
    for o in range(logits.shape[0]):
        acc = b_out[o]
        for i in range(h.shape[0]):
            acc += w_out[o, i] * h[i]
        logits[o] = acc


@njit(nogil=True, cache=True)
def _head_pick(cfg, st, hi, hbase, hwin, c, r, logits, level_db):
    """f0 and voicing from the head's logits: the posterior's peak (weighted over ±2 bins) within
    the tracker's range, snapped to YIN's refined dip when that lies within ``SNAP_CENTS`` (and moved
    down an octave where the rules would: :func:`_octave_down`)."""
    dec = int(cfg[C_DEC])
    lo_b = int(cfg[C_FMIN_BIN])
    hi_b = int(cfg[C_FMAX_BIN])
    best = lo_b
    for b in range(lo_b, hi_b + 1):
        if logits[1 + b] > logits[1 + best]:
            best = b
    num = 0.0
    den = 0.0
    for b in range(max(lo_b, best - 2), min(hi_b, best + 2) + 1):
        w = math.exp(logits[1 + b] - logits[1 + best])
        num += w * b
        den += w
    f_net = HEAD_FMIN_HZ * 2.0 ** (num / den / BINS_PER_OCTAVE)
    f0 = f_net
    tau = cfg[C_LOW_RATE] / f_net
    step = 2.0 ** (1.0 / BINS_PER_OCTAVE)
    _, t = _local_min_near(c, tau / step, tau * step + 1.0, int(cfg[C_LAG_MAX]))
    period = cfg[C_SR] / f_net
    snapped = False
    if t >= 2 and c[t - 1] >= c[t] and c[t + 1] >= c[t]:
        period_y, nd = _refine(hi, hbase, hwin, c, t, dec, r)
        if period_y > 0.0 and abs(1200.0 * math.log2(cfg[C_SR] / period_y / f_net)) < SNAP_CENTS:
            period = period_y
            # the rules' guard against a weak fundamental under strong even harmonics, trusted on a
            # clearly periodic signal only (in noise the deeper dip an octave down is often chance)
            pick_d, period_d, nd_d = _octave_down(cfg, hi, hbase, hwin, c, r, t, period_y, nd)
            if pick_d != t and nd_d < OCTAVE_DOWN_MAX_ND:
                period = period_d
            else:
                _, period, _ = _subperiod(cfg, hi, hbase, hwin, c, r, t, period_y, nd)
            f0 = cfg[C_SR] / period
            snapped = nd < VOICED_MAX_ND
    # voiced only where the signal has a period there: at an abrupt stop the net's memory outlasts the sound
    z = min(max(logits[0] - VOICING_LOGIT_OFFSET, -30.0), 30.0)
    p = 1.0 / (1.0 + math.exp(-z)) if snapped else 0.0
    _set_result(cfg, st, f0, p, period, level_db)


@njit(nogil=True, cache=True)
def track(x, cfg, st, ist, sos_pitch, z_pitch, sos_aw, z_aw, lo, hi, ld, d, c, r, head, hops_out, pub,
          feats_out):
    """Consume the block ``x`` (float32, mono); returns the number of hops analysed in it.

    Per analysed hop k, ``hops_out[:, k]`` = (f0 Hz best guess, voicing
    probability, loudness dB, input samples consumed since reset when it was
    emitted). ``pub`` (4, >= len(x)) receives per-sample values held from the
    latest hop: f0 Hz (0 while unvoiced), voicing, loudness dB, held f0 Hz. ``feats_out``
    (N_INPUTS, hops) receives the head's inputs per hop when ``C_FEATURES`` is set (else (N_INPUTS, 0)).
    """
    dec = int(cfg[C_DEC])
    hop = int(cfg[C_HOP])
    n_lo = lo.shape[0] // 2
    n_hi = hi.shape[0] // 2
    n_ld = ld.shape[0] // 2
    hops = 0
    for i in range(x.shape[0]):
        s = float(x[i])
        if not math.isfinite(s):
            s = 0.0
        ist[I_COUNT] += 1
        a = _biquads(sos_aw, z_aw, s)
        ist[I_LD_POS] = _push(ld, ist[I_LD_POS], a * a)
        y = _biquads(sos_pitch, z_pitch, s)
        ist[I_HI_POS] = _push(hi, ist[I_HI_POS], y)
        if ist[I_COUNT] % dec == 0:
            ist[I_LO_POS] = _push(lo, ist[I_LO_POS], y)
        if ist[I_COUNT] % hop == 0:
            _analyse(cfg, st, ist, lo, ist[I_LO_POS] + n_lo, hi, ist[I_HI_POS] + n_hi,
                     ld, ist[I_LD_POS] + n_ld, d, c, r, head, feats_out, hops)
            if hops < hops_out.shape[1]:
                hops_out[0, hops] = st[S_F0]
                hops_out[1, hops] = st[S_VOICING]
                hops_out[2, hops] = st[S_LOUD]
                hops_out[3, hops] = ist[I_COUNT]
                hops += 1
            ist[I_HOPS] += 1
        pub[0, i] = st[S_F0] if st[S_VOICING] >= 0.5 else 0.0
        pub[1, i] = st[S_VOICING]
        pub[2, i] = st[S_LOUD]
        pub[3, i] = st[S_HELD]
    return hops
