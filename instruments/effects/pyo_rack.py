"""pyo as an effects rack inside the engine's own block.

Each rack owns one pyo ``Server(audio='manual')`` (pyo keeps up to 256 of
them in a process, and binds new objects to the one made current with
``setServer``), booted at the engine's rate and block size: it writes its
stereo input into the server's interleaved input buffer, calls
``server.process()`` once, and reads the output back. So a patch swap can
crossfade two racks, each processed exactly once per block, and closing a
retired graph shuts its server down: reloads never run out of racks.
Reverbs, chorus, delay, EQ and dynamics are pyo's own C DSP.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import io as _io
import os

import numpy as np

from cadenza.engine.node import Node, Option, Param

os.environ.setdefault("PYO_GUI_WX", "0")

# Effects a patch may chain, with the pyo keyword arguments each accepts.
EFFECTS = ("Freeverb", "STRev", "WGVerb", "Chorus", "Delay", "EQ", "Compress", "Disto",
           "Phaser", "ButLP", "ButHP", "Harmonizer", "FreqShift", "Gate", "Biquad")
# Effects with their own dry/wet ("bal"); the others take an optional "mix".
BALANCED = ("Freeverb", "STRev", "WGVerb", "Chorus")


def _import_pyo():
    with contextlib.redirect_stdout(_io.StringIO()):
        import pyo
    return pyo


def effect_arguments(name: str) -> list[str]:
    """The keyword arguments pyo's ``name`` accepts, besides input/mul/add."""
    pyo = _import_pyo()
    params = inspect.signature(getattr(pyo, name).__init__).parameters
    return [p for p in params if p not in ("self", "input", "input2", "mul", "add")]


def check_chain(chain: list) -> None:
    """Raise ValueError naming the bad entry of an effect chain."""
    for i, fx in enumerate(chain):
        if not isinstance(fx, dict) or fx.get("effect") not in EFFECTS:
            found = fx.get("effect") if isinstance(fx, dict) else fx
            raise ValueError(f"chain[{i}].effect: found {found!r}, allowed one of {', '.join(EFFECTS)}")
        allowed = effect_arguments(fx["effect"]) + ([] if fx["effect"] in BALANCED else ["mix"])
        for key, value in fx.items():
            if key == "effect":
                continue
            if key not in allowed:
                raise ValueError(f"chain[{i}].{key}: found {key!r}, allowed for {fx['effect']}: "
                                 f"{', '.join(allowed)}")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"chain[{i}].{key}: found {value!r}, allowed a number")


class PyoServer:
    """One pyo server in manual mode, with its interleaved buffers as numpy views (frames, channels)."""

    def __init__(self, sample_rate: int, block: int, channels: int = 2):
        self.pyo = _import_pyo()
        with contextlib.redirect_stdout(_io.StringIO()):
            self.server = self.pyo.Server(sr=sample_rate, nchnls=channels, buffersize=block,
                                          duplex=1, audio="manual").boot()
        self.server.start()
        n = block * channels
        self.inp = np.ctypeslib.as_array(
            (ctypes.c_float * n).from_address(int(self.server.getInputAddr(), 16))).reshape(block, channels)
        self.out = np.ctypeslib.as_array(
            (ctypes.c_float * n).from_address(int(self.server.getOutputAddr(), 16))).reshape(block, channels)
        self.inp[:] = 0.0

    @contextlib.contextmanager
    def current(self):
        """Objects made inside bind to this server (pyo binds to the current one); pyo's banner muted."""
        self.server.setServer()
        with contextlib.redirect_stdout(_io.StringIO()):
            yield self.pyo

    def process(self) -> None:
        self.server.process()

    def shutdown(self) -> None:
        self.server.stop()
        self.server.shutdown()


class PyoRack(Node):
    """A chain of pyo effects, stereo in and out, configured from the patch::

        chain = [{ effect = "Chorus", depth = 1.5 },
                 { effect = "Delay", delay = 0.3, feedback = 0.3, mix = 0.25 },
                 { effect = "Freeverb", size = 0.8, bal = 0.3 }]
    """

    OPTIONS = {"chain": Option(list, default=[], doc="effects in order, each {effect = NAME, ...}")}
    PARAMS = {
        "wet": Param(1.0, 0.0, 1.0, "", "0 bypasses the whole chain"),
        "gain_db": Param(0.0, -60.0, 12.0, "dB"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        check_chain(self.options["chain"])
        self.inputs = {"in": 2}
        self.outputs = {"out": 2}
        self.host: PyoServer | None = None
        self.objects: list = []

    def prepare(self, ctx) -> None:
        self.host = PyoServer(ctx.sample_rate, ctx.block)
        with self.host.current() as pyo:
            signal = pyo.Input([0, 1])
            self.objects = [signal]
            for fx in self.options["chain"]:
                kwargs = {k: v for k, v in fx.items() if k not in ("effect", "mix")}
                wet = getattr(pyo, fx["effect"])(signal, **kwargs)
                self.objects.append(wet)
                if "mix" in fx:
                    wet = pyo.Interp(signal, wet, interp=float(fx["mix"]))
                    self.objects.append(wet)
                signal = wet
            self.objects.append(signal.out(0))

    def process(self, io) -> None:
        dry = io.inputs["in"]
        self.host.inp[:] = dry.T
        self.host.process()
        out = io.outputs["out"]
        p, P = self.params, self.P
        wet = p[P.wet]
        gain = 10.0 ** (p[P.gain_db] / 20.0)
        np.multiply(self.host.out.T, wet * gain, out=out)
        if wet < 1.0:
            out += dry * ((1.0 - wet) * gain)

    def reset(self) -> None:
        for obj in self.objects:
            if hasattr(obj, "reset"):
                obj.reset()

    def close(self) -> None:
        if self.host is not None:
            for obj in self.objects:
                obj.stop()
            self.objects = []
            self.host.shutdown()
            self.host = None
