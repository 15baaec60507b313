"""A bass line in the band's chords, on the band's grid.

:class:`BassGenerator` (node type ``"bass"``) reads a chord listener
(``chords`` = its node id: its ``root`` and ``quality`` controls, as they stood
at the end of the previous block) and plays tones of the chord it hears on a
:class:`~cadenza.engine.grid.Grid` (``division``, default quarters), so with
``follow`` set to a beat listener each note lands on the band's predicted beat.

Patterns (``pattern``), counted from each bar's downbeat:

- ``root_fifth``: root on the downbeat, then fifth and root in turn;
- ``walking``: root, third, fifth, then a chromatic step into the root (a half
  step above it in a major chord, below in a minor one) on the bar's last point;
- ``arp_up`` / ``arp_down``: root, third, fifth, octave, up or down.

The root sits in the octave from ``lowest`` (MIDI) up. While the listener hears
no chord the bass rests. Each note lasts ``gate`` of the time to the next point.

A listener hears a new chord only after it sounds (the chord listener's ~0.2 s),
so a bass that only listens plays the old chord on every change. With
``anticipate`` the bass keeps the band's progression beat by beat
(:class:`~cadenza.engine.harmony.ChordMemory`: each beat's chord is read
``RECORD_LAG_S`` after the beat's middle, when the listener has caught up)
and, once the progression has repeated itself, plays through a beat where it
changed chord one period earlier the chord it changed to — on the change, not
after it; elsewhere it plays what it hears.
"""

from __future__ import annotations

import numpy as np

from cadenza.engine.grid import GridGenerator
from cadenza.engine.harmony import ChordMemory
from cadenza.engine.node import Option, Param

TRIADS = ((0, 4, 7), (0, 3, 7))  # semitones above the root, by quality index (engine.harmony.QUALITIES)
PATTERNS = ("root_fifth", "walking", "arp_up", "arp_down")
RECORD_LAG_S = 0.25  # a beat's chord is read this long after its middle: the listener's delay and switch
PENDING = 8  # beats waiting for their chord to be read


def pattern_interval(pattern: str, point: int, points_per_bar: int, quality: int) -> int:
    """Semitones above the root of the ``point``-th note of a bar (0 = the downbeat)."""
    third, fifth = TRIADS[quality][1], TRIADS[quality][2]
    if pattern == "root_fifth":
        return fifth if point % 2 else 0
    if pattern == "walking":
        if point == points_per_bar - 1 and points_per_bar > 2:
            return -1 if quality == 1 else 1  # a half step into the next bar's root: below (minor) / above (major)
        return (0, third, fifth)[point % 3]
    tones = (0, third, fifth, 12)
    return tones[point % 4] if pattern == "arp_up" else tones[-1 - point % 4]


class BassGenerator(GridGenerator):
    """Chord tones of the listened chord on the grid."""

    OPTIONS = GridGenerator.OPTIONS | {
        "chords": Option(str, default="chords", doc="id of the chord listener whose chords the bass plays"),
        "pattern": Option(str, default="root_fifth", choices=PATTERNS, doc="which chord tones, in which order"),
        "division": Option(str, default="quarter", choices=("quarter", "eighth", "triplet", "sixteenth"),
                           doc="grid steps per beat"),
        "anticipate": Option(bool, default=True, doc="play a repeating progression's next chord on its downbeat"),
    }
    PARAMS = GridGenerator.PARAMS | {
        "lowest": Param(36.0, 24.0, 60.0, "MIDI", "bottom of the octave the root is played in"),
        "velocity": Param(96.0, 1.0, 127.0, "MIDI", "note velocity"),
        "gate": Param(0.85, 0.1, 1.0, "", "note length, fraction of the time to the next point"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        chords = self.options["chords"]
        if not chords:
            raise ValueError(f"node.{node_id}.chords: found '', allowed the id of a chord listener")
        self.reads |= {"root": f"{chords}.root", "quality": f"{chords}.quality"}

    def prepare(self, ctx) -> None:
        super().prepare(ctx)
        self.memory = ChordMemory()
        self.pending_beat = np.full(PENDING, -1, np.int64)
        self.pending_due = np.zeros(PENDING, np.float64)

    def reset(self) -> None:
        super().reset()
        self.root, self.quality = -1, 0  # the chord as it stood at the previous block's end
        self.memory.reset()
        self.pending_beat[:] = -1
        self.change = None  # (beat, root, quality): the change the memory foresaw for the current beat

    def process(self, io) -> None:
        for i in range(PENDING):  # beats whose chord the listener has caught up with
            if self.pending_beat[i] >= 0 and self.pending_due[i] <= io.block_start:
                self.memory.record(int(self.pending_beat[i]), self.root, self.quality)
                self.pending_beat[i] = -1
        super().process(io)
        self.root = int(io.controls["root"][-1])
        self.quality = min(max(int(io.controls["quality"][-1]), 0), 1)

    def on_point(self, io, k: int) -> None:
        g, p, P = self.grid, self.params, self.P
        beat = int(g.beat[k])
        if g.sub[k] == 0:
            slot = beat % PENDING
            self.pending_beat[slot] = beat
            self.pending_due[slot] = io.block_start + g.offset[k] + (0.5 * g.samples_per_beat
                                                                     + RECORD_LAG_S * self.sample_rate)
            change = self.memory.change_at(beat) if self.options["anticipate"] else None
            self.change = None if change is None else (beat, *change)
        root, quality = self.root, self.quality
        if self.change is not None and self.change[0] == beat:
            root, quality = self.change[1], self.change[2]
        if root < 0:
            return
        points_per_bar = g.meter * g.division
        point = int(g.beat_in_bar[k]) * g.division + int(g.sub[k])
        lowest = int(p[P.lowest])
        note = lowest + (root - lowest) % 12 + pattern_interval(self.options["pattern"], point, points_per_bar, quality)
        length = int(float(p[P.gate]) * g.samples_per_beat / g.division)
        self.play(io, int(g.offset[k]), note, int(p[P.velocity]), length)
