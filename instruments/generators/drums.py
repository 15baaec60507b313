"""A groove generator: a drum kit's part on the band's sixteenth-note grid.

:class:`DrumGenerator` (node type ``"drums"``) plays General MIDI drum notes
(channel 10 by default: MIDI channel 9 counted from 0) on a :class:`~cadenza.engine.grid.Grid`
of sixteenths, so with ``follow`` set to a beat listener it plays on the band's
predicted beats and bars, and on the engine clock otherwise.

Styles are written as drum-machine rows, one character per sixteenth of a
four-beat bar (a shorter bar plays its first beats, a longer one repeats the
last): ``X`` an accent, ``x`` a hit, ``o`` a ghost note played with probability
``density``, ``.`` a rest. Every ``fill_every`` bars the bar's last beat is a
fill down the toms, and the next downbeat has a crash. ``humanise`` (0..1)
lays hits back by up to ``LAY_BACK_MS`` and varies their velocity by up to
``VELOCITY_SPREAD``; with 0 every hit is on its point. Deterministic with ``seed``.
"""

from __future__ import annotations

from cadenza.engine.grid import GridGenerator
from cadenza.engine.node import Option, Param

KICK, SNARE, CLAP, CLOSED_HAT, OPEN_HAT, PEDAL_HAT, RIDE, CRASH = 36, 38, 39, 42, 46, 44, 51, 49
FILL = (38, 50, 47, 45)  # snare, high, mid and low tom: a fill's four sixteenths
VELOCITY = {"X": 118, "x": 92, "o": 52}
LAY_BACK_MS = 12.0
VELOCITY_SPREAD = 18
HIT_S = 0.08  # a hit's note length (drum voices ring on their own)

STYLES: dict[str, dict[int, str]] = {
    "straight": {KICK: "X.......X.o.....", SNARE: "....X.......X..o", CLOSED_HAT: "x.x.x.x.x.x.x.x."},
    "swing": {RIDE: "X...x.x.X...x.x.", PEDAL_HAT: "....x.......x...", KICK: "o.......o.......",
              SNARE: "......o.......o."},
    "half_time": {KICK: "X.....o...X.....", SNARE: "........X.......", CLOSED_HAT: "x.x.x.x.x.x.x.x."},
    "four_on_the_floor": {KICK: "X...X...X...X...", CLAP: "....X.......X...", OPEN_HAT: "..x...x...x...x.",
                          CLOSED_HAT: "x.o.x.o.x.o.x.o."},
}


class DrumGenerator(GridGenerator):
    """A drum groove on the grid: style rows, ghost notes by density, fills every N bars."""

    OPTIONS = GridGenerator.OPTIONS | {
        "style": Option(str, default="straight", choices=tuple(STYLES), doc="the groove"),
        "fill_every": Option(int, default=4, lo=0, hi=64, doc="a fill on the last beat of every N-th bar (0: none)"),
        "channel": Option(int, default=9, lo=0, hi=15, doc="MIDI channel of the notes (9: General MIDI drums)"),
        "division": Option(str, default="sixteenth", choices=("sixteenth",), doc="drum rows are written in sixteenths"),
    }
    PARAMS = GridGenerator.PARAMS | {
        "density": Param(0.5, 0.0, 1.0, "", "probability of each ghost note"),
        "humanise": Param(0.0, 0.0, 1.0, "", "0 on the grid; 1 lays hits back up to 12 ms, velocities +-18"),
        "level": Param(1.0, 0.0, 1.0, "", "velocity scale"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        self.rows = [(note, row) for note, row in STYLES[self.options["style"]].items()]

    def on_point(self, io, k: int) -> None:
        g, p, P = self.grid, self.params, self.P
        beat, step = int(g.beat_in_bar[k]), int(g.sub[k])
        fill_every = self.options["fill_every"]
        bar_no = int(g.bar[k])
        in_fill = fill_every and bar_no % fill_every == fill_every - 1 and beat == g.meter - 1
        length = int(HIT_S * self.sample_rate)
        humanise = float(p[P.humanise])
        lay_back = int(self.rng.random() * humanise * LAY_BACK_MS * 1e-3 * self.sample_rate) if humanise else 0
        offset = int(g.offset[k]) + lay_back
        level = float(p[P.level])
        if in_fill:
            self._hit(io, offset, FILL[step], VELOCITY["X"] if step == 0 else VELOCITY["x"], level, humanise, length)
            return
        if fill_every and beat == 0 and step == 0 and bar_no % fill_every == 0 and bar_no > 0:
            self._hit(io, offset, CRASH, VELOCITY["X"], level, humanise, length)
        column = min(beat, 3) * 4 + step
        for note, row in self.rows:
            mark = row[column]
            if mark == "." or (mark == "o" and self.rng.random() >= float(p[P.density])):
                continue
            self._hit(io, offset, note, VELOCITY[mark], level, humanise, length)

    def _hit(self, io, offset: int, note: int, velocity: int, level: float, humanise: float, length: int) -> None:
        spread = int(round((self.rng.random() * 2.0 - 1.0) * humanise * VELOCITY_SPREAD)) if humanise else 0
        velocity = round((velocity + spread) * level)
        if velocity >= 1:
            self.play(io, offset, note, velocity, length)
