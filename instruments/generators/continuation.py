"""The continuation generator: when the performer stops, it plays on from their last phrase, on the grid, in key.

:class:`ContinuationGenerator` (node type ``"continue"``) hears the performer's
notes (route MIDI notes to it: ``ACCEPTS_NOTES``), each placed on its
:class:`~cadenza.engine.grid.Grid` of sixteenths (the nearest step; its length
in steps from its NOTE_OFF). When no note has sounded for ``wait_bars`` bars it
continues the phrase — the notes of the last ``sampler.CONTEXT_STEPS`` heard —
with the learned continuation model (``models/continuation``) from the next bar
line, one bar at a time, until the performer plays again (a NOTE_ON stops it at
once; what was already sent still ends).

The model runs on the engine's worker lane (``Context.lane``; its numba port on a CPU), one job per bar,
asked for a bar before it sounds; ``process`` only plays notes that a job has
already put in this node's two bar slots, at their grid points. A bar whose job
has not come back by its bar line is skipped, never played late. Where no
engine runs the node (the harness) the jobs run at once, in ``process``.

Params: ``temperature`` (0 greedy), ``density`` (note vs rest), ``register_lo`` /
``register_hi`` (MIDI). With ``key_from`` = a chord listener's id, the notes keep
to the key it hears (its ``key`` control, tonic + 12 × mode; none until it knows).
Deterministic with ``seed`` (bar ``n`` of a continuation uses ``seed + n``).
With ``thru`` the performer's notes also go on to ``notes_to`` (passed on, not
sent out of the engine a second time), so the node is an insert between a
controller (or Piano Genie) and the voice.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from cadenza.engine.events import Kind
from cadenza.engine.grid import GridGenerator
from cadenza.engine.node import Option, Param
from cadenza.models.continuation.sampler import WEIGHTS, Continuer, key_mask, key_of_control

HEARD = 64  # the performer's notes kept (a ring): more than a 4-bar phrase holds
BAR_NOTES = 64  # notes one bar slot holds (the sampler plays at most 4 per sixteenth)
SLOTS = 2  # bar slots: the one sounding and the next, which the lane fills meanwhile
GATE = 0.95  # a note sounds this share of its duration


class ContinuationGenerator(GridGenerator):
    """Hears the performer; after ``wait_bars`` of silence, continues their phrase bar by bar."""

    ACCEPTS_NOTES = True
    OPTIONS = GridGenerator.OPTIONS | {
        "division": Option(str, default="sixteenth", choices=("sixteenth",),
                           doc="the model plays on a sixteenth-note grid"),
        "wait_bars": Option(int, default=1, lo=1, hi=16, doc="bars of silence before the continuation starts"),
        "key_from": Option(str, default="", doc="id of the chord listener whose key the notes keep to; '' none"),
        "weights": Option(str, default="", doc="continuation weights file ('' the shipped continuation.pt)"),
        "thru": Option(bool, default=False, doc="the performer's notes also go on to notes_to (an insert: "
                                                "the voice plays them, and the continuation after them)"),
    }
    PARAMS = GridGenerator.PARAMS | {
        "temperature": Param(1.0, 0.0, 2.0, "", "sampling temperature (0 greedy)"),
        "density": Param(1.0, 0.0, 4.0, "", "scales the probability of a note against a rest"),
        "register_lo": Param(48.0, 21.0, 108.0, "MIDI", "lowest note played"),
        "register_hi": Param(84.0, 21.0, 108.0, "MIDI", "highest note played"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        self.hears_key = bool(self.options["key_from"])
        if self.hears_key:
            self.reads["key"] = f"{self.options['key_from']}.key"

    def prepare(self, ctx) -> None:
        super().prepare(ctx)
        self.continuer = Continuer(self.options["weights"] or WEIGHTS)
        self.lane = ctx.lane() if ctx.lane is not None else None
        self.heard = np.zeros((HEARD, 4), np.int64)  # step, pitch, velocity, duration steps (-1: held)
        self.out = np.zeros((SLOTS, BAR_NOTES, 4), np.int64)  # step offset, pitch, velocity, duration steps
        self.out_count = np.zeros(SLOTS, np.int64)
        self.out_bar = np.full(SLOTS, -1, np.int64)  # the bar line (grid step) a slot holds; written last
        self.out_gen = np.zeros(SLOTS, np.int64)
        self.out_len = np.zeros(SLOTS, np.int64)  # grid steps in the slot's bar
        self.req = np.zeros((SLOTS, 5), np.int64)  # generation, bar line, bar steps, prime, bar number
        self.req_key = np.full(SLOTS, -1.0)
        self.jobs = tuple(partial(self._job, slot) for slot in range(SLOTS))

    def reset(self) -> None:
        super().reset()
        self.heard_count = 0
        self.held = 0
        self.last_sound = -1  # grid step of the last NOTE_ON / NOTE_OFF heard; -1 none yet
        self.generation = 0
        self.continuing = False
        self.bars = 0  # bars asked for in this continuation
        self.ref_step, self.ref_sample = 0, -1  # the latest grid point: its step and sample
        self.out_bar[:] = -1
        self.out_count[:] = 0
        self.key = -1.0

    # -- the audio thread ------------------------------------------------------------------------

    def process(self, io) -> None:
        g = self.grid
        count = g.advance(io, float(self.params[self.P.swing]))
        if count:
            self.ref_step, self.ref_sample = int(g.step[count - 1]), io.block_start + int(g.offset[count - 1])
        if self.options["thru"]:
            for ev in io.events:
                if ev["kind"] == Kind.NOTE_ON or ev["kind"] == Kind.NOTE_OFF:
                    io.pass_on(ev)
        if self.ref_sample >= 0:
            self._hear(io)
        if self.hears_key:
            self.key = float(io.controls["key"][-1])
        for k in range(count):
            self.on_point(io, k)

    def _step_at(self, sample: int) -> int:
        """The grid step nearest absolute ``sample``."""
        return self.ref_step + round((sample - self.ref_sample) * self.grid.division / self.grid.samples_per_beat)

    def _hear(self, io) -> None:
        """Keep the performer's notes on the grid; a NOTE_ON ends a continuation."""
        for ev in io.events:
            kind, pitch = int(ev["kind"]), int(ev["a"])
            on = kind == Kind.NOTE_ON and int(ev["b"]) > 0
            if not on and kind not in (Kind.NOTE_ON, Kind.NOTE_OFF):
                continue
            step = self._step_at(int(ev["time"]))
            self.last_sound = step
            if on:
                self.heard[self.heard_count % HEARD] = (step, pitch, int(ev["b"]), -1)
                self.heard_count += 1
                self.held += 1
                if self.continuing:
                    self.continuing = False
                    self.generation += 1
                continue
            self.held = max(self.held - 1, 0)
            for back in range(1, min(self.heard_count, HEARD) + 1):
                row = self.heard[(self.heard_count - back) % HEARD]
                if row[1] == pitch and row[3] < 0:
                    row[3] = max(step - row[0], 1)
                    break

    def on_point(self, io, k: int) -> None:
        g = self.grid
        step = int(g.step[k])
        if g.beat_in_bar[k] == 0 and g.sub[k] == 0:  # a bar line: ask for the bar after this one
            bar_steps = g.meter * g.division
            if not self.continuing:
                wait = self.options["wait_bars"] * bar_steps
                if not self.heard_count or self.held or step + bar_steps - self.last_sound < wait:
                    return
                self.continuing = True
                self.bars = 0
            self._ask(step + bar_steps, bar_steps)
        if self.continuing:
            self._play(io, k, step)

    def _ask(self, bar_line: int, bar_steps: int) -> None:
        """Ask the lane for the bar at grid step ``bar_line`` (a continuation's first bar primes the model)."""
        slot = self.bars % SLOTS
        self.req[slot] = (self.generation, bar_line, bar_steps, self.bars == 0, self.bars)
        self.req_key[slot] = self.key
        self.bars += 1
        if self.lane is None:
            self.jobs[slot]()
        else:
            self.lane.submit(self.jobs[slot], "continue")

    def _play(self, io, k: int, step: int) -> None:
        """Play the notes a bar slot holds for this grid point (only slots of this continuation)."""
        g = self.grid
        for slot in range(SLOTS):
            offset = step - int(self.out_bar[slot])
            if self.out_bar[slot] < 0 or self.out_gen[slot] != self.generation or not 0 <= offset < self.out_len[slot]:
                continue
            for n in range(int(self.out_count[slot])):
                if self.out[slot, n, 0] == offset:
                    _, pitch, velocity, duration = self.out[slot, n]
                    length = int(duration * GATE * g.samples_per_beat / g.division)
                    self.play(io, int(g.offset[k]), int(pitch), int(velocity), length)

    # -- the worker lane -------------------------------------------------------------------------

    def _job(self, slot: int) -> None:
        """Make the bar a slot was asked for; publish it by writing ``out_bar`` last."""
        generation, bar_line, bar_steps, prime, bar_no = (int(v) for v in self.req[slot])
        c = self.continuer
        if prime:
            n = min(self.heard_count, HEARD)
            rows = [tuple(int(v) for v in self.heard[(self.heard_count - 1 - i) % HEARD]) for i in range(n)]
            notes = [(s - bar_line, p, v, d if d > 0 else 1) for s, p, v, d in rows]
            last = max(s for s, *_ in notes)
            c.prime(notes, end=(last // bar_steps + 1) * bar_steps)
        p, P = self.params, self.P
        key = float(self.req_key[slot])
        mask = key_mask(*key_of_control(key)) if key >= 0 else None
        lo, hi = int(p[P.register_lo]), int(p[P.register_hi])
        notes = c.continue_bar(bar_steps, float(p[P.temperature]), float(p[P.density]), (min(lo, hi), max(lo, hi)),
                               mask, self.options["seed"] + bar_no)[:BAR_NOTES]
        self.out_bar[slot] = -1
        for i, note in enumerate(notes):
            self.out[slot, i] = note
        self.out_count[slot] = len(notes)
        self.out_len[slot] = bar_steps
        self.out_gen[slot] = generation
        self.out_bar[slot] = bar_line
