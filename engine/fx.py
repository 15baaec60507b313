"""pyo as an effects rack inside the engine's own block.

One pyo ``Server(audio='manual')`` per process (pyo binds its objects to one
server), booted at the engine's rate and block size. Each rack owns a stereo
pair of the server's channels: it writes its input into the server's
interleaved input buffer, calls ``server.process()`` once, and reads its pair
back from the output buffer. Reverbs, chorus, delay, EQ and dynamics are
pyo's own C DSP.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import io as _io
import os

import numpy as np

from engine.node import Node, Option, Param

os.environ.setdefault("PYO_GUI_WX", "0")

# Effects a patch may chain, with the pyo keyword arguments each accepts.
EFFECTS = ("Freeverb", "STRev", "WGVerb", "Chorus", "Delay", "EQ", "Compress", "Disto",
           "Phaser", "ButLP", "ButHP", "Harmonizer", "FreqShift", "Gate", "Biquad")
# Effects with their own dry/wet ("bal"); the others take an optional "mix".
BALANCED = ("Freeverb", "STRev", "WGVerb", "Chorus")
MAX_RACKS = 4  # stereo pairs on the shared server: a patch swap needs two at once


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


class PyoHost:
    """The process's one pyo server in manual mode, with its buffers as numpy views."""

    _instance: "PyoHost | None" = None

    @classmethod
    def get(cls, sample_rate: int, block: int) -> "PyoHost":
        host = cls._instance
        if host is not None and (host.sample_rate, host.block) != (sample_rate, block):
            if any(host.claimed):
                raise RuntimeError(f"pyo already runs at {host.sample_rate} Hz / {host.block} frames")
            host.shutdown()
            host = None
        if host is None:
            host = cls._instance = cls(sample_rate, block)
        return host

    def __init__(self, sample_rate: int, block: int):
        self.pyo = _import_pyo()
        self.sample_rate, self.block = sample_rate, block
        channels = 2 * MAX_RACKS
        with contextlib.redirect_stdout(_io.StringIO()):
            self.server = self.pyo.Server(sr=sample_rate, nchnls=channels, buffersize=block,
                                          duplex=1, audio="manual").boot()
        self.server.start()
        n = block * channels
        self.inp = np.ctypeslib.as_array(
            (ctypes.c_float * n).from_address(int(self.server.getInputAddr(), 16))).reshape(block, channels)
        self.out = np.ctypeslib.as_array(
            (ctypes.c_float * n).from_address(int(self.server.getOutputAddr(), 16))).reshape(block, channels)
        self.claimed = [False] * MAX_RACKS

    def claim(self) -> int:
        for pair, used in enumerate(self.claimed):
            if not used:
                self.claimed[pair] = True
                self.inp[:, 2 * pair: 2 * pair + 2] = 0.0
                return pair
        raise RuntimeError(f"more than {MAX_RACKS} pyo racks at once")

    def release(self, pair: int) -> None:
        self.claimed[pair] = False
        self.inp[:, 2 * pair: 2 * pair + 2] = 0.0

    def shutdown(self) -> None:
        self.server.stop()
        self.server.shutdown()
        PyoHost._instance = None


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
        self.host: PyoHost | None = None
        self.objects: list = []

    def prepare(self, ctx) -> None:
        self.host = PyoHost.get(ctx.sample_rate, ctx.block)
        self.pair = self.host.claim()
        pyo = self.host.pyo
        c0 = 2 * self.pair
        with contextlib.redirect_stdout(_io.StringIO()):
            signal = pyo.Input([c0, c0 + 1])
            self.objects = [signal]
            for fx in self.options["chain"]:
                kwargs = {k: v for k, v in fx.items() if k not in ("effect", "mix")}
                wet = getattr(pyo, fx["effect"])(signal, **kwargs)
                self.objects.append(wet)
                if "mix" in fx:
                    wet = pyo.Interp(signal, wet, interp=float(fx["mix"]))
                    self.objects.append(wet)
                signal = wet
            self.objects.append(signal.out(c0))
        self.c0 = c0
        self.in_pair = self.host.inp[:, c0: c0 + 2]
        self.out_pair = self.host.out[:, c0: c0 + 2]

    def process(self, io) -> None:
        dry = io.inputs["in"]
        self.in_pair[:] = dry.T
        self.host.server.process()
        out = io.outputs["out"]
        wet = self.params[0]
        gain = 10.0 ** (self.params[1] / 20.0)
        np.multiply(self.out_pair.T, wet * gain, out=out)
        if wet < 1.0:
            out += dry * ((1.0 - wet) * gain)

    def reset(self) -> None:
        for obj in self.objects:
            if hasattr(obj, "reset"):
                obj.reset()

    def close(self) -> None:
        if self.host is not None and self.objects:
            for obj in self.objects:
                obj.stop()
            self.objects = []
            self.host.release(self.pair)
