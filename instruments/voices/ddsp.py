"""The DDSP voice: a trained decoder driving the harmonic + noise kernels, live.

Two ways to play it (node type ``"ddsp"``):

* **Tone transfer** — ``listener = "<pitch node id>"``: every control frame
  (2.67 ms; 128 samples at 48 kHz) the voice reads that listener's
  ``f0_held_hz``, ``voicing`` and ``loudness_db`` at the frame's last sample,
  runs one decoder step and synthesises the frame. Transposition
  (``transpose``, semitones, 0 by default), an optional automatic octave
  shift into the instrument's range (``auto_octave``, chosen at each voiced
  onset), a loudness offset (``loudness_offset``, dB, for the input level).
  Unvoiced or quiet input (below ``gate_db``) closes a 5 ms gate: silence,
  never a stuck tone; digital silence in gives exact digital silence out.
* **MIDI instrument** — note events (MIDI, OSC, Piano Genie) become f0 and
  loudness envelopes (``attack``, ``release``, ``vibrato_depth`` / ``_rate`` /
  ``_delay``, ``glide``, velocity → loudness over the training data's range,
  pitch bend) driving the same decoder; mono with legato by default
  (``voices = 1``, a held-note stack), up to 4 voices.

Everything runs in the audio callback: the decoder step is a numba port of the
torch GRU decoder (``decoder_step``, tested to agree with torch), then the
kernels of :mod:`cadenza.engine.dsp.ddsp`; no worker thread, no allocation.
Events and listener values apply at control-frame granularity (≤ 2.67 ms).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numba import njit

from cadenza.engine.errors import ModelError
from cadenza.engine.events import Kind
from cadenza.engine.dsp.noise import noise_state, white_noise
from cadenza.engine.dsp.nn import exp_sigmoid, gru_cell
from cadenza.engine.node import Node, Option, Param
from cadenza.engine.dsp.units import hz_to_midi, midi_to_hz, semitones_to_ratio
from cadenza.engine.dsp.ddsp import (harmonic_amplitudes, harmonic_render, noise_matrix,
                                      noise_render, taper_hz)

MODELS = Path(__file__).resolve().parents[2] / "models" / "ddsp"
LEAK = 0.1
GATE_TIME_S = 0.005  # the tone-transfer gate opens and closes linearly over this long
SILENT = 1e-4  # gate / envelope level treated as closed
LOUD_FLOOR_DB = -120.0
MAX_VOICES = 4


@njit(nogil=True, cache=True, fastmath=True, inline="always")
def _affine(w, b, x, n_in, out, leaky):
    for i in range(w.shape[0]):
        acc = b[i]
        for j in range(n_in):
            acc += w[i, j] * x[j]
        out[i] = acc if (acc > 0.0 or not leaky) else LEAK * acc


@njit(nogil=True, cache=True, fastmath=True)
def decoder_step(x, h, w1, b1, w2, b2, wih, bih, whh, bhh, wo1, bo1, wo2, bo2, s1, s2, gi, gh, cat, raw):
    """One frame of the GRU decoder: inputs ``x`` (3,) scaled as in ``cadenza.models.ddsp.model.scale_inputs``;
    ``h`` (hidden,) updated in place; raw outputs into ``raw`` (1 + harmonics + bands,).
    ``s1``, ``s2`` (hidden,), ``gi``, ``gh`` (3·hidden,), ``cat`` (hidden + 3,) are scratch."""
    n = h.shape[0]
    _affine(w1, b1, x, 3, s1, True)
    _affine(w2, b2, s1, n, s2, True)
    _affine(wih, bih, s2, n, gi, False)
    _affine(whh, bhh, h, n, gh, False)
    gru_cell(gi, gh, h)
    for i in range(n):
        cat[i] = h[i]
    for j in range(3):
        cat[n + j] = x[j]
    _affine(wo1, bo1, cat, n + 3, s1, True)
    _affine(wo2, bo2, s1, n, raw, False)


@njit(nogil=True, cache=True)
def voice_hop(out, f0_prev, f0, x, gate_prev, gate, noise_bias, sr, max_hz, mat, h, weights_a, weights_b,
              scratch, raw, dist, amps_old, amps_new, mags, phase, noise, noise_gen, ir, work, tail):
    """Decoder step + synthesis of one hop into ``out`` (hop,) (added). Harmonic amplitudes and
    noise magnitudes are scaled by the gate (0..1); a closed gate costs no decoder step."""
    n_h = dist.shape[0]
    n_b = mags.shape[0]
    if gate > SILENT:
        w1, b1, w2, b2, wih, bih = weights_a
        whh, bhh, wo1, bo1, wo2, bo2 = weights_b
        s1, s2, gi, gh, cat = scratch
        decoder_step(x, h, w1, b1, w2, b2, wih, bih, whh, bhh, wo1, bo1, wo2, bo2, s1, s2, gi, gh, cat, raw)
        amp = exp_sigmoid(raw[0]) * gate
        for k in range(n_h):
            dist[k] = exp_sigmoid(raw[1 + k])
        for b in range(n_b):
            mags[b] = exp_sigmoid(raw[1 + n_h + b] + noise_bias) * gate
        harmonic_amplitudes(amp, dist, f0, max_hz, taper_hz(max_hz), amps_new)
    else:
        for k in range(n_h):
            amps_new[k] = 0.0
        for b in range(n_b):
            mags[b] = 0.0
    if gate > SILENT or gate_prev > SILENT:
        harmonic_render(out, f0_prev, f0, amps_old, amps_new, phase, sr, max_hz, taper_hz(max_hz))
        white_noise(noise, noise_gen)
    else:  # closed: only the noise filter's tail still drains
        for i in range(noise.shape[0]):
            noise[i] = 0.0
    noise_render(out, noise, mags, mat, ir, work, tail)
    for k in range(n_h):
        amps_old[k] = amps_new[k]


class NumbaDecoder:
    """The torch decoder's weights as float32 arrays for :func:`decoder_step`, plus its metadata."""

    def __init__(self, path: str | Path):
        from cadenza.models.ddsp.model import N_BANDS, N_HARMONICS, NOISE_BIAS, load

        decoder, self.meta = load(path)
        sd = {k: v.detach().numpy().astype(np.float32) for k, v in decoder.state_dict().items()}
        c = np.ascontiguousarray
        self.weights_a = (c(sd["inp.0.weight"]), c(sd["inp.0.bias"]), c(sd["inp.2.weight"]), c(sd["inp.2.bias"]),
                          c(sd["gru.weight_ih_l0"]), c(sd["gru.bias_ih_l0"]))
        self.weights_b = (c(sd["gru.weight_hh_l0"]), c(sd["gru.bias_hh_l0"]), c(sd["out.0.weight"]),
                          c(sd["out.0.bias"]), c(sd["out.2.weight"]), c(sd["out.2.bias"]))
        self.hidden = decoder.hidden
        self.n_out = self.weights_b[4].shape[0]
        self.n_harmonics = N_HARMONICS
        self.n_bands = N_BANDS
        self.band_hz = decoder.band_hz
        self.hop_s = decoder.hop / decoder.sample_rate
        self.noise_bias = float(NOISE_BIAS)

    def scratch(self):
        n = self.hidden
        return (np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(3 * n, np.float32),
                np.zeros(3 * n, np.float32), np.zeros(n + 3, np.float32))


def model_path(name: str) -> Path:
    """``models/ddsp/<name>.pt`` for a bare name, else the path as given."""
    p = Path(name)
    return p if p.suffix == ".pt" else MODELS / f"{name}.pt"


def scale_inputs(f0_hz: float, loudness_db: float, voicing: float, x: np.ndarray) -> None:
    """Scalar twin of ``cadenza.models.ddsp.model.scale_inputs`` into ``x`` (3,)."""
    if f0_hz > 0.0:
        midi = hz_to_midi(max(f0_hz, 1e-3))
        x[0] = min(max(midi, 0.0), 127.0) / 127.0
    else:
        x[0] = 0.0
    x[1] = min(max((loudness_db + 100.0) / 100.0, 0.0), 1.2)
    x[2] = min(max(voicing, 0.0), 1.0)


class _Voice:
    """State of one synth voice: decoder memory, oscillator phase, noise tail, envelopes."""

    def __init__(self, dec: NumbaDecoder, taps: int, hop: int, seed: int):
        self.seed = seed
        self.noise_gen = noise_state(seed)
        self.h = np.zeros(dec.hidden, np.float32)
        self.scratch = dec.scratch()
        self.raw = np.zeros(dec.n_out, np.float32)
        self.dist = np.zeros(dec.n_harmonics, np.float32)
        self.amps_old = np.zeros(dec.n_harmonics, np.float32)
        self.amps_new = np.zeros(dec.n_harmonics, np.float32)
        self.mags = np.zeros(dec.n_bands, np.float32)
        self.phase = np.zeros(1)
        self.noise = np.zeros(hop, np.float32)
        self.ir = np.zeros(taps, np.float32)
        self.work = np.zeros(hop + taps, np.float32)
        self.tail = np.zeros(taps - 1, np.float32)
        self.x = np.zeros(3, np.float32)
        self.reset()

    def reset(self) -> None:
        for a in (self.h, self.amps_old, self.amps_new, self.mags, self.phase, self.tail):
            a[:] = 0.0
        self.noise_gen[0] = self.seed  # the same noise after every load and reset, whatever else plays
        self.f0 = 0.0  # Hz, the note's f0 under glide (notes) or the last input f0 (tone transfer)
        self.synth_f0 = 0.0  # Hz, f0 synthesised at the end of the last hop
        self.gate = 0.0  # last frame's gate 0..1
        self.quiet_hops = 0  # hops since the gate closed (the noise tail drains in 3)
        self.note = -1  # MIDI note held (-1: none)
        self.target_f0 = 0.0  # Hz, where a glide is heading
        self.env = 0.0  # linear envelope 0..1
        self.releasing = False
        self.loud_db = LOUD_FLOOR_DB  # loudness of the note at full envelope
        self.age_s = 0.0  # seconds since the note began (vibrato delay)
        self.started = 0  # allocation order, for stealing the oldest
        self.octave = 0  # tone transfer: octaves added since the last voiced onset


class DDSPVoice(Node):
    """DDSP voice node (type ``"ddsp"``): tone transfer from a pitch listener, or notes."""

    ACCEPTS_NOTES = True
    OPTIONS = {
        "model": Option(str, default="violin", doc="a name in models/ddsp (violin, flute) or a .pt path"),
        "listener": Option(str, default="", doc="id of a pitch listener node: tone transfer from its controls"),
        "voices": Option(int, default=1, lo=1, hi=MAX_VOICES, doc="1 = mono legato; up to 4 for chords"),
        "auto_octave": Option(bool, default=False, doc="shift each voiced phrase by octaves into the range"),
        "bend_range": Option(float, default=2.0, lo=0.0, hi=24.0, doc="pitch bend range, semitones"),
        "seed": Option(int, default=1, lo=0, hi=2**31 - 1, doc="noise generator seed"),
    }
    PARAMS = {
        "transpose": Param(0.0, -36.0, 36.0, "semitones", "pitch shift of the played f0"),
        "gain_db": Param(0.0, -60.0, 24.0, "dB", "output gain"),
        "loudness_offset": Param(0.0, -60.0, 60.0, "dB", "added to the input loudness (tone transfer)"),
        "gate_db": Param(-60.0, -120.0, 0.0, "dB", "input loudness below which the voice is silent"),
        "attack": Param(0.04, 0.002, 2.0, "s", "note attack"),
        "release": Param(0.15, 0.005, 5.0, "s", "note release (to -60 dB)"),
        "glide": Param(0.04, 0.0, 2.0, "s", "legato glide time constant"),
        "vibrato_depth": Param(15.0, 0.0, 100.0, "cents"),
        "vibrato_rate": Param(5.5, 0.5, 12.0, "Hz"),
        "vibrato_delay": Param(0.25, 0.0, 3.0, "s", "vibrato fades in after this"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        self.outputs = {"out": 2}
        self.controls = {"f0_hz": "the voice's synthesised f0, Hz (0 while silent)"}
        path = model_path(self.options["model"])
        if not path.exists():
            raise ModelError(f"{path}: DDSP model not found (node.{node_id}; train it: "
                             f"python -m cadenza.models.ddsp.train --instrument {self.options['model']})")
        self.path = path
        listener = self.options["listener"]
        if listener:
            self.reads = {"f0": f"{listener}.f0_held_hz", "voicing": f"{listener}.voicing",
                          "loudness": f"{listener}.loudness_db"}

    def prepare(self, ctx) -> None:
        self.dec = dec = NumbaDecoder(self.path)
        self.sr = float(ctx.sample_rate)
        self.hop = max(8, int(round(dec.hop_s * ctx.sample_rate)))
        self.hop_s = self.hop / self.sr
        self.max_hz = min(self.sr / 2.0, dec.band_hz)
        self.mat = noise_matrix(dec.n_bands, dec.band_hz, self.sr)
        n_voices = 1 if self.options["listener"] else self.options["voices"]
        self.voices = [_Voice(dec, self.mat.shape[0], self.hop, self.options["seed"] + v) for v in range(n_voices)]
        self.fifo = np.zeros(ctx.block + self.hop, np.float32)
        meta = dec.meta
        self.loud_lo, self.loud_hi = meta.get("loudness_range", (-50.0, -20.0))
        self.midi_lo, self.midi_hi = meta.get("pitch_range", (55.0, 88.0))
        self.order = 0
        self.published_f0 = 0.0

    def reset(self) -> None:
        for v in self.voices:
            v.reset()
        self.filled = 0
        self.bend = 0.0  # semitones
        self.held = []  # mono: keys held, oldest first

    # ---- control-rate logic (Python scalars, once per 2.67 ms frame) -----------------------
    def _frame_tone_transfer(self, v: _Voice, f0_in: float, voicing: float, loud_in: float) -> tuple:
        p = self.param
        loud = loud_in + p("loudness_offset")
        voiced = voicing >= 0.5 and f0_in > 0.0 and loud_in > p("gate_db")
        if voiced and v.gate <= SILENT and self.options["auto_octave"]:
            midi = hz_to_midi(f0_in) + p("transpose")
            centre = 0.5 * (self.midi_lo + self.midi_hi)
            v.octave = int(round((centre - midi) / 12.0))
        step = self.hop_s / GATE_TIME_S
        gate = min(1.0, v.gate + step) if voiced else max(0.0, v.gate - step)
        if f0_in > 0.0:
            v.f0 = f0_in * semitones_to_ratio(p("transpose") + 12.0 * v.octave)
        return v.f0, loud, voicing, gate

    def _frame_notes(self, v: _Voice) -> tuple:
        p = self.param
        dt = self.hop_s
        if v.note < 0 and not v.releasing:
            return v.f0, LOUD_FLOOR_DB, 0.0, 0.0
        if v.releasing:
            v.env *= math.exp(-dt * 6.9 / p("release"))  # -60 dB after `release` seconds
            if v.env < 1e-3:
                v.env, v.releasing, v.note = 0.0, False, -1
        else:
            v.env = min(1.0, v.env + dt / p("attack"))
        glide = p("glide")
        if glide > 0.0 and v.f0 > 0.0:
            k = 1.0 - math.exp(-dt / glide)
            v.f0 = math.exp(math.log(v.f0) + (math.log(v.target_f0) - math.log(v.f0)) * k)
        else:
            v.f0 = v.target_f0
        v.age_s += dt
        ramp = min(max((v.age_s - p("vibrato_delay")) / 0.3, 0.0), 1.0)
        vib = p("vibrato_depth") * ramp * math.sin(2.0 * math.pi * p("vibrato_rate") * v.age_s)
        f0 = v.f0 * semitones_to_ratio(vib / 100.0 + self.bend + p("transpose"))
        loud = v.loud_db + 20.0 * math.log10(max(v.env, 1e-6))
        gate = min(1.0, v.env * 20.0) if v.env > 0.0 else 0.0
        return f0, loud, 1.0, gate

    def _note_on(self, note: int, velocity: int) -> None:
        f0 = midi_to_hz(float(note))
        loud = self.loud_lo + (self.loud_hi - self.loud_lo) * (velocity / 127.0)
        self.order += 1
        if len(self.voices) == 1:
            v = self.voices[0]
            self.held = [n for n in self.held if n != note] + [note]
            if v.note < 0 or v.releasing:  # a new phrase: jump, re-attack; else legato glide
                v.age_s, v.f0, v.loud_db = 0.0, f0, loud
            v.note, v.target_f0, v.releasing = note, f0, False
            return
        v = min(self.voices, key=lambda u: (u.note >= 0 and not u.releasing, u.env if u.releasing else 0,
                                            u.started))
        v.note, v.target_f0, v.f0, v.releasing, v.loud_db = note, f0, f0, False, loud
        v.env, v.age_s, v.started = 0.0, 0.0, self.order

    def _note_off(self, note: int) -> None:
        if len(self.voices) == 1:
            self.held = [n for n in self.held if n != note]
            v = self.voices[0]
            if v.note == note and not v.releasing:
                if self.held:  # legato back to the last key still held
                    v.note = self.held[-1]
                    v.target_f0 = midi_to_hz(float(v.note))
                else:
                    v.releasing = True
            return
        for v in self.voices:
            if v.note == note and not v.releasing:
                v.releasing = True

    def _event(self, ev) -> None:
        kind = ev["kind"]
        if kind == Kind.NOTE_ON and ev["b"] > 0:
            self._note_on(int(ev["a"]), int(ev["b"]))
        elif kind == Kind.NOTE_OFF or kind == Kind.NOTE_ON:
            self._note_off(int(ev["a"]))
        elif kind == Kind.PITCH_BEND:
            self.bend = float(ev["value"]) * self.options["bend_range"]
        elif kind == Kind.PANIC:
            self.reset()

    # ---- audio --------------------------------------------------------------------------------
    def _render_hop(self, dst: np.ndarray, ctrl_index: int, io) -> None:
        dec = self.dec
        tone = bool(self.options["listener"])
        for v in self.voices:
            if tone:
                c = io.controls
                f0, loud, voicing, gate = self._frame_tone_transfer(
                    v, float(c["f0"][ctrl_index]), float(c["voicing"][ctrl_index]), float(c["loudness"][ctrl_index]))
            else:
                f0, loud, voicing, gate = self._frame_notes(v)
            f0 = min(max(f0, 0.0), self.max_hz)
            if gate <= SILENT and v.gate <= SILENT:
                v.gate = 0.0
                v.quiet_hops += 1
                if v.quiet_hops > 3:  # closed and drained: nothing to compute
                    continue
            else:
                v.quiet_hops = 0
            f0_prev = v.synth_f0 if v.synth_f0 > 0.0 else f0
            scale_inputs(f0, loud, voicing, v.x)
            voice_hop(dst, f0_prev, f0, v.x, v.gate, gate, dec.noise_bias, self.sr, self.max_hz, self.mat,
                      v.h, dec.weights_a, dec.weights_b, v.scratch, v.raw, v.dist, v.amps_old, v.amps_new,
                      v.mags, v.phase, v.noise, v.noise_gen, v.ir, v.work, v.tail)
            v.gate = gate
            v.synth_f0 = f0
            self.published_f0 = f0 if gate > SILENT else 0.0

    def process(self, io) -> None:
        frames = io.outputs["out"].shape[1]
        events = io.events
        e, n_ev = 0, len(events)
        # A hop is rendered in the block holding its first sample, from the events stamped before
        # that sample and the listener's controls at it: so the output does not depend on the block
        # size (at most one hop, 2.7 ms, later than reading ahead to the hop's end would be).
        while self.filled < frames:
            start = self.filled
            while e < n_ev and events[e]["time"] - io.block_start < start:
                self._event(events[e])
                e += 1
            dst = self.fifo[start:start + self.hop]
            dst[:] = 0.0
            self._render_hop(dst, start, io)
            self.filled += self.hop
        while e < n_ev:
            self._event(events[e])
            e += 1
        out = io.outputs["out"]
        g = 10.0 ** (self.param("gain_db") / 20.0)
        np.multiply(self.fifo[:frames], g, out=out[0])
        out[1] = out[0]
        rest = self.filled - frames
        self.fifo[:rest] = self.fifo[frames:self.filled]
        self.filled = rest
        if "f0_hz" in io.published:
            io.published["f0_hz"][:] = self.published_f0
