"""A SoundFont voice: FluidSynth rendered inside the engine's block.

pyfluidsynth drives libfluidsynth with no audio driver; each block FluidSynth
writes float samples straight into the node's output buffer
(``fluid_synth_write_float``), split at every event's offset so notes start at
their own sample (FluidSynth itself steps in 64-frame chunks: an onset lands
within 64 frames of its sample). FluidSynth's own reverb and chorus are off —
the pyo rack is the room.

With no SoundFont file (or no libfluidsynth), the node says so once on stderr
and plays the built-in synth instead, so the patch still sounds.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np

from cadenza.engine.events import Kind
from cadenza.engine.node import Node, Option, Param

SEARCH = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/local/share/soundfonts/FluidR3_GM.sf2",
    "/opt/homebrew/share/soundfonts/FluidR3_GM.sf2",
)


def find_soundfont(path: str = "") -> Path | None:
    """The SoundFont to load: ``path`` if given, else $CADENZA_SOUNDFONT, else the usual places."""
    candidates = [path] if path else [os.environ.get("CADENZA_SOUNDFONT", ""), *SEARCH]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class SoundFontVoice(Node):
    """General MIDI voice from a SoundFont (default FluidR3 GM, program 0: acoustic grand)."""

    ACCEPTS_NOTES = True
    OPTIONS = {
        "soundfont": Option(str, default="", doc="SF2 file (default: $CADENZA_SOUNDFONT or FluidR3_GM.sf2)"),
        "program": Option(int, default=0, lo=0, hi=127, doc="General MIDI program (0 = acoustic grand piano)"),
        "bank": Option(int, default=0, lo=0, hi=128),
        "polyphony": Option(int, default=64, lo=1, hi=256),
    }
    PARAMS = {"gain_db": Param(0.0, -60.0, 12.0, "dB")}

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        self.outputs = {"out": 2}
        self.fallback: Node | None = None
        self.synth = None
        self.soundfont = find_soundfont(self.options["soundfont"])
        self._out = None
        self._addr = (0, 0)

    def _open(self, path: Path, sample_rate: int) -> None:
        """Start FluidSynth at ``sample_rate`` (Hz) with ``path`` loaded on all 16 channels."""
        import fluidsynth

        synth = fluidsynth.Synth(gain=1.0, samplerate=float(sample_rate), channels=16,
                                 **{"synth.reverb.active": 0, "synth.chorus.active": 0,
                                    "synth.polyphony": self.options["polyphony"]})
        sfid = synth.sfload(str(path))
        if sfid < 0:
            synth.delete()
            raise RuntimeError("not a SoundFont")
        for channel in range(16):
            synth.program_select(channel, sfid, self.options["bank"], self.options["program"])
        write = fluidsynth._fl.fluid_synth_write_float
        write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                          ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        write.restype = ctypes.c_int
        self._write = write
        self.sfid = sfid
        self.synth = synth

    def prepare(self, ctx) -> None:
        """Load the SoundFont; on failure say why once and prepare the built-in synth instead."""
        if self.synth is None and self.fallback is None:
            problem = None
            if self.soundfont is None and self.options["soundfont"]:
                problem = f"SoundFont {self.options['soundfont']} not found"
            elif self.soundfont is None:
                problem = ('no SoundFont found (set soundfont = "FILE.sf2" or $CADENZA_SOUNDFONT, '
                           "or install fluid-soundfont-gm)")
            else:
                try:
                    self._open(self.soundfont, ctx.sample_rate)
                except (ImportError, OSError, RuntimeError) as exc:
                    problem = f"FluidSynth could not load {self.soundfont}: {exc}"
            if problem:
                from cadenza.instruments.voices.synth import PolySynth

                print(f"cadenza: {self.id}: {problem}; playing the built-in synth instead", file=sys.stderr)
                self.fallback = PolySynth(self.id, wave="triangle")
                self.soundfont = None
        if self.fallback is not None:
            self.fallback.open(ctx)

    def _render(self, start: int, stop: int) -> None:
        if stop > start:
            left, right = self._addr
            self._write(self.synth.synth, stop - start, left, start, 1, right, start, 1)

    def _apply(self, ev) -> None:
        kind, ch, a, b = int(ev["kind"]), int(ev["channel"]), int(ev["a"]), int(ev["b"])
        synth = self.synth
        if kind == Kind.NOTE_ON:
            synth.noteon(ch, a, b)
        elif kind == Kind.NOTE_OFF:
            synth.noteoff(ch, a)
        elif kind == Kind.CC:
            synth.cc(ch, a, b)
        elif kind == Kind.PITCH_BEND:
            synth.pitch_bend(ch, int(float(ev["value"]) * 8191))
        elif kind == Kind.PROGRAM:
            synth.program_select(ch, self.sfid, self.options["bank"], a)

    def process(self, io) -> None:
        if self.fallback is not None:
            self.fallback.params[self.fallback.P.gain_db] = self.params[self.P.gain_db]
            self.fallback.process(io)
            return
        out = io.outputs["out"]
        if out is not self._out:  # the graph allocates it once; take its addresses once
            self._out = out
            self._addr = (out[0].ctypes.data, out[1].ctypes.data)
        pos = 0
        for ev in io.events:
            offset = min(max(int(ev["time"]) - io.block_start, 0), io.frames)
            self._render(pos, offset)
            pos = offset
            self._apply(ev)
        self._render(pos, io.frames)
        gain = 10.0 ** (self.params[self.P.gain_db] / 20.0)
        if gain != 1.0:
            out *= gain

    def reset(self) -> None:
        if self.fallback is not None:
            self.fallback.reset()
        elif self.synth is not None:
            for channel in range(16):
                self.synth.all_sounds_off(channel)

    def close(self) -> None:
        if self.synth is not None:
            self.synth.delete()
            self.synth = None
