"""A polyphonic subtractive synth: the engine's first voice.

Band-limited oscillators (polyBLEP saw and square, triangle, sine), one
linear-attack / exponential-decay-and-release ADSR per voice, a TPT
state-variable low-pass per voice, velocity, pitch bend, sustain pedal and
voice stealing. Events are applied at their exact sample inside one numba
kernel call per block.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from cadenza.engine.dsp.units import midi_to_hz
from cadenza.engine.events import Kind
from cadenza.engine.node import Node, Option, Param

WAVES = ("saw", "square", "triangle", "sine")
IDLE, ATTACK, DECAY, RELEASE = 0, 1, 2, 3
START_PHASE = 0.25  # so a note's first sample is never a zero crossing
VOICE_GAIN = 0.25
SILENT = 1e-4  # envelope level at which a releasing voice is freed


@njit(nogil=True, cache=True, inline="always")
def _poly_blep(t, dt):
    if t < dt:
        t /= dt
        return t + t - t * t - 1.0
    if t > 1.0 - dt:
        t = (t - 1.0) / dt
        return t * t + t + t + 1.0
    return 0.0


@njit(nogil=True, cache=True, inline="always")
def _oscillator(wave, phase, dt):
    if wave == 0:
        return 2.0 * phase - 1.0 - _poly_blep(phase, dt)
    if wave == 1:
        sq = 1.0 if phase < 0.5 else -1.0
        return sq + _poly_blep(phase, dt) - _poly_blep((phase + 0.5) % 1.0, dt)
    if wave == 2:
        return 4.0 * abs(phase - 0.5) - 1.0
    return math.sin(2.0 * math.pi * phase)


@njit(nogil=True, cache=True)
def _start_voice(vs, vi, note, channel, velocity, now):
    vs[vi, 0] = ATTACK
    vs[vi, 1] = note
    vs[vi, 2] = channel
    vs[vi, 3] = (velocity / 127.0) ** 1.5
    vs[vi, 4] = START_PHASE
    vs[vi, 5] = 0.0  # envelope
    vs[vi, 6] = now  # start time, for stealing the oldest
    vs[vi, 7] = 1.0  # key held
    vs[vi, 8] = 0.0  # held by the pedal only
    vs[vi, 9] = 0.0  # filter state 1
    vs[vi, 10] = 0.0  # filter state 2


@njit(nogil=True, cache=True)
def _allocate(vs, note, channel):
    n = vs.shape[0]
    for v in range(n):  # the same key again: retrigger its voice
        if vs[v, 0] != IDLE and vs[v, 1] == note and vs[v, 2] == channel:
            return v
    for v in range(n):
        if vs[v, 0] == IDLE:
            return v
    best, best_env = -1, 2.0
    for v in range(n):  # the quietest releasing voice
        if vs[v, 0] == RELEASE and vs[v, 5] < best_env:
            best, best_env = v, vs[v, 5]
    if best >= 0:
        return best
    oldest = 0
    for v in range(1, n):
        if vs[v, 6] < vs[oldest, 6]:
            oldest = v
    return oldest


@njit(nogil=True, cache=True)
def _handle_event(vs, chan, ev, now):
    kind = ev["kind"]
    ch = ev["channel"] & 15
    if kind == Kind.NOTE_ON and ev["b"] != 0:
        _start_voice(vs, _allocate(vs, ev["a"], ch), ev["a"], ch, ev["b"], now)
        return
    if kind == Kind.NOTE_OFF or kind == Kind.NOTE_ON:  # a note on with velocity 0 is a note off
        for v in range(vs.shape[0]):
            if vs[v, 0] != IDLE and vs[v, 1] == ev["a"] and vs[v, 2] == ch and vs[v, 7] == 1.0:
                vs[v, 7] = 0.0
                if chan[ch, 1] > 0.0:
                    vs[v, 8] = 1.0
                else:
                    vs[v, 0] = RELEASE
    elif kind == Kind.CC and ev["a"] == 64:  # sustain pedal
        down = ev["b"] >= 64
        chan[ch, 1] = 1.0 if down else 0.0
        if not down:
            for v in range(vs.shape[0]):
                if vs[v, 8] == 1.0 and vs[v, 2] == ch:
                    vs[v, 8] = 0.0
                    vs[v, 0] = RELEASE
    elif kind == Kind.PITCH_BEND:  # value -1..1
        chan[ch, 0] = ev["value"]


@njit(nogil=True, cache=True)
def synth_kernel(out, events, block_start, vs, chan, wave, sr, bend_range,
                 attack_s, decay_s, sustain, release_s, cutoff_hz, q, gain):
    """Render one block into ``out`` (frames,) float32, applying ``events`` at their sample.

    vs: (voices, 11) float64 voice state; chan: (16, 2) [bend -1..1, pedal 0/1].
    Times in seconds, cutoff in Hz, gain linear.
    """
    frames = out.shape[0]
    attack_inc = 1.0 / max(attack_s * sr, 1.0)
    decay_coef = math.exp(-1.0 / max(decay_s * sr / 5.0, 1.0))
    release_coef = math.exp(-1.0 / max(release_s * sr / 5.0, 1.0))
    g = math.tan(math.pi * min(cutoff_hz, 0.45 * sr) / sr)
    k = 1.0 / q
    a1 = 1.0 / (1.0 + g * (g + k))
    a2 = g * a1
    a3 = g * a2
    n_ev = events.shape[0]
    e = 0
    for i in range(frames):
        out[i] = 0.0
        now = block_start + i
        while e < n_ev and events[e]["time"] <= now:
            _handle_event(vs, chan, events[e], now)
            e += 1
        acc = 0.0
        for v in range(vs.shape[0]):
            stage = vs[v, 0]
            if stage == IDLE:
                continue
            env = vs[v, 5]
            if stage == ATTACK:
                env += attack_inc
                if env >= 1.0:
                    env = 1.0
                    vs[v, 0] = DECAY
            elif stage == DECAY:
                env = sustain + (env - sustain) * decay_coef
            else:
                env *= release_coef
                if env < SILENT:
                    vs[v, 0] = IDLE
                    vs[v, 5] = 0.0
                    continue
            vs[v, 5] = env
            ch = int(vs[v, 2])
            freq = midi_to_hz(vs[v, 1] + chan[ch, 0] * bend_range)
            dt = min(freq / sr, 0.5)
            phase = vs[v, 4]
            x = _oscillator(wave, phase, dt) * env * vs[v, 3]
            phase += dt
            vs[v, 4] = phase - 1.0 if phase >= 1.0 else phase
            # TPT state-variable low-pass (Zavalishin)
            ic1, ic2 = vs[v, 9], vs[v, 10]
            v3 = x - ic2
            v1 = a1 * ic1 + a2 * v3
            v2 = ic2 + a2 * ic1 + a3 * v3
            vs[v, 9] = 2.0 * v1 - ic1
            vs[v, 10] = 2.0 * v2 - ic2
            acc += v2
        out[i] = acc * gain * VOICE_GAIN
    while e < n_ev:  # events stamped past the block's end are applied at its end
        _handle_event(vs, chan, events[e], block_start + frames)
        e += 1


class PolySynth(Node):
    """Polyphonic synth voice. Notes, pedal and bend arrive as events; stereo out."""

    ACCEPTS_NOTES = True
    OPTIONS = {
        "voices": Option(int, default=16, lo=1, hi=64, doc="polyphony"),
        "wave": Option(str, default="saw", choices=WAVES),
        "bend_range": Option(float, default=2.0, lo=0.0, hi=24.0, doc="pitch bend range, semitones"),
    }
    PARAMS = {
        "cutoff": Param(6000.0, 20.0, 20000.0, "Hz", "low-pass cutoff"),
        "resonance": Param(0.707, 0.5, 10.0, "Q"),
        "gain_db": Param(-6.0, -60.0, 12.0, "dB"),
        "attack": Param(0.005, 0.001, 5.0, "s"),
        "decay": Param(0.3, 0.001, 10.0, "s"),
        "sustain": Param(0.6, 0.0, 1.0, "level"),
        "release": Param(0.3, 0.001, 10.0, "s"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        self.outputs = {"out": 2}
        self.wave = WAVES.index(self.options["wave"])

    def prepare(self, ctx) -> None:
        self.sample_rate = float(ctx.sample_rate)
        self.voice_state = np.zeros((self.options["voices"], 11), np.float64)
        self.channel_state = np.zeros((16, 2), np.float64)
        self.mono = np.zeros(ctx.block, np.float32)

    def process(self, io) -> None:
        p, P = self.params, self.P
        synth_kernel(self.mono, io.events, io.block_start, self.voice_state, self.channel_state,
                     self.wave, self.sample_rate, self.options["bend_range"],
                     p[P.attack], p[P.decay], p[P.sustain], p[P.release], p[P.cutoff], p[P.resonance],
                     10.0 ** (p[P.gain_db] / 20.0))
        out = io.outputs["out"]
        out[0] = self.mono
        out[1] = self.mono

    def active_voices(self) -> int:
        return int(np.count_nonzero(self.voice_state[:, 0]))

    def reset(self) -> None:
        self.voice_state[:] = 0.0
        self.channel_state[:] = 0.0
