"""Numba kernels of the streaming beat tracker: the bar-pointer forward pass over the onset activation.

The onset front end (spectral flux per band and the onset GRU) is in
:mod:`cadenza.engine.dsp.onset`, shared with the onset network's trainer.

Beat inference: the state space of Krebs, Böck & Widmer (2015), "An efficient
state space model for joint tempo and meter tracking". A state is (tempo,
position): tempo ``j`` has an integer beat interval ``tau[j]`` frames and
positions ``0 .. tau[j]-1``; position 0 is the beat. Position advances one per
frame; at the wrap the tempo may change with probability
``exp(-lambda_t * |tau_i / tau_j - 1|)`` plus a small uniform jump. The
observation favours the first ``1/lambda_o`` of each beat when the novelty is
high. Only the forward (filtering) pass runs: zero lookahead.

The frame finished at absolute sample ``S`` stands for audio time
``S - delay`` (``delay`` compensates the analysis window's centre). From the
most likely state (tempo ``j``, position ``p``) the next beat is predicted at
``S - delay + (tau[j] - p) * hop``. The beat is emitted at that sample when
it falls before the next frame's decision; when the state jumps so that a beat
was due a little while ago, it is emitted at once (never stamped earlier than
the sample where the decision is made).

All state lives in preallocated arrays; nothing here allocates per block.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from cadenza.engine.dsp.onset import group_bands, gru_step, novelty, readout
from cadenza.engine.events import Kind
from cadenza.instruments.listeners.bar_kernels import B_M, bar_frame, bar_on_beat, bar_score, fill_bar_phase

# indices into the float64 config array ``cfg``
C_SR, C_HOP, C_WIN, C_DELAY, C_KAPPA, C_MU_COEF, C_LEVEL_COEF, C_GATE_DB, \
    C_CONF_MIN, C_LEAD, C_MIN_LEAD, C_LATE_TOL, C_OBS_FLOOR, C_NOVELTY_FLOOR, C_GAMMA, C_JUMP, C_MIX = range(17)
N_CFG = 17

# indices into the float64 state array ``st``
S_FILL, S_WPOS, S_HOPC, S_FRAMES, S_MU, S_LEVEL, S_PRED, S_PERIOD, S_LAST_BEAT, \
    S_LAST_PRED, S_BEATS, S_CONF, S_BPM, S_ACTIVE, S_IBI, S_IBI_N = range(16)
IBI_BEATS = 8  # the published tempo: the slope of a line through the last (up to) 8 emitted beats
S_IBI_TIMES = S_IBI_N + 1  # st[S_IBI_TIMES:S_IBI_TIMES + IBI_BEATS]: their times, samples, oldest first
N_ST = S_IBI_TIMES + IBI_BEATS
IBI_AGREE = 0.12  # an interval off the line's by more than this (a tempo change) starts a new line

# event kinds written to the kernel's event buffer
EV_BEAT = Kind.BEAT
EV_PREDICTION = Kind.BEAT_PREDICTION
EV_DOWNBEAT = Kind.DOWNBEAT


# --------------------------------------------------------------------------- state space


def state_space(fps: float, min_bpm: float, max_bpm: float, lambda_t: float, jump: float,
                prior_bpm: float, prior_octaves: float, lambda_o: float):
    """Tempo intervals, state offsets, beat-region weights, tempo transitions and the tempo prior.

    ``tau``: beat interval of each tempo (frames); ``off``: first state of each
    tempo in the flat state vector; ``obs_w``: per state, how much it counts as
    "beat" (1 at position 0, falling linearly to 0 over the first ``tau / lambda_o``
    positions, so the strongest frame of an onset lands on the beat);
    ``trans[i, j]``: probability of a smooth tempo change ``i`` → ``j`` at a beat
    (scaled by ``1 - jump``; non-zero for ``t_lo[j] <= i < t_hi[j]``); ``prior``:
    start distribution over tempi (log-normal around ``prior_bpm``), also where a
    free jump (probability ``jump``) lands.
    """
    tau = np.arange(int(math.floor(60 * fps / max_bpm)), int(math.ceil(60 * fps / min_bpm)) + 1)
    off = np.concatenate([[0], np.cumsum(tau)[:-1]]).astype(np.int64)
    region = np.maximum(1.0, tau / lambda_o)
    obs_w = np.concatenate([np.clip(1.0 - np.arange(t) / r, 0.0, 1.0) for t, r in zip(tau, region)])
    bpm = 60.0 * fps / tau
    if prior_octaves > 0:
        prior = np.exp(-0.5 * (np.log2(bpm / prior_bpm) / prior_octaves) ** 2)
    else:
        prior = np.ones(len(tau))
    prior /= prior.sum()
    ratio = tau[None, :] / tau[:, None]
    trans = np.exp(-lambda_t * np.abs(ratio - 1.0))
    trans /= trans.sum(axis=1, keepdims=True)
    trans[trans < 1e-9] = 0.0
    trans *= 1.0 - jump
    nz = trans > 0.0
    t_lo = np.argmax(nz, axis=0).astype(np.int64)
    t_hi = (len(tau) - np.argmax(nz[::-1], axis=0)).astype(np.int64)
    return tau.astype(np.int64), off, obs_w, np.ascontiguousarray(trans), t_lo, t_hi, prior


@njit(nogil=True, cache=True)
def reset_alpha(alpha, tau, off, prior):
    """Spread each tempo's prior mass evenly over its positions."""
    for j in range(tau.shape[0]):
        v = prior[j] / tau[j]
        for p in range(tau[j]):
            alpha[off[j] + p] = v


# --------------------------------------------------------------------------- per frame


@njit(nogil=True, cache=True)
def _forward(alpha, tmp, tau, off, trans, t_lo, t_hi, jump, prior, ends, obs_w, p_beat, p_non):
    """One forward step; returns the arg-max state index.

    ``p_beat`` / ``p_non``: likelihood of this frame's observation at a beat / elsewhere.

    At a beat, tempo ``i`` moves to ``j`` with ``trans[i, j]`` (non-zero only for
    ``t_lo[j] <= i < t_hi[j]``) or jumps anywhere with ``jump * prior[j]``.

    State ``s`` weighs the beat likelihood by ``obs_w[s]`` (1 at the beat, falling to 0
    across the beat region, 0 elsewhere): ``w * p_beat + (1 - w) * p_non``.
    """
    n_t = tau.shape[0]
    for j in range(n_t):
        ends[j] = alpha[off[j] + tau[j] - 1]
    for j in range(n_t):
        o = off[j]
        for p in range(tau[j] - 1, 0, -1):
            tmp[o + p] = alpha[o + p - 1]
    wrap = 0.0
    for i in range(n_t):
        wrap += ends[i]
    for j in range(n_t):
        acc = 0.0
        for i in range(t_lo[j], t_hi[j]):
            acc += ends[i] * trans[i, j]
        tmp[off[j]] = acc + jump * prior[j] * wrap
    total = 0.0
    for s in range(alpha.shape[0]):
        w = obs_w[s]
        v = tmp[s] * (w * p_beat + (1.0 - w) * p_non)
        alpha[s] = v
        total += v
    best = 0
    best_v = -1.0
    inv = 1.0 / total if total > 0.0 else 0.0
    for s in range(alpha.shape[0]):
        v = alpha[s] * inv
        alpha[s] = v
        if v > best_v:
            best_v = v
            best = s
    return best


@njit(nogil=True, cache=True)
def _refine(alpha, tau, off, state_tempo, j, p):
    """Frames to the next beat and tempo (beats per frame), averaged over the states near the best one.

    Integer beat intervals quantise tempo (at 100 frames/s, 1.5 % steps near 180
    BPM); the posterior mass of neighbouring tempi that agree on the next beat
    (within a quarter beat) interpolates between them.
    """
    ahead0 = tau[j] - p
    tol = 0.25 * tau[j]
    lo = max(j - 4, 0)
    hi = min(j + 5, tau.shape[0])
    w_sum = 0.0
    a_sum = 0.0
    r_sum = 0.0
    for jj in range(lo, hi):
        t = tau[jj]
        for pp in range(t):
            ahead = t - pp
            if abs(ahead - ahead0) <= tol:
                w = alpha[off[jj] + pp]
                w_sum += w
                a_sum += w * ahead
                r_sum += w / t
    if w_sum <= 0.0:
        return float(ahead0), 1.0 / tau[j]
    return a_sum / w_sum, r_sum / w_sum


@njit(nogil=True, cache=True)
def _phase_confidence(alpha, state_bin, hist):
    """Mass of the posterior's densest fifth of beat phase (circular, 20 bins): 0.2 .. 1."""
    nbin = hist.shape[0]
    for k in range(nbin):
        hist[k] = 0.0
    for s in range(alpha.shape[0]):
        hist[state_bin[s]] += alpha[s]
    best = 0.0
    for k in range(nbin):
        acc = 0.0
        for d in range(-2, 3):
            acc += hist[(k + d) % nbin]
        if acc > best:
            best = acc
    return best


# --------------------------------------------------------------------------- per block


@njit(nogil=True, cache=True)
def _emit(ev_off, ev_kind, ev_a, ev_val, n_ev, offset, kind, a, value):
    if n_ev < ev_off.shape[0]:
        ev_off[n_ev] = offset
        ev_kind[n_ev] = kind
        ev_a[n_ev] = a
        ev_val[n_ev] = value
        return n_ev + 1
    return n_ev


@njit(nogil=True, cache=True)
def _follow_ibi(st, t_beat):
    """Fit the interval (samples) between the last emitted beats and ``t_beat`` into ``st[S_IBI]``.

    The published tempo reads it (the state's period until three beats in a row agree). The
    posterior's tempo reads slow on sharp onsets: an onset's activation has a tail after it and
    none before, so slower tempi keep more mass than faster ones (a 120 BPM click track read
    117.7 BPM), and between beats in a silence it sags further. The beats themselves land on the
    onsets; their spacing is the tempo. A least-squares line through up to ``IBI_BEATS`` of them
    averages out beats that alternate early and late where the tempo falls between the state
    space's integer intervals. An interval off the state's period by more than a quarter (a gap,
    a missed beat) or off the line by more than ``IBI_AGREE`` (a tempo change) starts again.
    """
    period = st[S_PERIOD]
    n = int(st[S_IBI_N])
    d = t_beat - st[S_LAST_BEAT]
    if st[S_BEATS] == 0 or not 0.8 * period < d < 1.25 * period:
        n = 0
    elif n >= 3 and abs(d / st[S_IBI] - 1.0) > IBI_AGREE:
        st[S_IBI_TIMES] = st[S_IBI_TIMES + n - 1]  # the last beat starts the new tempo's line
        n = 1
    if n == IBI_BEATS:
        for k in range(IBI_BEATS - 1):
            st[S_IBI_TIMES + k] = st[S_IBI_TIMES + k + 1]
        n -= 1
    st[S_IBI_TIMES + n] = t_beat
    n += 1
    st[S_IBI_N] = n
    if n < 3:
        st[S_IBI] = 0.0
        return
    mid = 0.5 * (n - 1)
    num = 0.0
    den = 0.0
    for k in range(n):
        num += (k - mid) * (st[S_IBI_TIMES + k] - t_beat)
        den += (k - mid) * (k - mid)
    st[S_IBI] = num / den


@njit(nogil=True, cache=True)
def _emit_beat(ev_off, ev_kind, ev_a, ev_val, n_ev, offset, t_beat, st, bar, pend):
    """Emit the beat at audio sample ``t_beat`` (at ``offset`` in the block) and, when the bar
    inference places it on a downbeat, a DOWNBEAT at the same offset; count it."""
    index = int(st[S_BEATS])
    _follow_ibi(st, t_beat)
    n_ev = _emit(ev_off, ev_kind, ev_a, ev_val, n_ev, offset, EV_BEAT, index % 32768, st[S_BPM])
    bar_no = bar_on_beat(bar, pend, t_beat, index, st[S_PERIOD])
    if bar_no >= 0:
        n_ev = _emit(ev_off, ev_kind, ev_a, ev_val, n_ev, offset, EV_DOWNBEAT, bar_no % 32768, bar[B_M])
    st[S_BEATS] += 1
    st[S_LAST_BEAT] = t_beat
    return n_ev


@njit(nogil=True, cache=True)
def beat_block(x, block_start, cfg, st, ring, window, frame, spec, mag,
               b_start, b_len, b_w, b_gain, cur, prev, bdiff, max_w,
               group, xin, w_ih, w_hh, b_ih, b_hh, w_out, b_out, w_down, b_down, h, gates_i, gates_h, alpha, tmp, ends, hist,
               tau, off, trans, t_lo, t_hi, prior, obs_w, lambda_o, state_tempo, state_bin,
               bpm_out, phase_out, conf_out, next_out, ev_off, ev_kind, ev_a, ev_val, act_log,
               low_band, bar, bar_hist, pend, bar_acc, bar_accw, body_a, body_b, beats_per_bar, bar_phase_out):
    """Track one block of mono audio ``x`` (frames,) starting at absolute sample ``block_start``.

    Fills the per-frame controls (bpm, phase 0..1, confidence 0..1, seconds
    from the block start to the next predicted beat) and writes events into
    ``ev_*`` (offset in frames, kind, beat index, value: bpm for a beat,
    seconds ahead for a prediction); returns their count. ``w_*``, ``b_*``:
    the onset network (GRU, see :func:`gru_step`) over the band differences summed
    into third-octave groups (``group``, scratch ``xin``), or zero-size arrays for the
    flux formula; ``w_down``/``b_down``: its downbeat read-out (zero-size: none). ``act_log``, where it has room, receives each frame's
    activation (for tests and plots).

    Bar inference (:mod:`cadenza.instruments.listeners.bar_kernels`): each frame's low-band flux
    (bands weighted by ``low_band``, 1 below ``onset.LOW_HZ``), flux, downbeat activation and band magnitudes feed
    its history ring; each beat may also emit a DOWNBEAT (a = bar number, value = beats per
    bar) at its own offset; ``bar_phase_out`` receives the position in the bar, 0..1.
    ``bar``, ``bar_hist``, ``pend``, ``bar_acc``, ``bar_accw``, ``body_a``, ``body_b``: its
    state and scratch (:func:`bar_kernels.new_state`); ``beats_per_bar``: 0 to infer 2, 3 or 4.
    """
    n = x.shape[0]
    sr = cfg[C_SR]
    hop = int(cfg[C_HOP])
    win = ring.shape[0]
    lc = cfg[C_LEVEL_COEF]
    n_ev = 0
    i = 0
    while i < n:
        todo = min(n - i, hop - int(st[S_HOPC]))
        seg0 = block_start + i
        seg1 = seg0 + todo
        # decisions from the last frame, over the samples until the next one
        period = st[S_PERIOD]
        if st[S_ACTIVE] > 0.0 and period > 0.0:
            pred = st[S_PRED]
            t_pred = math.ceil(max(pred - cfg[C_LEAD], float(seg0)))
            if t_pred < seg1 and pred - t_pred >= cfg[C_MIN_LEAD] and abs(pred - st[S_LAST_PRED]) > 0.5 * period:
                n_ev = _emit(ev_off, ev_kind, ev_a, ev_val, n_ev, t_pred - block_start, EV_PREDICTION,
                             int(st[S_BEATS]) % 32768, (pred - t_pred) / sr)
                st[S_LAST_PRED] = pred
            t_beat = math.ceil(pred)
            if seg0 <= t_beat < seg1 and pred - st[S_LAST_BEAT] > 0.5 * period:
                n_ev = _emit_beat(ev_off, ev_kind, ev_a, ev_val, n_ev, t_beat - block_start, pred, st, bar, pend)
        wpos = int(st[S_WPOS])
        level = st[S_LEVEL]
        for k in range(todo):
            v = x[i + k]
            ring[wpos] = v
            wpos += 1
            if wpos == win:
                wpos = 0
            level = lc * level + (1.0 - lc) * v * v
        st[S_WPOS] = wpos
        st[S_LEVEL] = level
        st[S_HOPC] += todo
        i += todo
        if st[S_HOPC] < hop:
            continue
        # a frame is complete: novelty, forward step, new prediction
        st[S_HOPC] = 0.0
        frame_end = block_start + i
        flux = novelty(ring, wpos, window, frame, spec, mag, b_start, b_len, b_w, b_gain, cur, prev, bdiff, max_w)
        mc = cfg[C_MU_COEF]
        floor = cfg[C_NOVELTY_FLOOR]
        st[S_MU] = mc * st[S_MU] + (1.0 - mc) * flux
        fr = int(st[S_FRAMES])
        # activation 0..1: flux / (flux + kappa * running mean), and/or the onset network's
        # output; with both, their geometric mean; then ** gamma
        act = flux / (flux + cfg[C_KAPPA] * max(st[S_MU], floor))
        down = 0.0  # the network's downbeat activation, when it has one
        if w_ih.shape[0] > 0:
            group_bands(bdiff, group, xin)
            net = gru_step(xin, h, gates_i, gates_h, w_ih, w_hh, b_ih, b_hh, w_out, b_out)
            if w_down.shape[0] > 0:
                down = readout(h, w_down, b_down)
            act = math.sqrt(act * net) if cfg[C_MIX] > 0.0 else net
        act = act ** cfg[C_GAMMA]
        act = min(max(act, cfg[C_OBS_FLOOR]), 1.0 - cfg[C_OBS_FLOOR])
        p_beat = act
        p_non = (1.0 - act) / (lambda_o - 1.0)
        if fr < act_log.shape[0]:
            act_log[fr] = act
        low = 0.0
        for b in range(bdiff.shape[0]):
            low += bdiff[b] * low_band[b]
        e = frame_end - cfg[C_DELAY]
        bar_frame(bar, bar_hist, e, low, flux, down, cur)
        bar_score(bar, bar_hist, pend, bar_acc, bar_accw, e, beats_per_bar, body_a, body_b)
        st[S_FRAMES] = fr + 1
        best = _forward(alpha, tmp, tau, off, trans, t_lo, t_hi, cfg[C_JUMP], prior, ends, obs_w, p_beat, p_non)
        j = state_tempo[best]
        p = best - off[j]
        ahead, beats_per_frame = _refine(alpha, tau, off, state_tempo, j, p)
        period = hop / beats_per_frame
        st[S_PRED] = e + ahead * hop
        st[S_PERIOD] = period
        st[S_CONF] = _phase_confidence(alpha, state_bin, hist)
        active = (10.0 * math.log10(level + 1e-20) > cfg[C_GATE_DB]
                  and st[S_MU] > cfg[C_NOVELTY_FLOOR] and st[S_CONF] >= cfg[C_CONF_MIN])
        st[S_ACTIVE] = 1.0 if active else 0.0
        if active:  # while silent or unsure the published tempo holds its last value (0 at first)
            st[S_BPM] = 60.0 * sr / (st[S_IBI] if st[S_IBI] > 0.0 else period)
        # a beat the state says fell a moment ago and that was not emitted yet: emit it now
        due = st[S_PRED] - period
        if active and frame_end - due <= cfg[C_LATE_TOL] * period and due - st[S_LAST_BEAT] > 0.5 * period:
            n_ev = _emit_beat(ev_off, ev_kind, ev_a, ev_val, n_ev, i - 1, due, st, bar, pend)
    _fill_controls(block_start, n, st, sr, bpm_out, phase_out, conf_out, next_out)
    fill_bar_phase(bar, int(st[S_BEATS]), st[S_ACTIVE] > 0.0, phase_out, bar_phase_out)
    return n_ev


@njit(nogil=True, cache=True)
def _fill_controls(block_start, n, st, sr, bpm_out, phase_out, conf_out, next_out):
    pred = st[S_PRED]
    period = st[S_PERIOD]
    for k in range(n):
        bpm_out[k] = st[S_BPM]
        conf_out[k] = st[S_CONF] * st[S_ACTIVE]
        if period <= 0.0 or st[S_ACTIVE] == 0.0:
            phase_out[k] = 0.0
            next_out[k] = 0.0
            continue
        t = block_start + k
        nxt = pred
        while nxt < t:
            nxt += period
        ph = 1.0 - (nxt - t) / period
        phase_out[k] = min(max(ph, 0.0), 0.999999)
        next_out[k] = (nxt - block_start) / sr
