"""The musical grid generators play on: where this block's grid points fall, in samples.

A generator owns a :class:`Grid` and, once per block, asks for the points of its
grid that fall inside the block: ``division`` steps per beat (1 quarters, 2
eighths, 3 triplets, 4 sixteenths), the off-beat pushed late by ``swing`` (the
off-beat eighth's place in the beat: 0.5 straight, 2/3 a triplet swing), each
point with its beat, its place in the bar and the bar's number. It schedules
its notes at those samples, so they sound *on* the beat, not after it.

Where the beat comes from:

- **a beat listener** (``follow`` = its node id): the next beat as the listener
  predicted it at the end of the previous block, its tempo, its bar
  (``bar_phase`` and ``beats_per_bar``). Every point is placed by a prediction
  made at least one block before the point sounds;
- **the engine clock** (``clock.beat``, ``clock.bpm``: the patch's tempo, the
  tempo of a listener the clock follows, or a Link session the clock joins):
  with no listener named, its tempo and phase; while the named listener is
  unsure (confidence below ``conf_min``), or lost — a beat it predicted keeps
  moving later, or jumps, ``DRIFT`` of a beat, as when the band stops — the band's time
  goes on from the last beat played, at the listener's last believed tempo, so
  the parts play through a break in time; the listener is believed again once
  ``KEPT`` beats in a row, a beat apart, arrived where it predicted them, at a
  tempo that is not twice or half the one it had (an octave slip of the
  listener is not the band's) — or ``OCTAVE_KEPT`` in a row at such a tempo
  (a listener that held the other octave that long corrected its own first
  guess, or the band went to half or double time).

Musical time stays continuous through a hand-over and through a listener's
change of mind: the grid takes the listener's phase at the nearest beat,
never plays a point twice; a point a jump forward left less than ``LATE_S``
behind (or the beat a lost band never played) sounds at once, one further
behind is skipped (never crowded in). The bar follows the listener's downbeats while it is sure of them, else
the clock's bars (``[clock] beats_per_bar``) until a listener has shown one.

All of it is per-block arithmetic on a few floats; :meth:`Grid.advance` fills
preallocated arrays and allocates nothing that grows.
"""

from __future__ import annotations

import math

import numpy as np

from cadenza.engine.events import Kind
from cadenza.engine.node import Node, Option, Param

DIVISIONS = {"quarter": 1, "eighth": 2, "triplet": 3, "sixteenth": 4}
MAX_POINTS = 16  # per block: a sixteenth grid at 400 BPM in a 1024-frame block at 44.1 kHz has 4
DRIFT = 0.15  # beats: a predicted beat pushed this much later than first predicted: the listener is lost
JUMP = 0.15  # beats: a prediction this far from where the grid's own time puts the beat: the listener is lost
HELD = 0.5  # beats: a predicted beat seen this far ahead that arrives where it said is held
KEPT = 2  # a lost listener is believed again after this many held beats in a row, a beat apart
OCTAVE_KEPT = 8  # ... at twice or half the confirmed tempo, after this many: the band's time, not a slip
SURE_GAIN = 0.02  # per block: how fast the believed beat length follows the listener's
STILL = 0.03  # beats: ... while the beat it predicts has moved less than this since first predicted
LATE_S = 0.03  # a point a jump forward left this little behind still sounds, at the block's start
BAR_SURE = (0.2, 0.8)  # the listener's bar is read only this far into a beat: its count moves at the beat

GRID_OPTIONS = {
    "follow": Option(str, default="", doc="id of the beat listener whose predicted beats and bar the "
                                          "notes land on; '' plays on the engine clock"),
    "division": Option(str, default="eighth", choices=tuple(DIVISIONS), doc="grid steps per beat"),
    "conf_min": Option(float, default=0.3, lo=0.0, hi=1.0,
                       doc="listener confidence below which the grid falls back to the engine clock"),
    "ahead_ms": Option(float, default=0.0, lo=0.0, hi=100.0,
                       doc="notes are placed this long before their grid point: the output's latency "
                           "to the band's ears, live (0 offline)"),
}
GRID_PARAMS = {
    "swing": Param(0.5, 0.5, 0.75, "beat", "where the off-beat eighth falls in the beat: 0.5 straight, "
                                           "0.67 triplet swing"),
}


class Grid:
    """A generator's grid: ``advance(io)`` once per block, then ``count`` points in
    ``offset`` (frame in the block), ``step`` (absolute step number), ``beat``
    (absolute beat number), ``sub`` (step within the beat), ``beat_in_bar`` and ``bar``.

    ``options``: the node's options (the keys of :data:`GRID_OPTIONS`); ``swing`` is
    read each block from the node's param array at index ``swing_index``.
    """

    def __init__(self, options: dict, clock_beats_per_bar: int = 4):
        self.follow = options["follow"]
        self.division = DIVISIONS[options["division"]]
        self.conf_min = float(options["conf_min"])
        self.ahead_ms = float(options["ahead_ms"])
        self.clock_meter = clock_beats_per_bar
        self.offset = np.zeros(MAX_POINTS, np.int64)
        self.step = np.zeros(MAX_POINTS, np.int64)
        self.beat = np.zeros(MAX_POINTS, np.int64)
        self.sub = np.zeros(MAX_POINTS, np.int64)
        self.beat_in_bar = np.zeros(MAX_POINTS, np.int64)
        self.bar = np.zeros(MAX_POINTS, np.int64)
        self.count = 0
        self.samples_per_beat = 0.0  # this block's beat length, samples
        self.locked = False  # this block's points were placed by the listener's prediction

    def reads(self) -> dict[str, str]:
        """The controls the node must read (merge into its ``reads``)."""
        reads = {"clock_beat": "clock.beat", "clock_bpm": "clock.bpm"}
        if self.follow:
            reads |= {f"grid_{name}": f"{self.follow}.{name}"
                      for name in ("next_beat_s", "bpm", "confidence", "bar_phase", "beats_per_bar")}
        return reads

    def prepare(self, sample_rate: int) -> None:
        self.sample_rate = float(sample_rate)
        self.ahead = self.ahead_ms * 1e-3 * sample_rate

    def reset(self) -> None:
        self.pos = math.nan  # musical position (beats) at the next block's first frame; nan: not started
        self.next_step = 0  # the next step to play
        self.pred = -1.0  # the listener's next beat (absolute sample) at the previous block's end; < 0 none
        self.pred_spb = 0.0
        self.meter = self.clock_meter
        self.downbeat = 0  # a beat number that starts a bar
        self.last_beat, self.last_beat_sample = -1, 0.0  # the latest beat the grid played, and its sample
        self.sure_spb = 0.0  # the listener's beat length while it is believed, smoothed, samples
        self.lost = False
        self.watched_first, self.watched_last = -1.0, -1.0  # where the beat watched was first, last predicted (< 0: none)
        self.watched_seen = self.watched_seen_last = 0  # blocks it was first and last predicted in
        self.kept, self.kept_at = 0, -1e18  # beats in a row that arrived as predicted, a beat apart; the last one
        self.judged, self.found = -1e18, False  # the beat judged last; whether a lost listener was just found
        self.confirmed = False  # a listener was found once: its tempo is the band's, not a start-up guess
        self.count = 0
        self.locked = False

    def place(self, sub_frac: float, swing: float) -> float:
        """Where a step that is ``sub_frac`` (0..1) into its beat lands, in beats, with ``swing``."""
        if sub_frac < 0.5:
            return sub_frac * 2.0 * swing
        return swing + (sub_frac - 0.5) * 2.0 * (1.0 - swing)

    def position(self, step: int, swing: float) -> float:
        """Musical position (beats) of absolute ``step``."""
        beat, sub = divmod(step, self.division)
        return beat + self.place(sub / self.division, swing)

    def advance(self, io, swing: float = 0.5) -> int:
        """Find this block's grid points (``count`` of them, in the arrays); returns ``count``."""
        c = io.controls
        s0, frames = io.block_start, io.frames
        self.locked = self.pred >= 0.0
        if self.locked:
            spb = self.pred_spb
            pred = self.pred
            while pred < s0:  # predicted for a frame the previous block ended on
                pred += spb
            anchor = 0.0 if math.isnan(self.pos) else self.pos
            self._watch(pred, spb, s0, round(anchor + (pred - s0) / spb) - anchor)
            self.locked = not self.lost
        if self.locked:
            ahead = (pred - s0) / spb
            self.next_beat = round(anchor + ahead)
            self.next_beat_sample = pred
            pos0 = self.next_beat - ahead
        elif self.follow and self.last_beat >= 0 and self.sure_spb > 0.0:  # the band's time goes on from the last beat played
            spb = self.sure_spb
            pos0 = self.last_beat + (s0 - self.last_beat_sample) / spb
        else:
            bpm = float(c["clock_bpm"][0])
            spb = 60.0 * self.sample_rate / max(bpm, 1.0)
            clock = float(c["clock_beat"][0])  # the clock is the grid: its phase too (a Link session's)
            pos0 = clock if math.isnan(self.pos) else clock + round(self.pos - clock)
        self.samples_per_beat = spb
        self.pos0, self.s0 = pos0, s0
        if math.isnan(self.pos) or self.position(self.next_step, swing) < pos0 - 1.0:
            # the first block, or a jump forward past a whole beat: start at the next point
            self.next_step = math.ceil((pos0 - 1.0) * self.division)
            while self.position(self.next_step, swing) < pos0:
                self.next_step += 1
        end = s0 + frames
        late = max(LATE_S * self.sample_rate, DRIFT * spb + frames)  # or the beat a lost band never played
        n = 0
        while n < MAX_POINTS:
            at = self.position(self.next_step, swing)
            t = self.sample_of(at) - self.ahead
            if t >= end:
                break
            if t >= s0 - late:
                beat, sub = divmod(self.next_step, self.division)
                self.offset[n] = min(max(round(t - s0), 0), frames - 1)
                self.step[n] = self.next_step
                self.beat[n] = beat
                self.sub[n] = sub
                self.bar[n], self.beat_in_bar[n] = divmod(beat - self.downbeat, self.meter)
                if sub == 0:
                    self.last_beat, self.last_beat_sample = beat, t + self.ahead
                n += 1
            self.next_step += 1
        self.count = n
        self.pos = pos0 + frames / spb
        if self.follow:
            self._listen(c, s0, frames)
        return n

    def _watch(self, pred: float, spb: float, s0: int, beats_ahead: float) -> None:
        """Follow how the listener's prediction of each beat moves. A beat pushed ``DRIFT`` of a beat
        later than first predicted, or predicted ``JUMP`` away from where the grid's own time puts
        it, means the band stopped or the listener lost it (``lost``); a lost listener is believed
        again once ``KEPT`` beats in a row, a beat apart, each predicted ``HELD`` of a beat ahead,
        arrived where it said — unless it now counts twice or half the band's tempo the grid has
        confirmed (a listener's octave slip, not the band's) for fewer than ``OCTAVE_KEPT`` beats. ``sure_spb`` follows its beat length while it is believed and the
        beat it predicts holds within ``STILL`` of where it first said.
        ``beats_ahead``: how far the grid's own time puts the predicted beat after ``s0``, in beats."""
        if self.watched_first > 0.0 and (s0 >= self.watched_last or pred > self.watched_last + 0.5 * spb):
            self._judge(spb)  # the watched beat's time has come, or the listener moved on from it
        if self.watched_first < 0.0:
            if pred < self.judged + 0.5 * spb:
                return  # the beat just judged, still to come by a hair: not a new one
            self.watched_first, self.watched_seen = pred, s0
        elif pred < self.watched_last - 0.5 * spb:
            return  # a look back at the beat before, around its time: not the beat watched
        self.watched_last, self.watched_seen_last = pred, s0
        if self.found:  # the grid takes the listener's phase this block: nothing to compare yet
            self.found = False
        elif self.sure_spb > 0.0 and not self.lost:
            expected = s0 + beats_ahead * self.sure_spb
            self.lost = pred - self.watched_first > DRIFT * spb or abs(pred - expected) > JUMP * self.sure_spb
        if not self.lost and abs(pred - self.watched_first) < STILL * spb:  # slowly, while its beat holds still
            self.sure_spb = spb if self.sure_spb == 0.0 else self.sure_spb + SURE_GAIN * (spb - self.sure_spb)

    def _judge(self, spb: float) -> None:
        """The watched beat is over: was it held (seen ``HELD`` ahead, arrived within ``DRIFT``), and
        a beat after the last held one? ``KEPT`` in a row find a lost listener again."""
        held = (self.watched_last - self.watched_first < DRIFT * spb
                and self.watched_seen_last - self.watched_seen >= HELD * spb)
        spaced = abs(self.watched_last - self.kept_at - spb) < DRIFT * spb
        self.kept = (self.kept + 1 if spaced else 1) if held else 0
        self.kept_at = self.watched_last if held else -1e18
        octave = self.confirmed and min(abs(spb / self.sure_spb - r) / r for r in (0.5, 2.0)) < DRIFT
        if self.lost and self.kept >= (OCTAVE_KEPT if octave else KEPT):  # believed again, at the tempo it has shown
            self.lost, self.found, self.confirmed = False, True, True
            self.sure_spb = spb
        self.judged, self.watched_first = self.watched_last, -1.0

    def sample_of(self, at: float) -> float:
        """The (absolute, fractional) sample of musical position ``at`` by this block's beat: inside the
        beat that ends on the listener's predicted beat, between where that beat began (where the grid
        played it) and the prediction, so the points between two beats divide the beat the band plays."""
        if self.locked:
            nb, pred = self.next_beat, self.next_beat_sample
            if nb - 1 <= at < nb and self.last_beat == nb - 1:
                span = pred - self.last_beat_sample
                if 0.5 * self.samples_per_beat < span < 1.5 * self.samples_per_beat:
                    return self.last_beat_sample + (at - (nb - 1)) * span
            return pred + (at - nb) * self.samples_per_beat
        return self.s0 + (at - self.pos0) * self.samples_per_beat

    def _listen(self, c, s0: int, frames: int) -> None:
        """Keep the listener's prediction (and bar) as it stands at this block's last frame."""
        conf = float(c["grid_confidence"][-1])
        bpm = float(c["grid_bpm"][-1])
        nxt = float(c["grid_next_beat_s"][-1])
        if conf < self.conf_min or bpm <= 0.0 or nxt <= 0.0:
            self.pred = -1.0
            return
        self.pred = s0 + nxt * self.sample_rate
        self.pred_spb = 60.0 * self.sample_rate / bpm
        meter = int(c["grid_beats_per_bar"][-1])
        into = 1.0 - (self.pred - (s0 + frames)) / self.pred_spb  # how far into its beat the block ends
        if meter >= 2 and BAR_SURE[0] < into < BAR_SURE[1]:
            beat_now = math.floor(self.pos - 1e-9)  # our number of the beat the block ends in
            counted = int(float(c["grid_bar_phase"][-1]) * meter + 1e-6)  # the listener's count of it
            self.meter = meter
            self.downbeat = (beat_now - counted) % meter


class GridGenerator(Node):
    """Base of the generators that play on a :class:`Grid`: it adds the grid's options and
    params, reads its controls, and gives :meth:`play` (a note on at a point, its note
    off ``length`` samples later). A subclass fills :meth:`on_point`."""

    OPTIONS = GRID_OPTIONS | {
        "channel": Option(int, default=0, lo=0, hi=15, doc="MIDI channel of the notes sent"),
        "seed": Option(int, default=0, lo=0, hi=2**31 - 1, doc="seed of every random choice"),
    }
    PARAMS = GRID_PARAMS

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        self.grid = Grid(self.options)
        self.reads = dict(self.grid.reads())

    def prepare(self, ctx) -> None:
        self.sample_rate = float(ctx.sample_rate)
        self.grid.prepare(ctx.sample_rate)

    def reset(self) -> None:
        self.grid.reset()
        self.rng = np.random.default_rng(self.options["seed"])

    def play(self, io, offset: int, note: int, velocity: int, length: int) -> None:
        """NOTE_ON ``offset`` frames into the block, its NOTE_OFF ``length`` samples later."""
        channel = self.options["channel"]
        io.emit(offset, Kind.NOTE_ON, channel, note, min(max(velocity, 1), 127))
        io.emit(offset + max(length, 1), Kind.NOTE_OFF, channel, note, 0)

    def process(self, io) -> None:
        g = self.grid
        for k in range(g.advance(io, float(self.params[self.P.swing]))):
            self.on_point(io, k)

    def on_point(self, io, k: int) -> None:
        """Play what falls on the grid's point ``k`` of this block (``self.grid.offset[k]`` ...)."""
