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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cadenza.engine.errors import ModelError
from cadenza.engine.events import Kind
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
        if self.options["key_from"]:
            self.reads = {"key": f"{self.options['key_from']}.key"}
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
        channel = self.options["channel"]
        for ev in io.events:
            if ev["kind"] != Kind.BUTTON:
                continue
            off, on = self.handle(int(ev["time"]), int(ev["a"]), int(ev["b"]))
            offset = int(ev["time"]) - io.block_start
            if off >= 0:
                io.emit(offset, Kind.NOTE_OFF, channel, off, 0)
            if on >= 0:
                io.emit(offset, Kind.NOTE_ON, channel, on, int(ev["b"]))

    def reset(self) -> None:
        self.decoder.reset()
        self.held[:] = -1
        self.sounding[:] = 0
        self.last_press = -1
        self.last_activity = -1
