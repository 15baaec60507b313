"""One Piano Genie decoder step in numba: the per-press path of the live node.

The torch decoder (``Genie.step``) is ported weight for weight: a 2-layer LSTM
step plus the output projection (:func:`cadenza.engine.dsp.nn.lstm2_step`), then key choice under a pitch-range and
scale mask, greedy (temperature 0) or sampled from a softmax at the given
temperature with a tiny xorshift generator whose state lives in an array.
Everything runs on preallocated float64 arrays: no allocation per step.

The embedding of the previous key is folded into the first layer's input
weights once (``table[k] = W_ih[:, :E] @ emb[k] + b_ih + b_hh``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from cadenza.engine.dsp.nn import lstm2_step
from cadenza.models.genie.model import START, Genie, button_value

NUM_KEYS = 88
LOWEST_KEY = 21


@njit(nogil=True, cache=True, fastmath=True)
def decoder_step(table, w_dt, w_button, whh1, wih2, whh2, b2, wout, bout,
                 h, c, gates, x_gates, prev_key, dtf, bval, logits):
    """Advance the LSTM state (h, c: (2, H), in place) by one note; write ``logits`` (88,).

    ``dtf`` is ``dt_feature(dt)``, ``bval`` the button value in [-1, 1]
    (ignored when ``w_button`` is all zeros, the LM baseline).
    """
    for r in range(x_gates.shape[0]):
        x_gates[r] = table[prev_key, r] + w_dt[r] * dtf + w_button[r] * bval
    lstm2_step(x_gates, whh1, wih2, whh2, b2, wout, bout, h, c, gates, logits)


@njit(nogil=True, cache=True)
def _uniform(rng):
    """xorshift64* → float in [0, 1); ``rng`` is a uint64 array of one element (never 0)."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return float((x * np.uint64(2685821657736338717)) >> np.uint64(11)) / 9007199254740992.0


@njit(nogil=True, cache=True)
def choose_key(logits, scale, lowest, highest, temperature, rng, probs):
    """Pick a key 0..87 among MIDI ``lowest..highest`` whose pitch class is on in ``scale`` (12 bools).

    Greedy when ``temperature <= 0``, else sampled from softmax(logits / temperature).
    Falls back to the whole keyboard when the mask leaves nothing.
    """
    best = -1
    top = -1e300
    for k in range(NUM_KEYS):
        midi = k + LOWEST_KEY
        ok = lowest <= midi <= highest and scale[midi % 12]
        probs[k] = 1.0 if ok else 0.0
        if ok and logits[k] > top:
            top = logits[k]
            best = k
    if best < 0:
        for k in range(NUM_KEYS):
            probs[k] = 1.0
            if logits[k] > top:
                top = logits[k]
                best = k
    if temperature <= 0.0:
        return best
    total = 0.0
    for k in range(NUM_KEYS):
        if probs[k] > 0.0:
            probs[k] = math.exp((logits[k] - top) / temperature)
            total += probs[k]
    u = _uniform(rng) * total
    for k in range(NUM_KEYS):
        if probs[k] > 0.0:
            u -= probs[k]
            if u <= 0.0:
                return k
    return best


class NumbaDecoder:
    """The decoder's weights as float64 arrays plus its state; ``step`` runs one note."""

    def __init__(self, model: Genie, seed: int = 0):
        cfg = model.config
        sd = {k: v.detach().double().cpu().numpy() for k, v in model.state_dict().items()}
        emb = sd["dec_embed.weight"]
        wih1 = sd["decoder.weight_ih_l0"]
        e = cfg.embed
        self.table = np.ascontiguousarray(emb @ wih1[:, :e].T + sd["decoder.bias_ih_l0"] + sd["decoder.bias_hh_l0"])
        self.w_dt = np.ascontiguousarray(wih1[:, e])
        self.w_button = np.ascontiguousarray(wih1[:, e + 1]) if cfg.buttons else np.zeros_like(self.w_dt)
        self.whh1 = np.ascontiguousarray(sd["decoder.weight_hh_l0"])
        self.wih2 = np.ascontiguousarray(sd["decoder.weight_ih_l1"])
        self.whh2 = np.ascontiguousarray(sd["decoder.weight_hh_l1"])
        self.b2 = sd["decoder.bias_ih_l1"] + sd["decoder.bias_hh_l1"]
        self.wout = np.ascontiguousarray(sd["dec_out.weight"])
        self.bout = sd["dec_out.bias"]
        self.levels = cfg.levels
        hidden = cfg.dec_hidden
        self.h = np.zeros((2, hidden))
        self.c = np.zeros((2, hidden))
        self.gates = np.zeros(4 * hidden)
        self.x_gates = np.zeros(4 * hidden)
        self.logits = np.zeros(NUM_KEYS)
        self.probs = np.zeros(NUM_KEYS)
        self.rng = np.zeros(1, dtype=np.uint64)
        self.seed(seed)
        self.prev_key = START

    def seed(self, seed: int) -> None:
        """Restart the sampling generator (same seed, same presses → same notes)."""
        self.rng[0] = np.uint64((seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % 2**64 or 1)

    def reset(self) -> None:
        """Back to the start of a phrase: zero state, previous key = start token."""
        self.h[:] = 0.0
        self.c[:] = 0.0
        self.prev_key = START

    def step(self, dt: float, button: int) -> np.ndarray:
        """Advance by one press ``dt`` seconds after the previous one; returns the logits (88,)."""
        dtf = (math.log(min(max(dt, 0.0), 8.0) + 1e-3) + 2.5) / 2.5
        decoder_step(self.table, self.w_dt, self.w_button, self.whh1, self.wih2, self.whh2, self.b2,
                     self.wout, self.bout, self.h, self.c, self.gates, self.x_gates, self.prev_key, dtf,
                     button_value(float(button), self.levels), self.logits)
        return self.logits

    def press(self, dt: float, button: int, temperature: float = 0.0, scale=None,
              lowest: int = LOWEST_KEY, highest: int = LOWEST_KEY + NUM_KEYS - 1) -> int:
        """One press → MIDI pitch; the chosen key becomes the next step's previous key."""
        self.step(dt, button)
        key = choose_key(self.logits, ALL_PITCH_CLASSES if scale is None else scale, lowest, highest,
                         temperature, self.rng, self.probs)
        self.prev_key = key
        return key + LOWEST_KEY


ALL_PITCH_CLASSES = np.ones(12, dtype=np.bool_)
