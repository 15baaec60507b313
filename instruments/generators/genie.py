"""Piano Genie as a generator node: 8 buttons in, piano keys out.

Each BUTTON press (from the patch's ``[midi] buttons`` notes, OSC
``/cadenza/button``, or scripted events) runs one decoder step of the trained
model (the numba port, ``models/genie/numba_step.py``) and sends a NOTE_ON to
the patch's ``notes_to`` voice at the press's own sample; the release sends the
matching NOTE_OFF. Notes are also echoed out of the engine (OSC / MIDI out).

The time since the previous press feeds the decoder, as in training. After
``reset_after`` seconds with no button held and no press, the decoder state
restarts (a new phrase). ``key`` + ``scale`` restrict the keys it may choose (or, with ``key_from`` = a
chord listener's id, the major or minor scale of the key it hears, once it knows one);
``lowest``/``highest`` (MIDI) bound them; ``temperature`` 0 is greedy.

With ``quantise`` (a grid division) the notes sound on a :class:`~cadenza.engine.grid.Grid`
— the beats a beat listener predicts (``follow`` = its id), else the engine
clock: a press waits for the next grid point, unless it came at most
``grid.LATE_S`` after one (it was meant for that one: it sounds at once). The
decoder still hears the press at its own time; a note released before its
point sounds at the point for as long as it was held.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cadenza.engine.errors import ModelError
from cadenza.engine.events import Kind
from cadenza.engine.grid import DIVISIONS, GRID_OPTIONS, LATE_S, Grid
from cadenza.engine.node import Node, Option, Param

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "genie" / "genie.pt"
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "chromatic": tuple(range(12)),
}
FIRST_DT = 1.0  # seconds: what the decoder saw before a piece's first note in training
PENDING = 32  # notes waiting for their grid point


def scale_mask(key: str, scale: str) -> np.ndarray:
    """12 booleans, pitch classes allowed by ``key`` (``"none"`` = all) and ``scale``."""
    if key == "none":
        return np.ones(12, dtype=np.bool_)
    tonic = NOTE_NAMES.index(key)
    mask = np.zeros(12, dtype=np.bool_)
    mask[[(tonic + step) % 12 for step in SCALES[scale]]] = True
    return mask


def weights_path(weights: str | Path | None = None) -> Path:
    """The weights file to load (``weights``, else the committed model); a ModelError if it is not there."""
    path = Path(weights) if weights else DEFAULT_WEIGHTS
    if not path.is_file():
        raise ModelError(f"{path}: Piano Genie weights not found (train them with: python -m cadenza.models.genie.train)")
    return path


def load_decoder(weights: str | Path | None = None, seed: int = 0):
    """The numba decoder for a weights file; a ModelError names the file and what is wrong with it."""
    from cadenza.models.genie.model import load
    from cadenza.models.genie.numba_step import NumbaDecoder

    path = weights_path(weights)
    model, _ = load(path)
    if not model.config.buttons:
        raise ModelError(f"{path}: is the LM baseline (no buttons); the node needs a Piano Genie model")
    return NumbaDecoder(model, seed)


class GenieNode(Node):
    """Eight buttons → piano keys, one decoder step per press."""

    ACCEPTS_BUTTONS = True

    OPTIONS = {
        "weights": Option(str, default="", doc="weights file (default: models/genie/genie.pt)"),
        "key": Option(str, default="none", choices=("none",) + NOTE_NAMES, doc="tonic of the key constraint"),
        "scale": Option(str, default="major", choices=tuple(SCALES), doc="scale of the key constraint"),
        "reset_after": Option(float, default=4.0, lo=0.05, hi=600.0,
                              doc="seconds of silence after which the phrase restarts"),
        "seed": Option(int, default=0, lo=0, hi=2**31 - 1, doc="sampling seed (temperature > 0)"),
        "channel": Option(int, default=0, lo=0, hi=15, doc="MIDI channel of the notes sent"),
        "key_from": Option(str, default="", doc="id of a chord listener whose key (major or minor scale) the "
                                                "keys keep to once it knows one, in place of key and scale"),
        "quantise": Option(str, default="off", choices=("off",) + tuple(DIVISIONS),
                           doc="the grid the notes wait for ('off': each sounds at its press)"),
        "follow": Option(str, default="", doc="id of the beat listener whose grid quantise uses; '' the "
                                              "engine clock"),
    }
    PARAMS = {
        "temperature": Param(0.0, 0.0, 2.0, "", "0 = always the most likely key"),
        "lowest": Param(21.0, 21.0, 108.0, "MIDI", "lowest key it may play"),
        "highest": Param(108.0, 21.0, 108.0, "MIDI", "highest key it may play"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        self.weights = weights_path(self.options["weights"])  # named now; loaded in prepare
        self.scale = self.fixed_scale = scale_mask(self.options["key"], self.options["scale"])
        self.reads = {}
        if self.options["key_from"]:
            self.reads["key"] = f"{self.options['key_from']}.key"
        self.grid = None
        if self.options["quantise"] != "off":
            grid_options = {name: option.default for name, option in GRID_OPTIONS.items()}
            self.grid = Grid(grid_options | {"follow": self.options["follow"], "division": self.options["quantise"]})
            self.reads |= self.grid.reads()
        self.ignored = 0  # BUTTON events with an index outside 0..buttons-1

    def prepare(self, ctx) -> None:
        # the 24 keys a listener may name (tonic + 12 × mode), as scale masks, made now: a key change only picks one
        self.listened_scales = [scale_mask(NOTE_NAMES[k % 12], ("major", "minor")[k // 12]) for k in range(24)]
        self.decoder = load_decoder(self.weights, self.options["seed"])
        self.buttons = self.decoder.levels
        self.held = np.full(self.buttons, -1, dtype=np.int64)  # pitch sounding per button, -1 none
        self.sounding = np.zeros(128, dtype=np.int64)  # buttons holding each pitch
        self.sample_rate = float(ctx.sample_rate)
        self.reset_samples = int(self.options["reset_after"] * ctx.sample_rate)
        self.late = int(LATE_S * ctx.sample_rate)
        # notes waiting for their grid point: button, pitch, velocity, press sample, held samples (-1: still held)
        self.pending = np.full((PENDING, 5), -1, dtype=np.int64)
        if self.grid is not None:
            self.grid.prepare(ctx.sample_rate)
        self.decoder.press(FIRST_DT, 0)  # compile (or load) the kernels now, not on the first press

    def press(self, time: int, button: int) -> int:
        """Decode one press at sample ``time``; returns the MIDI pitch chosen."""
        silent = bool((self.held < 0).all())
        if self.last_press < 0 or (silent and time - self.last_activity > self.reset_samples):
            self.decoder.reset()
            dt = FIRST_DT
        else:
            dt = (time - self.last_press) / self.sample_rate
        self.last_press = time
        p, P = self.params, self.P
        return self.decoder.press(dt, button, float(p[P.temperature]), self.scale, int(p[P.lowest]), int(p[P.highest]))

    def handle(self, time: int, button: int, velocity: int) -> tuple[int, int]:
        """One button event at sample ``time`` (velocity 0 releases).

        Returns (pitch to turn off or -1, pitch to turn on or -1). A button
        outside 0..7 is counted in ``ignored`` and does nothing.
        """
        if not 0 <= button < self.buttons:
            self.ignored += 1
            return -1, -1
        off = int(self.held[button])
        if off >= 0:
            self.held[button] = -1
            self.sounding[off] -= 1
            if self.sounding[off] > 0:  # another button still holds that key
                off = -1
        on = -1
        if velocity > 0:
            on = self.press(time, button)
            self.held[button] = on
            self.sounding[on] += 1
        self.last_activity = time
        return off, on

    def process(self, io) -> None:
        if self.options["key_from"]:
            key = int(io.controls["key"][-1])
            self.scale = self.listened_scales[key] if 0 <= key < 24 else self.fixed_scale
        points = 0 if self.grid is None else self.grid.advance(io)
        k = 0
        for ev in io.events:
            if ev["kind"] != Kind.BUTTON:
                continue
            time, button, velocity = int(ev["time"]), int(ev["a"]), int(ev["b"])
            while k < points and io.block_start + self.grid.offset[k] <= time:
                self.sound_pending(io, k)
                k += 1
            waited = self.end_pending(button, time)
            off, on = self.handle(time, button, velocity)
            offset = time - io.block_start
            if off >= 0 and not waited:
                io.emit(offset, Kind.NOTE_OFF, self.options["channel"], off, 0)
            if on >= 0:
                if self.grid is None or time - self.last_point <= self.late or not self.wait(button, on, velocity, time):
                    io.emit(offset, Kind.NOTE_ON, self.options["channel"], on, velocity)
        for k in range(k, points):
            self.sound_pending(io, k)

    def wait(self, button: int, pitch: int, velocity: int, time: int) -> bool:
        """Hold a note for the next grid point; False when every pending slot is taken (it sounds now)."""
        free = np.flatnonzero(self.pending[:, 0] < 0)
        if free.size == 0:
            return False
        self.pending[free[0]] = (button, pitch, velocity, time, -1)
        self.waiting += 1
        return True

    def end_pending(self, button: int, time: int) -> bool:
        """A release (or a new press) of ``button`` at ``time``: its note still waiting keeps this
        length for when it sounds. True when there was one (its NOTE_OFF comes with it)."""
        if not self.waiting:
            return False
        rows = np.flatnonzero((self.pending[:, 0] == button) & (self.pending[:, 4] < 0))
        for r in rows:
            self.pending[r, 4] = time - self.pending[r, 3]
        return rows.size > 0

    def sound_pending(self, io, k: int) -> None:
        """The grid's point ``k`` of this block: every note waiting sounds on it."""
        offset = int(self.grid.offset[k])
        self.last_point = io.block_start + offset
        if not self.waiting:
            return
        channel = self.options["channel"]
        for r in np.flatnonzero(self.pending[:, 0] >= 0):
            _, pitch, velocity, _, held = self.pending[r]
            io.emit(offset, Kind.NOTE_ON, channel, int(pitch), int(velocity))
            if held >= 0:  # released while it waited
                io.emit(offset + max(int(held), 1), Kind.NOTE_OFF, channel, int(pitch), 0)
            self.pending[r] = -1
        self.waiting = 0

    def reset(self) -> None:
        self.decoder.reset()
        if self.grid is not None:
            self.grid.reset()
        self.pending[:] = -1
        self.waiting = 0  # rows of pending in use
        self.last_point = -(1 << 62)
        self.held[:] = -1
        self.sounding[:] = 0
        self.last_press = -1
        self.last_activity = -1
