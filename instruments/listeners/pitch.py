"""The pitch listener node: f0 (Hz), voicing probability and A-weighted loudness (dB) of its input.

The streaming core is :class:`cadenza.engine.dsp.pitch.PitchTracker` (causal,
2 ms hops, fixed delay ``DELAY_S``).

:class:`PitchListener` is the graph node (type ``"pitch"``). It publishes the
controls ``f0_hz`` (0 while unvoiced), ``voicing`` (0..1, voiced when >= 0.5),
``loudness_db`` and ``f0_held_hz`` (the last voiced f0, held), and optionally
emits events that leave the engine (OSC / MIDI out):

- ``events_hz > 0``: at that rate, a ``Kind.PITCH`` event (a = voiced 0/1,
  value = f0 Hz, 0 while unvoiced) followed by a ``Kind.LOUDNESS`` event
  (value = dB) with the same time — OSC ``/cadenza/pitch <f0> <voiced> <loudness>``;
- ``midi = true``: pitch-to-MIDI — ``NOTE_ON`` / ``NOTE_OFF`` and
  ``PITCH_BEND`` (value -1..1 of ``bend_range`` semitones, 2 cent steps) on
  ``midi_channel``, sent to the node's ``notes_to`` (else out of the engine).
  A note starts once the pitch has held it for ``NOTE_HOPS`` hops and changes
  only when the pitch leaves it by half a step + ``hysteresis`` semitones; it
  ends on the first unvoiced hop.
"""

from __future__ import annotations

from cadenza.engine.dsp import pitch_kernels as K
from cadenza.engine.dsp.pitch import FMAX_HZ, FMIN_HZ, MODEL_INPUT_SETTINGS, PitchTracker
from cadenza.engine.dsp.units import hz_to_midi
from cadenza.engine.events import OUTBOUND, Kind
from cadenza.engine.node import Node, Option

NOTE_HOPS = 4  # pitch-to-MIDI: hops (8 ms) a new note must hold before it sounds


class PitchListener(Node):
    """Graph node around :class:`PitchTracker`: mono audio in, pitch controls and events out."""

    OPTIONS = {
        "fmin": Option(float, default=FMIN_HZ, lo=30.0, hi=1000.0, doc="lowest f0, Hz"),
        "fmax": Option(float, default=FMAX_HZ, lo=100.0, hi=4000.0, doc="highest f0, Hz"),
        "settings": Option(str, default="tuned", choices=("tuned", "model_inputs"),
                           doc="tracker settings: 'tuned' (the listener's best), or 'model_inputs' (those the DDSP "
                               "and vocoder weights were trained under: for a listener that drives a DDSP voice)"),
        "learned": Option(bool, default=True,
                          doc="the learned head (models/pitch) picks f0 and voicing, robust to noise and rooms; it "
                              "covers 55-1600 Hz (fmin / fmax within that). false: YIN's rules alone. 'model_inputs' "
                              "settings always use the rules"),
        "events_hz": Option(float, default=0.0, lo=0.0, hi=500.0,
                            doc="rate of PITCH + LOUDNESS events (OSC /cadenza/pitch), 0 = off"),
        "midi": Option(bool, default=False, doc="pitch-to-MIDI notes and pitch bend"),
        "midi_channel": Option(int, default=0, lo=0, hi=15),
        "bend_range": Option(float, default=2.0, lo=0.5, hi=24.0, doc="pitch bend range, semitones"),
        "hysteresis": Option(float, default=0.3, lo=0.0, hi=2.0,
                             doc="semitones beyond the half-step before a new MIDI note starts"),
        "min_loudness_db": Option(float, default=-60.0, lo=-120.0, hi=0.0,
                                  doc="no MIDI note starts below this loudness"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        self.inputs = {"in": 1}
        self.controls = {
            "f0_hz": "fundamental frequency, Hz (0 while unvoiced)",
            "voicing": "voicing probability 0..1 (voiced when >= 0.5)",
            "loudness_db": "A-weighted loudness, dB re full scale",
            "f0_held_hz": "last voiced f0, Hz, held through unvoiced stretches",
        }

    def prepare(self, ctx) -> None:
        o = self.options
        settings = MODEL_INPUT_SETTINGS if o["settings"] == "model_inputs" else {}
        head = None
        if o["learned"] and o["settings"] == "tuned":
            from cadenza.models.pitch.model import numba_weights  # torch: only when the head is used

            head = numba_weights()
        self.tracker = PitchTracker(ctx.sample_rate, o["fmin"], o["fmax"], head=head, **settings)
        self.latency_samples = round(self.tracker.delay_s * ctx.sample_rate)
        self.hops, self.pub = self.tracker.buffers(ctx.block)
        self.event_every = (max(1, round(ctx.sample_rate / o["events_hz"] / self.tracker.hop))
                            if o["events_hz"] > 0 else 0)

    def reset(self) -> None:
        self.tracker.reset()
        self.note = -1  # sounding MIDI note, -1 none
        self.bend = 0.0  # last bend sent, -1..1
        self.cand = -1  # note the pitch has been heading for
        self.cand_run = 0  # hops it has stayed there

    def process(self, io) -> None:
        x = io.inputs["in"][0]
        frames = x.shape[0]
        n = self.tracker.process_into(x, self.hops, self.pub)
        p = io.published
        p["f0_hz"][:] = self.pub[0, :frames]
        p["voicing"][:] = self.pub[1, :frames]
        p["loudness_db"][:] = self.pub[2, :frames]
        p["f0_held_hz"][:] = self.pub[3, :frames]
        if n == 0 or not (self.event_every or self.options["midi"]):
            return
        count = int(self.tracker.ist[K.I_COUNT])
        for k in range(n):
            offset = max(0, frames - (count - int(self.hops[3, k])) - 1)
            f0, v, loud = float(self.hops[0, k]), float(self.hops[1, k]), float(self.hops[2, k])
            voiced = v >= 0.5
            if self.event_every and int(self.hops[3, k]) // self.tracker.hop % self.event_every == 0:
                io.emit(offset, Kind.PITCH, 0, int(voiced), 0, f0 if voiced else 0.0, target=OUTBOUND)
                io.emit(offset, Kind.LOUDNESS, 0, 0, 0, loud, target=OUTBOUND)
            if self.options["midi"]:
                self._midi(io, offset, f0, voiced, loud)

    def _midi(self, io, offset: int, f0: float, voiced: bool, loud: float) -> None:
        """Pitch-to-MIDI with hysteresis: a note starts after ``NOTE_HOPS`` steady hops and
        changes only when the pitch leaves it by half a step + ``hysteresis`` semitones."""
        o = self.options
        ch = o["midi_channel"]
        if not voiced or loud < o["min_loudness_db"] or f0 <= 0.0:
            self.cand_run = 0
            if self.note >= 0:
                io.emit(offset, Kind.NOTE_OFF, ch, self.note, 0)
                self.note = -1
            return
        m = hz_to_midi(f0)
        if self.note < 0 or abs(m - self.note) > 0.5 + o["hysteresis"]:
            cand = int(min(max(round(m), 0), 127))
            self.cand_run = self.cand_run + 1 if cand == self.cand else 1
            self.cand = cand
            if self.cand_run < NOTE_HOPS:
                return
            if self.note >= 0:
                io.emit(offset, Kind.NOTE_OFF, ch, self.note, 0)
            self.note = cand
            velocity = int(min(max(127.0 * (loud + 60.0) / 60.0, 1.0), 127.0))
            self.bend = 0.0
            io.emit(offset, Kind.PITCH_BEND, ch, 0, 0, 0.0)
            io.emit(offset, Kind.NOTE_ON, ch, self.note, velocity)
        self.cand_run = 0
        bend = min(max((m - self.note) / o["bend_range"], -1.0), 1.0)
        if abs(bend - self.bend) * o["bend_range"] >= 0.02:
            self.bend = bend
            io.emit(offset, Kind.PITCH_BEND, ch, 0, 0, bend)
