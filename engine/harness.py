"""One entry point that runs a node or a whole patch over arrays, offline: ``run(...)``.

As pedalboard's ``board(audio, sample_rate)``: the same node object that plays
live is prepared, fed ``audio`` block by block, handed its events at their
sample offsets, and what it produced comes back as whole signals::

    from cadenza.engine.harness import run
    result = run(BeatTracker("beat"), audio, 48000)            # one node
    result.events[result.events["kind"] == Kind.BEAT]["time"]   # its beats, samples
    result.controls["bpm"]                                      # its published tempo, per frame
    result = run("default", None, 48000, events=score, frames=n)  # a patch (offline backend)

For a node, :class:`Runner` is the streaming form (pedalboard's ``reset=False``):
each ``process`` call continues where the last one stopped. Tests, benchmarks
and the file tools all run nodes through here, never through a loop of their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadenza.engine.events import EVENT_DTYPE, Inbox, make_events
from cadenza.engine.graph import Graph, mix_into
from cadenza.engine.node import Context, Node, NodeIO
from cadenza.engine.patch import Patch


@dataclass
class Result:
    """What one run produced. Times are samples from the start of the run (a Runner's first block).

    ``audio``: the first output port, float32 (channels, frames) — for a patch, the engine's
    output (2, frames); ``controls``: each published control, float32 (frames,) — a node's by
    its own name (``"bpm"``), a patch's by ``"<node>.<name>"``; ``events``: every event emitted
    (a node's ``io.emit``, a patch's outbound ring), EVENT_DTYPE in emission order;
    ``block_us``: time in the node's ``process`` (a patch: the whole ``Engine.process``) per
    block, microseconds.
    """

    audio: np.ndarray
    controls: dict[str, np.ndarray]
    events: np.ndarray
    sample_rate: int
    block: int
    block_us: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def frames(self) -> int:
        return self.audio.shape[1]


def _as_inputs(audio, ports: dict[str, int]) -> dict[str, np.ndarray]:
    """``audio`` (an array for the first input port, or port → array) as port → float32 (ch, n)."""
    if audio is None:
        return {}
    if not isinstance(audio, dict):
        if not ports:
            raise ValueError("audio given to a node that takes none (it has no input port)")
        audio = {next(iter(ports)): audio}
    out = {}
    for port, x in audio.items():
        if port not in ports:
            raise ValueError(f"input port {port!r}: allowed {', '.join(ports) or 'none'}")
        x = np.asarray(x, np.float32)
        out[port] = x[None, :] if x.ndim == 1 else x
    return out


def _sorted_events(events) -> np.ndarray:
    if events is None:
        return make_events(0)
    return np.sort(np.asarray(events, EVENT_DTYPE), order="time", kind="stable")


class Runner:
    """One node streamed block by block, as the graph runs it (prepared here, at ``sample_rate``).

    Each ``process`` call continues the node's stream: events are stamped in samples since
    the first block; PARAM events set params (clamped) before the block, as in the graph.
    Controls the node reads (``node.reads``) come from ``controls`` (by local or dotted name,
    float32 per frame), zeros where none is given.
    """

    def __init__(self, node: Node, sample_rate: int, block: int = 128):
        self.node = node
        self.sample_rate = int(sample_rate)
        self.block = int(block)
        self.time = 0  # sample time of the next block's first frame
        self._emitted: list[tuple] = []
        self.io = io = NodeIO(self._collect, Inbox())
        for port, ch in node.inputs.items():
            io.inputs[port] = np.zeros((ch, block), np.float32)
        for port, ch in node.outputs.items():
            io.outputs[port] = np.zeros((ch, block), np.float32)
        for name in node.controls:
            io.published[name] = np.zeros(block, np.float32)
        for local in node.reads:
            io.controls[local] = np.zeros(block, np.float32)
        node.open(Context(self.sample_rate, block, node.id))  # prepare, then reset

    def _collect(self, time, kind, target, channel, a, b, value, echo=True) -> None:
        self._emitted.append((time, kind, target, channel, a, b, value))

    def reset(self) -> None:
        """The node's ``reset()``, and time back to 0."""
        self.node.reset()
        self.time = 0

    def process(self, audio=None, events=None, controls: dict | None = None,
                frames: int | None = None) -> Result:
        """Run ``frames`` more frames (default: the length of ``audio``, else of ``controls``).

        ``audio``: (channels, n) or mono (n,) for the first input port, or port → array;
        shorter than ``frames`` is padded with zeros, channels fan out / fold down as the
        graph mixes them. Whole blocks run; the result is cut to ``frames``.
        """
        node, io, block = self.node, self.io, self.block
        inputs = _as_inputs(audio, node.inputs)
        reads = {}
        for local, dotted in node.reads.items():
            signal = None if controls is None else controls.get(local, controls.get(dotted))
            if signal is not None:
                reads[local] = np.asarray(signal, np.float32).reshape(-1)
        if frames is None:
            lengths = [x.shape[1] for x in inputs.values()] + [x.shape[0] for x in reads.values()]
            if not lengths:
                raise ValueError("frames: nothing to measure (no audio, no controls): give frames")
            frames = max(lengths)
        n_blocks = -(-frames // block)
        n = n_blocks * block
        first = next(iter(node.outputs.values()), 0)
        out = np.zeros((first, n), np.float32)
        published = {name: np.zeros(n, np.float32) for name in node.controls}
        block_us = np.zeros(n_blocks)
        events = _sorted_events(events)
        fed = 0
        self._emitted = []
        port_out = io.outputs[next(iter(node.outputs))] if node.outputs else None
        for b in range(n_blocks):
            lo, hi = b * block, (b + 1) * block
            start = self.time
            for port, x in inputs.items():
                dst = io.inputs[port]
                piece = x[:, lo:hi]
                if piece.shape == dst.shape:
                    dst[:] = piece
                else:
                    dst[:] = 0.0
                    if piece.shape[1]:
                        chunk = np.zeros((piece.shape[0], block), np.float32)
                        chunk[:, :piece.shape[1]] = piece
                        mix_into(dst, chunk)
            for local, x in reads.items():
                piece = x[lo:hi]
                io.controls[local][: piece.shape[0]] = piece
                io.controls[local][piece.shape[0]:] = 0.0
            while fed < len(events) and events[fed]["time"] < start + block:
                io.inbox.insert(events[fed])
                fed += 1
            io.block_start = start
            io.frames = block
            if io.inbox.count:
                Graph.apply_params(node, io.events)
            t0 = time.perf_counter_ns()
            node.process(io)
            block_us[b] = (time.perf_counter_ns() - t0) * 1e-3
            io.inbox.clear()
            if port_out is not None:
                out[:, lo:hi] = port_out
            for name, buf in io.published.items():
                published[name][lo:hi] = buf
            self.time += block
        emitted = np.array(self._emitted, EVENT_DTYPE) if self._emitted else make_events(0)
        return Result(out[:, :frames], {k: v[:frames] for k, v in published.items()}, emitted,
                      self.sample_rate, block, block_us)


def _run_patch(patch, audio, sample_rate, events, block, frames) -> Result:
    """A whole patch through an :class:`Engine` and the offline backend."""
    from cadenza.engine.backends.offline import OfflineBackend
    from cadenza.engine.engine import Engine
    from cadenza.engine.patch import load_patch

    if not isinstance(patch, Patch):
        patch = load_patch(patch)
    adc = None if audio is None else np.asarray(audio, np.float32)
    if adc is not None and adc.ndim == 1:
        adc = adc[None, :]
    events = None if events is None else _sorted_events(events)
    if frames is None:
        frames = max(adc.shape[1] if adc is not None else 0,
                     int(events["time"][-1]) + 1 if events is not None and len(events) else 0)
    engine = Engine(patch, sample_rate, block)
    try:
        block = engine.block
        n = -(-frames // block) * block
        controls = {name: np.zeros(n, np.float32) for name in engine.graph.controls}
        out_events: list[np.ndarray] = []
        block_us = np.zeros(n // block)

        def each_block(b: int) -> None:
            lo = b * block
            for name, buf in engine.graph.controls.items():
                controls[name][lo: lo + block] = buf
            out_events.append(engine.outbound.pop_all())
            block_us[b] = engine.stats.load_last * engine.period_s * 1e6

        audio_out = OfflineBackend(engine).render(frames, adc, events, on_block=each_block)
        emitted = np.concatenate(out_events) if out_events else make_events(0)
        return Result(audio_out, {k: v[:frames] for k, v in controls.items()}, emitted,
                      engine.sample_rate, block, block_us)
    finally:
        engine.close()


def run(node_or_patch, audio=None, sample_rate: int | None = None, events=None, block: int = 128, *,
        controls: dict | None = None, frames: int | None = None) -> Result:
    """Run a node, or a patch, over ``audio`` and ``events``; returns a :class:`Result`.

    ``node_or_patch``: a :class:`Node` (fresh: it is prepared here), or a :class:`Patch`,
    patch file or patch name. ``audio``: float (channels, frames) or mono (frames,) — a node's
    first input port (or a dict port → array), a patch's ``adc``. ``sample_rate``: Hz (a patch:
    None = the patch's). ``events``: EVENT_DTYPE rows stamped in samples from the start; a node
    gets them all, a patch routes each to its ``target`` (a node index, ``BROADCAST``...).
    ``block``: frames per block (a patch: None = the patch's). ``controls``: the signals a node
    reads (see :class:`Runner`). ``frames``: how long to run (default: the input's length, or
    up to the last event); the output has exactly ``frames`` frames.
    """
    if isinstance(node_or_patch, Node):
        if sample_rate is None:
            raise ValueError("sample_rate: a node needs one (Hz)")
        return Runner(node_or_patch, sample_rate, block).process(audio, events, controls, frames)
    if isinstance(node_or_patch, (Patch, str, Path)):
        return _run_patch(node_or_patch, audio, sample_rate, events, block, frames)
    raise TypeError(f"run: found {type(node_or_patch).__name__}, allowed a Node, a Patch, or a patch path/name")

