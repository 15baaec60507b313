"""Live harmonizer: one sung line in, the neural vocoder sings it back with up to 3 harmony lines.

Voice in (mono) → the streaming pitch tracker (held f0, voicing) and causal
80-band log-mel frames → the neural vocoder's GRU (numba port of
``models/vocoder``) → per frame an amplitude, a log spectral envelope and
noise band magnitudes → the DDSP harmonic-plus-noise kernels of
``engine/dsp/ddsp.py`` render

- the original line at the sung f0 (with ``voices = 0`` the node is the plain
  neural vocoder: resynthesis);
- up to 3 harmony lines. Line i follows the i-th held MIDI note (NOTE_ON /
  NOTE_OFF events, oldest first) with the singer's vibrato kept (f0 × the
  ratio of the sung f0 to its 150 ms average); with no note held for it, it
  follows ``intervals[i]`` semitones from the sung f0, else it is silent.
  Every line samples the same spectral envelope at its own harmonics, so the
  voice's formants stay where they are (no chipmunk).

Breath and consonants (the noise part) are rendered once, with the original
line. Harmony lines are panned left / right / centre. Note events take
effect at the start of the control frame (2.67 ms) that contains them.

Delay: the vocoder is trained to reproduce the input ``DELAY_HOPS`` frames
late (5.3 ms), plus up to one frame of buffering when the block size is not a
multiple of the frame hop.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numba import njit

from cadenza.engine.errors import ModelError
from cadenza.engine.events import Kind
from cadenza.engine.dsp.noise import noise_state, white_noise
from cadenza.engine.node import Node, Option, Param
from cadenza.engine.dsp.units import midi_to_hz, semitones_to_ratio
from cadenza.engine.dsp import ddsp as D
from cadenza.engine.dsp.pitch import MODEL_INPUT_SETTINGS, PitchTracker
from cadenza.models.vocoder import features as F
from cadenza.models.vocoder import model as M

WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "vocoder" / "vocoder.pt"
MAX_LINES = 4  # the original + 3 harmony lines
VIBRATO_S = 0.15  # averaging time of the sung f0 whose ratio harmony lines keep, s
PANS = (0.0, -0.6, 0.6, 0.0)  # per line, -1 left .. 1 right
NOISE_SEED = 1  # the breath noise's generator: the same stream after every load and reset


@njit(nogil=True, cache=True)
def render_frame(out, line_f0, line_gain, env, amp, noise_mags, weights, amps_new, amps_prev,
                 f0_prev, phase, pan, mono, white, noise_gen, mat, ir, work, tail, sr, max_hz, taper):
    """Render one hop of every line into ``out`` (2, hop) float32 (overwritten).

    line_f0 / line_gain (L,): each line's target f0 (Hz, 0 = silent) and linear gain;
    env (80,) log envelope; amp linear; noise_mags (bands,); weights / amps_new / amps_prev (L, H);
    f0_prev (L,); phase (L, 1); pan (L,) -1..1; mono (hop,) scratch; white (hop,) noise drawn from
    ``noise_gen`` (the node's own generator);
    mat / ir / work / tail: the noise FIR state of ``noise_render``.
    """
    hop = out.shape[1]
    for c in range(2):
        for i in range(hop):
            out[c, i] = 0.0
    for v in range(line_f0.shape[0]):
        f0 = line_f0[v]
        if f0 <= 0.0:  # silent line: fade out at its last pitch, then idle
            if f0_prev[v] <= 0.0:
                continue
            f0 = f0_prev[v]
            for k in range(amps_new.shape[1]):
                amps_new[v, k] = 0.0
        else:
            if f0_prev[v] <= 0.0:  # a line starting: no glide up from 0 Hz, fade in
                f0_prev[v] = f0
                for k in range(amps_prev.shape[1]):
                    amps_prev[v, k] = 0.0
            M.envelope_weights_nb(env, f0, weights[v])
            D.harmonic_amplitudes(amp * line_gain[v], weights[v], f0, max_hz, taper, amps_new[v])
        for i in range(hop):
            mono[i] = 0.0
        D.harmonic_render(mono, f0_prev[v], f0, amps_prev[v], amps_new[v], phase[v], sr, max_hz, taper)
        if v == 0:
            white_noise(white, noise_gen)
            D.noise_render(mono, white, noise_mags, mat, ir, work, tail)
        left = min(1.0, 1.0 - pan[v])  # balance law: the centre is unity in both channels
        right = min(1.0, 1.0 + pan[v])
        for i in range(hop):
            out[0, i] += left * mono[i]
            out[1, i] += right * mono[i]
        silent = line_f0[v] <= 0.0
        for k in range(amps_new.shape[1]):
            amps_prev[v, k] = amps_new[v, k]
        f0_prev[v] = 0.0 if silent else f0


class Harmonizer(Node):
    """Neural vocoder voice with harmony lines: mono voice ``in``, stereo ``out``; MIDI notes pick the harmonies."""

    ACCEPTS_NOTES = True
    OPTIONS = {
        "voices": Option(int, default=3, lo=0, hi=3, doc="harmony lines besides the original"),
        "intervals": Option(list, default=[], doc="semitones of each harmony line while no MIDI note is held for it"),
        "weights": Option(str, default="", doc="vocoder weights (default: models/vocoder/vocoder.pt)"),
    }
    PARAMS = {
        "lead_db": Param(0.0, -60.0, 12.0, "dB", "level of the original line"),
        "harmony_db": Param(-3.0, -60.0, 12.0, "dB", "level of each harmony line"),
        "gain_db": Param(0.0, -60.0, 24.0, "dB", "output gain"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        intervals = self.options["intervals"]
        if len(intervals) > 3 or not all(isinstance(x, (int, float)) and abs(x) <= 24 for x in intervals):
            raise ValueError(f"node.{node_id}.intervals: found {intervals!r}, allowed up to 3 numbers in -24..24")
        self.inputs = {"in": 1}
        self.outputs = {"out": 2}
        self.path = Path(self.options["weights"] or WEIGHTS)
        if not self.path.exists():
            raise ModelError(f"{self.path}: vocoder weights not found "
                             f"(node.{node_id}; train them: python -m cadenza.models.vocoder.train)")
        self.n_lines = 1 + self.options["voices"]
        self.intervals = np.full(3, np.nan)
        self.intervals[: len(intervals)] = intervals

    def prepare(self, ctx) -> None:
        self.held: list[int] = []  # held MIDI notes, oldest first
        self.net = M.load(self.path)
        self.w = M.numba_weights(self.net)
        sr = float(ctx.sample_rate)
        self.sr = sr
        self.block = ctx.block
        self.hop = F.hop_samples(sr)
        self.mel = F.MelAnalyser(sr)
        self.tracker = PitchTracker(int(sr), **MODEL_INPUT_SETTINGS)  # what the weights were trained on
        self.hops, self.pub = self.tracker.buffers(ctx.block)
        self.taper = D.taper_hz(M.MAX_HZ)
        self.mat = D.noise_matrix(M.N_NOISE, M.NOISE_HZ, sr)
        taps = self.mat.shape[0]
        self.ir = np.zeros(taps, np.float32)
        self.work = np.zeros(self.hop + taps, np.float32)
        self.tail = np.zeros(taps - 1, np.float32)
        L, H = self.n_lines, M.N_HARMONICS
        self.h = np.zeros(M.HIDDEN, np.float32)
        self.proj = np.zeros(M.HIDDEN, np.float32)
        self.gates = np.zeros((2, 3 * M.HIDDEN), np.float32)
        self.y = np.zeros(M.N_OUT, np.float32)
        self.amp = np.zeros(1, np.float32)
        self.env = np.zeros(F.N_MELS, np.float32)
        self.noise = np.zeros(M.N_NOISE, np.float32)
        self.weights = np.zeros((L, H), np.float64)
        self.amps_new = np.zeros((L, H), np.float64)
        self.amps_prev = np.zeros((L, H), np.float64)
        self.f0_prev = np.zeros(L, np.float64)
        self.phase = np.zeros((L, 1), np.float64)
        self.pan = np.array(PANS[:L], np.float64)
        self.line_f0 = np.zeros(L, np.float64)
        self.line_gain = np.zeros(L, np.float64)
        self.mono = np.zeros(self.hop, np.float32)
        self.white = np.zeros(self.hop, np.float32)
        self.noise_gen = noise_state(NOISE_SEED)
        self.frame_out = np.zeros((2, self.hop), np.float32)
        # input gathered into hops; output FIFO primed so a block never waits for a frame
        self.pending = np.zeros(self.hop, np.float32)
        self.fill = 0
        self.prime = 0 if self.block % self.hop == 0 else self.hop - math.gcd(self.block, self.hop)
        self.fifo = np.zeros((2, self.block + 2 * self.hop + self.prime), np.float32)
        self.vib_coef = 1.0 - math.exp(-self.hop / (VIBRATO_S * sr))
        self.latency_samples = M.DELAY_HOPS * self.hop + self.prime

    def reset(self) -> None:
        self.held.clear()
        self.noise_gen[0] = NOISE_SEED
        for arr in (self.h, self.amps_prev, self.amps_new, self.f0_prev, self.phase, self.tail, self.fifo):
            arr[...] = 0.0
        self.tracker.reset()
        self.mel.reset()
        self.fill = 0
        self.avail = self.prime
        self.f0_slow = 0.0

    def _note(self, ev) -> None:
        kind, note = int(ev["kind"]), int(ev["a"])
        if kind == Kind.NOTE_ON and ev["b"] > 0:
            if note not in self.held:
                self.held.append(note)
        elif kind in (Kind.NOTE_ON, Kind.NOTE_OFF) and note in self.held:
            self.held.remove(note)

    def _frame(self, f0: float, voicing: float) -> None:
        """One control frame from the hop in ``pending``: model step, then every line rendered to the FIFO."""
        mel = self.mel.push(self.pending)
        M.gru_step(mel, f0, voicing, self.w, self.h, self.proj, self.gates, self.y)
        M.decode_outputs(self.y, mel, self.amp, self.env, self.noise)
        if voicing >= 0.5 and f0 > 0.0:
            self.f0_slow = f0 if self.f0_slow <= 0.0 else self.f0_slow + self.vib_coef * (f0 - self.f0_slow)
        vibrato = f0 / self.f0_slow if self.f0_slow > 0.0 else 1.0
        p, P = self.params, self.P
        self.line_f0[0] = f0
        self.line_gain[0] = 10.0 ** (p[P.lead_db] / 20.0)
        harmony_gain = 10.0 ** (p[P.harmony_db] / 20.0)
        for i in range(1, self.n_lines):
            if i - 1 < len(self.held):
                self.line_f0[i] = midi_to_hz(float(self.held[i - 1])) * vibrato if f0 > 0.0 else 0.0
            elif not math.isnan(self.intervals[i - 1]):
                self.line_f0[i] = f0 * semitones_to_ratio(float(self.intervals[i - 1]))
            else:
                self.line_f0[i] = 0.0
            self.line_gain[i] = harmony_gain
        render_frame(self.frame_out, self.line_f0, self.line_gain, self.env, float(self.amp[0]), self.noise,
                     self.weights, self.amps_new, self.amps_prev, self.f0_prev, self.phase, self.pan,
                     self.mono, self.white, self.noise_gen, self.mat, self.ir, self.work, self.tail, self.sr, M.MAX_HZ,
                     self.taper)
        self.fifo[:, self.avail: self.avail + self.hop] = self.frame_out
        self.avail += self.hop

    def process(self, io) -> None:
        x = io.inputs["in"][0]
        frames = x.shape[0]
        events = io.events
        e, n_ev = 0, len(events)
        self.tracker.process_into(x, self.hops, self.pub)
        pos = 0
        while pos < frames:
            take = min(self.hop - self.fill, frames - pos)
            self.pending[self.fill: self.fill + take] = x[pos: pos + take]
            self.fill += take
            pos += take
            if self.fill == self.hop:
                self.fill = 0
                # the notes held at the frame's end sample, whatever the block size
                while e < n_ev and events[e]["time"] - io.block_start < pos:
                    self._note(events[e])
                    e += 1
                self._frame(float(self.pub[3, pos - 1]), float(self.pub[1, pos - 1]))
        while e < n_ev:
            self._note(events[e])
            e += 1
        out = io.outputs["out"]
        gain = 10.0 ** (self.params[self.P.gain_db] / 20.0)
        np.multiply(self.fifo[:, :frames], gain, out=out)
        rest = self.avail - frames
        self.fifo[:, :rest] = self.fifo[:, frames: self.avail]
        self.avail = rest
