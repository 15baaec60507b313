"""The block graph: nodes built from a patch, run in dependency order once per block.

A node whose ``process`` raises is silent for that block (its outputs and
published controls zeroed, its state reset); the fault is counted in
:class:`Faults` and the rest of the graph plays on.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from cadenza.engine.clock import Clock
from cadenza.engine.events import BROADCAST, OUTBOUND, Inbox, Kind
from cadenza.engine.node import Context, Node, NodeIO
from cadenza.engine.patch import Patch, PatchError
from cadenza.engine.safety import Safety

OUT_CHANNELS = 2
# Event kinds whose copies leave the engine (OSC / MIDI out) when a node emits them.
ECHOED_KINDS = frozenset({Kind.NOTE_ON, Kind.NOTE_OFF, Kind.BEAT, Kind.PITCH, Kind.TEMPO,
                          Kind.BEAT_PREDICTION, Kind.LOUDNESS, Kind.DOWNBEAT})


@njit(nogil=True, cache=True)
def mix_into(dst, src):
    """Add ``src`` (channels, frames) into ``dst``: mono fans out, to mono folds down."""
    n_dst, frames = dst.shape
    n_src = src.shape[0]
    if n_dst == 1 and n_src > 1:
        scale = 1.0 / n_src
        for i in range(frames):
            acc = 0.0
            for s in range(n_src):
                acc += src[s, i]
            dst[0, i] += acc * scale
        return
    for c in range(n_dst):
        s = c % n_src
        for i in range(frames):
            dst[c, i] += src[s, i]


def _drop_event(*event) -> None:
    """An emit that goes nowhere."""


class Faults:
    """Exceptions caught on the audio thread (in a node, the engine or a backend's callback):
    a count and the latest one, named off that thread."""

    def __init__(self):
        self.count = 0
        self.node = ""
        self.error: BaseException | None = None

    def record(self, node_id: str, error: BaseException) -> None:
        """Audio thread: remember the fault (no formatting here; ``describe`` does that)."""
        self.count += 1
        self.node = node_id
        self.error = error

    def describe(self) -> str:
        """One line for the log (control threads): which node failed and why."""
        error = self.error
        if error is None:
            return "no node error"
        text = str(error).splitlines()[0][:160] if str(error) else ""
        named = f"{self.node} raised {type(error).__name__}{': ' + text if text else ''}"
        return named.replace("{", "{{").replace("}", "}}") + (
            "; silent for {new} block(s), the rest played on ({total} in all)")


class Graph:
    """Nodes of one patch, their buffers and their wiring, at a fixed rate and block size.

    ``process(block_start, adc)`` runs one block and returns the output
    (2, frames), which has always been through the safety stage.
    """

    def __init__(self, patch: Patch, sample_rate: int, block: int, clock: Clock, emit_outbound, defer,
                 faults: Faults | None = None, lane=None):
        self.patch = patch
        self.faults = faults or Faults()
        self.sample_rate = sample_rate
        self.block = block
        self.clock = clock
        self._emit_outbound = emit_outbound
        self._defer = defer
        self._lane = lane  # a callable giving the engine's worker lane, handed to nodes in their Context
        specs = {s.id: s for s in patch.nodes}
        try:
            built = [spec.cls(spec.id, **spec.options) for spec in patch.nodes]
        except (ValueError, TypeError, OSError) as exc:
            raise PatchError(f"{patch.path}: {exc}") from None
        if any(isinstance(n, Safety) for n in built):
            raise PatchError(f"{patch.path}: node.type: found 'safety', allowed any other type "
                             "(the safety stage is added last automatically)")
        if sum(type(n).__name__ == "PyoRack" for n in built) > 1:
            raise PatchError(f"{patch.path}: node.type: found two 'pyo_rack' nodes, allowed one "
                             "(put every effect in one rack's chain)")
        self.nodes: list[Node] = self._order(built, specs)
        self.safety = Safety("safety")
        self.nodes.append(self.safety)
        self.index = {n.id: i for i, n in enumerate(self.nodes)}
        # nodes whose incoming notes go out as Kind.PLAYED ([osc] report_notes)
        self._reporting = frozenset(self.index[node_id] for node_id in patch.table("osc")["report_notes"])
        n_in = patch.table("audio")["inputs"]
        self.adc = np.zeros((max(n_in, 1), block), np.float32)
        self._block_end = 0
        self._current = 0
        self.processing_us = np.zeros(len(self.nodes), np.float64)
        try:
            self._build_io(specs)
            self._warm_up()
        except BaseException:  # a node that failed to load: release what the others opened (servers, fonts)
            try:
                self.close()
            except Exception:  # the load's own error is the one to report
                pass
            raise

    def _warm_up(self) -> None:
        """Run 20 ms of silent blocks with emits dropped, then reset: kernels compile here, not on
        stage (20 ms spans every node's control frame, so frame-rate paths compile too)."""
        emit_outbound, defer, faults = self._emit_outbound, self._defer, self.faults
        self._emit_outbound = self._defer = _drop_event
        self.faults = Faults()  # a node that fails here fails the load, not the stage
        try:
            for b in range(max(2, -(-self.sample_rate // 50 // self.block))):
                self.process(b * self.block, None)
        finally:
            warm_up_faults, self.faults = self.faults, faults
            self._emit_outbound, self._defer = emit_outbound, defer
            for io in self.ios:
                io.inbox.clear()
            self.reset()
        if warm_up_faults.count:
            text = warm_up_faults.describe().split(";")[0]
            raise PatchError(f"{self.patch.path}: {text} while warming up, allowed a node that runs")

    # -- construction ---------------------------------------------------------------

    def _order(self, built: list[Node], specs) -> list[Node]:
        """Topological order (Kahn), ties kept in patch order."""
        by_id = {n.id: n for n in built}
        deps: dict[str, set[str]] = {n.id: set() for n in built}
        for n in built:
            spec = specs[n.id]
            for src in spec.sources():
                src_id = src.split(":")[0]
                if src_id != "adc":
                    deps[n.id].add(src_id)
            for control in n.reads.values():
                owner = control.split(".")[0]
                if owner != "clock":
                    if owner not in by_id:
                        raise PatchError(f"{self.patch.path}: node.{n.id}: reads control {control!r}, "
                                         f"allowed a control of a node in this patch")
                    deps[n.id].add(owner)
            if spec.notes_to:
                deps[spec.notes_to].add(n.id)
        order: list[Node] = []
        done: set[str] = set()
        while len(order) < len(built):
            ready = [n for n in built if n.id not in done and deps[n.id] <= done]
            if not ready:
                cycle = sorted(set(by_id) - done)
                raise PatchError(f"{self.patch.path}: node: found a cycle through {', '.join(cycle)}, "
                                 "allowed an acyclic graph")
            order.append(ready[0])
            done.add(ready[0].id)
        return order

    def _build_io(self, specs) -> None:
        block = self.block
        self.controls: dict[str, np.ndarray] = {
            "clock.beat": np.zeros(block, np.float32),
            "clock.bpm": np.zeros(block, np.float32),
        }
        self.ios: list[NodeIO] = []
        self._mixes: list[list[tuple[np.ndarray, np.ndarray]]] = []
        out_bufs: dict[str, np.ndarray] = {}
        consumed: set[str] = set()
        for node in self.nodes:
            io = NodeIO(self._emit, Inbox())
            for port, ch in node.outputs.items():
                io.outputs[port] = np.zeros((ch, block), np.float32)
                out_bufs[f"{node.id}:{port}"] = io.outputs[port]
            for name in node.controls:
                arr = np.zeros(block, np.float32)
                io.published[name] = arr
                self.controls[f"{node.id}.{name}"] = arr
            self.ios.append(io)
        for node, io in zip(self.nodes, self.ios):
            mixes = []
            sources = self._sources(node, specs)
            for port, ch in node.inputs.items():
                io.inputs[port] = np.zeros((ch, block), np.float32)
                for src in sources.get(port, []):
                    if src == "adc":
                        mixes.append((io.inputs[port], self.adc))
                        continue
                    src_id, _, src_port = src.partition(":")
                    src_node = self.nodes[self.index[src_id]]
                    src_port = src_port or next(iter(src_node.outputs), "")
                    key = f"{src_id}:{src_port}"
                    if key not in out_bufs:
                        raise PatchError(f"{self.patch.path}: node.{node.id}.input: found {src!r}, "
                                         f"allowed an output port of {src_id}: {', '.join(src_node.outputs) or 'none'}")
                    consumed.add(src_id)
                    mixes.append((io.inputs[port], out_bufs[key]))
            self._mixes.append(mixes)
            spec = specs.get(node.id)
            if spec is not None and spec.notes_to:
                io.default_target = self.index[spec.notes_to]
        # the safety stage hears the patch's outputs
        outputs = self.patch.table("patch")["output"] or [
            n.id for n in self.nodes[:-1] if n.outputs and n.id not in consumed]
        safety_in = self.ios[-1].inputs["in"]
        for out_id in outputs:
            node = self.nodes[self.index[out_id]]
            if node.outputs:
                self._mixes[-1].append((safety_in, self.ios[self.index[out_id]].outputs[next(iter(node.outputs))]))
        for i, (node, io) in enumerate(zip(self.nodes, self.ios)):
            for local, name in node.reads.items():
                if name not in self.controls:
                    raise PatchError(f"{self.patch.path}: node.{node.id}: reads control {name!r}, "
                                     f"allowed one of {', '.join(sorted(self.controls))}")
                io.controls[local] = self.controls[name]
            node.open(Context(self.sample_rate, block, node.id, self._lane))  # prepare, then reset
            latency = node.latency_samples
            if not isinstance(latency, int) or latency < 0:
                raise PatchError(f"{self.patch.path}: node.{node.id}: latency_samples is {latency!r}, "
                                 "allowed an int >= 0 (a bug in the node type)")
        self.output = self.ios[-1].outputs["out"]
        self.latency_samples = self._path_latency(specs)

    def _path_latency(self, specs) -> int:
        """The patch's own latency: the longest sum of node latencies along any audio path (samples)."""
        total: dict[str, int] = {}
        for node in self.nodes[:-1]:  # dependency order: every source is done before its reader
            spec = specs.get(node.id)
            upstream = [total.get(src.split(":")[0], 0) for src in (spec.sources() if spec else [])]
            total[node.id] = node.latency_samples + max(upstream, default=0)
        return max(total.values(), default=0)

    def _sources(self, node: Node, specs) -> dict[str, list[str]]:
        spec = specs.get(node.id)
        if spec is None or not spec.inputs:
            return {}
        if isinstance(spec.inputs, dict):
            unknown = set(spec.inputs) - set(node.inputs)
            if unknown:
                raise PatchError(f"{self.patch.path}: node.{node.id}.input: found port {sorted(unknown)[0]!r}, "
                                 f"allowed {', '.join(node.inputs) or 'none (this node takes no audio)'}")
            return spec.inputs
        if not node.inputs:
            raise PatchError(f"{self.patch.path}: node.{node.id}.input: found {spec.inputs!r}, "
                             "allowed nothing (this node takes no audio)")
        return {next(iter(node.inputs)): spec.inputs}

    # -- per block --------------------------------------------------------------------

    def route(self, ev) -> None:
        """Deliver one due event (a record of EVENT_DTYPE) to its node(s) for this block."""
        target = int(ev["target"])
        if target == BROADCAST:
            for io in self.ios:
                io.inbox.insert(ev)
        elif target == OUTBOUND:
            self._emit_outbound(ev["time"], ev["kind"], OUTBOUND, ev["channel"], ev["a"], ev["b"], ev["value"])
        elif 0 <= target < len(self.ios):
            self.ios[target].inbox.insert(ev)
            if target in self._reporting:
                self._report(ev["time"], ev["kind"], target, ev["channel"], ev["a"], ev["b"])

    def _emit(self, time, kind, target, channel, a, b, value, echo=True) -> None:
        """A node's emit: same-block events to later nodes land in their inbox now. ``echo`` False (a
        node passing on an event it received) sends no copy out of the engine: the first one did."""
        if echo and (kind in ECHOED_KINDS or target == OUTBOUND):
            self._emit_outbound(time, kind, self._current, channel, a, b, value)
        if target < 0:
            return
        if time < self._block_end and target > self._current:
            self.ios[target].inbox.insert((time, kind, target, channel, a, b, value))
            if target in self._reporting:
                self._report(time, kind, target, channel, a, b)
        else:
            self._defer(time, kind, target, channel, a, b, value)

    def _report(self, time, kind, target, channel, note, velocity) -> None:
        """A note delivered to a reporting voice goes out as Kind.PLAYED (velocity 0 = off)."""
        if kind == Kind.NOTE_ON:
            self._emit_outbound(time, Kind.PLAYED, target, channel, note, velocity, 0.0)
        elif kind == Kind.NOTE_OFF:
            self._emit_outbound(time, Kind.PLAYED, target, channel, note, 0, 0.0)

    def process(self, block_start: int, adc: np.ndarray | None, timer=None) -> np.ndarray:
        frames = self.block
        self._block_end = block_start + frames
        if adc is None:
            self.adc[:] = 0.0
        else:  # a source wider than this patch's inputs (a file, a reload to fewer) gives what fits
            shared = min(adc.shape[0], self.adc.shape[0])
            self.adc[:shared] = adc[:shared]
        self.clock.fill(self.controls["clock.beat"], self.controls["clock.bpm"])
        panic = any(int(k) == Kind.PANIC for k in self.ios[-1].events["kind"])
        if panic:
            for node in self.nodes:
                node.reset()
        for i, (node, io, mixes) in enumerate(zip(self.nodes, self.ios, self._mixes)):
            self._current = i
            t0 = timer() if timer else 0
            io.block_start = block_start
            io.frames = frames
            for dst, _ in mixes:
                dst[:] = 0.0
            for dst, src in mixes:
                mix_into(dst, src)
            if io.inbox.count:
                self.apply_params(node, io.events)
            try:
                node.process(io)
            except Exception as exc:  # one broken node must not stop the show
                self._silence(node, io, exc)
            io.inbox.clear()
            if timer:
                self.processing_us[i] = (timer() - t0) * 1e-3
        return self.output

    def _silence(self, node: Node, io: NodeIO, exc: Exception) -> None:
        self.faults.record(f"node {node.id!r}", exc)
        for buf in io.outputs.values():
            buf[:] = 0.0
        for buf in io.published.values():
            buf[:] = 0.0
        try:
            node.reset()
        except Exception:  # a node that cannot even reset stays silent until it recovers
            pass

    def silence_events(self) -> None:
        """Drop this graph's emits from now on (it is fading out: its node indices are stale)."""
        self._emit_outbound = self._defer = _drop_event

    @staticmethod
    def apply_params(node: Node, events) -> None:
        """Apply PARAM events; the last guard for a value that is not finite or out of range."""
        for ev in events:
            if ev["kind"] == Kind.PARAM and 0 <= ev["a"] < node.params.shape[0]:
                value = float(ev["value"])
                if value == value and abs(value) != math.inf:
                    lo, hi = node.param_bounds[ev["a"]]
                    node.params[ev["a"]] = min(max(value, lo), hi)

    def param_target(self, dotted: str) -> tuple[int, int, float, float]:
        """``"node.param"`` → (node index, param index, lo, hi), or KeyError."""
        node_id, _, name = dotted.partition(".")
        node = self.nodes[self.index[node_id]]
        spec = node.PARAMS[name]
        return self.index[node_id], node.param_index[name], spec.lo, spec.hi

    def reset(self) -> None:
        for node in self.nodes:
            node.reset()

    def close(self) -> None:
        for node in self.nodes:
            node.close()
