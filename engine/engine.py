"""The engine: one patch's graph, its clock and the event lanes in and out.

Control threads (MIDI, OSC, scripts) each own an :class:`EventRing` from
``input_ring()``, and stamp events with ``stamp()``. The audio thread calls
``process()`` once per block; it never waits on anything.

Two sample counts. The engine's own (``clock.sample_time``) counts the
frames it rendered: nodes, deferred events and outbound events use it. What
comes in from outside is stamped on the *timeline* (``now()``,
``sample_at()``): samples of wall-clock time, locked to when the backend says
each block is due (JACK's cycle times). They differ by ``lag`` — frames the
server played without us (skipped cycles) and a driver that fell behind the
wall clock. Stamped events wait in ``timed`` in timeline samples and move to
the engine's count only in the block they are due in, with the lag of that
block, so an OSC bundle timetagged 100 ms ahead lands on its frame even when
the timeline moved in between.

With Ableton Link on (``link``: a :class:`~cadenza.engine.link.LinkSession`
started beside the engine), each block's clock is steered onto the session's
beat at the block's first frame on the timeline, and the tempo the engine is
asked for (``set_tempo``) goes to the session instead of the clock.

A new graph (a patch reload) is handed over with ``swap()`` and crossfaded in
over ``CROSSFADE_S`` with equal-power gains; the graph it replaces is handed
back through ``retired()`` so a control thread closes it, never the audio
thread (as SuperCollider frees in its non-real-time thread).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from cadenza.engine.clock import Clock, Timeline
from cadenza.engine.dsp.units import warm_up_units
from cadenza.engine.events import BROADCAST, ENGINE, OUTBOUND, EventRing, Kind, Scheduler, warm_up_kernels
from cadenza.engine.graph import OUT_CHANNELS, Faults, Graph
from cadenza.engine.midi import MidiMap
from cadenza.engine.patch import Patch


@dataclass
class Stats:
    """Counters a performer can read at a glance (see ``status_line``)."""

    blocks: int = 0
    load_last: float = 0.0  # processing time / block period, last block
    load_max: float = 0.0
    busy_s: float = 0.0  # processing time of every block so far, s (its growth over wall time: the mean load)
    deadline_misses: int = 0
    xruns: int = 0
    events_in: int = 0
    events_out: int = 0
    errors: int = 0
    swaps: int = 0  # patch swaps the audio thread has begun crossfading


CROSSFADE_S = 0.02  # a patch swap fades old out and new in over this long (equal power)
TEMPO_REPORT_BPM = 0.01  # a tempo change at least this big goes out (/cadenza/out/engine/tempo)


class Engine:
    """Runs a patch block by block at ``sample_rate`` (Hz) and ``block`` (frames)."""

    def __init__(self, patch: Patch, sample_rate: int | None = None, block: int | None = None):
        audio = patch.table("audio")
        self.sample_rate = int(sample_rate or audio["sample_rate"])
        self.block = int(block or audio["block"])
        clock = patch.table("clock")
        self.clock = Clock(self.sample_rate, clock["bpm"], clock["beats_per_bar"])
        self._tempo_sent = self.clock.bpm  # bpm last reported outbound
        warm_up_kernels()
        warm_up_units()
        self.scheduler = Scheduler()  # engine samples: graph deferrals, ``schedule()``
        self.timed = Scheduler()  # timeline samples: everything stamped from outside
        self.timeline = Timeline(self.sample_rate)
        self.lag = 0  # timeline − engine samples, this block
        self._followed, self._due = -1, 0.0  # the block the timeline last followed, and when it is due
        self.outbound = EventRing(8192)
        self.rings: list[EventRing] = []
        self.stats = Stats()
        self.scheduling_delay = round(audio["scheduling_delay_ms"] * 1e-3 * self.sample_rate)
        # [engine sample, monotonic seconds, lag] of the current block's start, for stamping
        self._anchor = np.zeros(3, np.float64)
        self.faults = Faults()
        self._next_graph: Graph | None = None
        self._swap_lock = threading.Lock()  # between control threads only
        self._fading: Graph | None = None  # the outgoing graph while a swap crossfades
        self._fade_pos = 0
        self._fade_len = max(1, int(CROSSFADE_S * self.sample_rate) // self.block)
        self._fade_out = np.zeros((OUT_CHANNELS, self.block), np.float32)
        self._fade_in = np.zeros((OUT_CHANNELS, self.block), np.float32)
        self._fade_ramp = np.arange(self.block, dtype=np.float32)
        self._fade_theta = np.zeros(self.block, np.float32)
        self._fade_gain = np.zeros(self.block, np.float32)
        self._retired: collections.deque[Graph] = collections.deque()
        self._worker = None  # the worker lane, made on first use of ``worker``
        self._jobs_inline = False  # offline: lane jobs run at submit, so a render is deterministic
        self.input_file = None  # a FileInput that replaces the backend's audio input (play --input)
        self.link = None  # a started LinkSession: the clock follows an Ableton Link session
        self.patch = patch
        self.graph = self.build_graph(patch)
        self.midi_map = MidiMap(patch.table("midi"), self.graph)

    @property
    def period_s(self) -> float:
        return self.block / self.sample_rate

    def build_graph(self, patch: Patch) -> Graph:
        """Build (and prepare) a graph for ``patch`` at this engine's rate. Not real-time."""
        return Graph(patch, self.sample_rate, self.block, self.clock,
                     self.outbound.push, self.scheduler.add, self.faults, lambda: self.worker)

    def swap(self, patch: Patch, graph: Graph, timeout_s: float = 2.0) -> bool:
        """Crossfade to ``graph`` from the next block boundary on (from a control thread).

        Waits until the audio thread has taken the previous swap, so no graph is
        ever lost between two quick reloads. Returns False (and drops ``graph``
        into ``retired()``) when the audio has not taken it within ``timeout_s``.
        """
        with self._swap_lock:
            deadline = time.monotonic() + timeout_s
            while self._next_graph is not None or self._fading is not None:
                if time.monotonic() > deadline:
                    self._retired.append(graph)
                    return False
                time.sleep(self.period_s)
            self.patch = patch
            self.midi_map = MidiMap(patch.table("midi"), graph)
            self._next_graph = graph
        return True

    def retired(self) -> list[Graph]:
        """Graphs the audio thread has let go of, for a control thread to ``close()``."""
        out = []
        while self._retired:
            out.append(self._retired.popleft())
        return out

    def input_ring(self, capacity: int = 4096) -> EventRing:
        """A new single-producer ring for one control thread."""
        ring = EventRing(capacity)
        self.rings.append(ring)
        return ring

    def now(self) -> int:
        """The current timeline sample as seen from any thread: what input events are stamped with."""
        return int(self.sample_at(time.monotonic()))

    def output_now(self) -> int:
        """The engine sample being played now, from any thread: outbound events are stamped in it."""
        start, t0, _ = self._anchor
        return int(start if t0 == 0.0 else start + (time.monotonic() - t0) * self.sample_rate)

    def sample_at(self, t: float) -> float:
        """The (fractional) timeline sample due at ``time.monotonic()`` seconds ``t``, from any thread."""
        start, t0, lag = self._anchor
        return float(start + lag) if t0 == 0.0 else start + lag + (t - t0) * self.sample_rate

    def follow(self, start_time: float) -> int:
        """Audio thread: the backend says the coming block's first frame is due at ``start_time``
        (monotonic s). Sets the block's smoothed due time and ``lag``; returns ``lag``."""
        self._followed = self.clock.sample_time
        self._due = self.timeline.follow(self._followed, start_time)
        self.lag = self.timeline.lag
        return self.lag

    def stamp(self, arrival: int | None = None) -> int:
        """Sample time for an event that arrived now (or at ``arrival``): + scheduling delay."""
        return (self.now() if arrival is None else arrival) + self.scheduling_delay

    @property
    def worker(self):
        """The worker lane (:mod:`cadenza.engine.worker`): jobs off the audio thread whose events
        come back through an input ring of this engine. Made and started on first use (touch it
        in ``prepare`` or a control thread, never in ``process``); ``close()`` stops it."""
        if self._worker is None:
            from cadenza.engine.worker import WorkerLane

            lane = WorkerLane(self.input_ring(), now=self.now, inline=self._jobs_inline)
            lane.start()
            self._worker = lane
        return self._worker

    def run_jobs_inline(self) -> None:
        """Offline rendering: worker jobs run when submitted, on the rendering thread, so their
        events come back at the same block every run (a render is deterministic)."""
        self._jobs_inline = True
        if self._worker is not None:
            self._worker.run_inline()

    def node_index(self, node_id: str) -> int:
        return self.graph.index[node_id]

    def process(self, adc: np.ndarray | None = None, out: np.ndarray | None = None,
                start_time: float | None = None) -> np.ndarray:
        """Run one block. ``adc``: (channels, frames) input or None (``input_file``, when set,
        replaces it). Returns (2, frames).

        ``start_time``: when the block's first frame is due, in ``time.monotonic()``
        seconds, if the backend knows it better than "now" (JACK's cycle time): the
        timeline follows it (``follow``), and ``now()`` and every stamp ride on it.
        """
        t0 = time.perf_counter_ns()
        if self.input_file is not None:
            adc = self.input_file.next_block()
        if self._next_graph is not None and self._fading is None:
            self._fading, self.graph, self._next_graph = self.graph, self._next_graph, None
            self._fading.silence_events()  # its node indices mean other nodes in the new graph
            self._fade_pos = 0
            self.stats.swaps += 1
        start = self.clock.sample_time
        if start_time is not None and self._followed != start:
            self.follow(start_time)
        # one numpy store, so a control thread never reads a half-updated anchor
        due = time.monotonic() if start_time is None else self._due
        self._anchor[:] = (start, due, self.lag)
        link = self.link
        if link is not None:
            link.drive(self.clock, due, self.block)
        try:
            result = self._run_block(start, adc)
        except Exception as exc:  # a bug outside any node: this block is silent, the show goes on
            self.faults.record("engine", exc)
            result = self._fade_out
            result[:] = 0.0
        self.clock.advance(self.block)
        if out is not None:
            out[:OUT_CHANNELS] = result
        elapsed = (time.perf_counter_ns() - t0) * 1e-9
        load = elapsed / self.period_s
        s = self.stats
        s.blocks += 1
        s.load_last = load
        s.load_max = max(s.load_max, load)
        s.busy_s += elapsed
        s.deadline_misses += load > 1.0
        return result

    def _run_block(self, start: int, adc: np.ndarray | None) -> np.ndarray:
        graph = self.graph
        self._report_tempo(start)
        for ring in self.rings:
            self.stats.events_in += len(ring)
            self.timed.add_from(ring)
        n_stamped = self.timed.take(start + self.lag + self.block)
        self.scheduler.add_shifted(self.timed.due, n_stamped, -self.lag)
        n_due = self.scheduler.take(start + self.block)
        due = self.scheduler.due
        for i in range(n_due):
            ev = due[i]
            if ev["target"] == ENGINE:
                if ev["kind"] == Kind.TEMPO:
                    self.set_tempo(float(ev["value"]), max(int(ev["time"]) - start, 0))
            else:
                graph.route(ev)
        result = graph.process(start, adc)
        if self._fading is not None:
            result = self._crossfade(start, adc, result)
        self._follow_tempo(graph)
        return result

    def _crossfade(self, start: int, adc: np.ndarray | None, incoming: np.ndarray) -> np.ndarray:
        """Mix this block of the outgoing graph (cos) with the incoming one (sin); retire it at the end."""
        fading = self._fading
        old = fading.process(start, adc)
        theta, gain = self._fade_theta, self._fade_gain
        np.add(self._fade_ramp, self._fade_pos * self.block, out=theta)
        theta *= 0.5 * math.pi / (self._fade_len * self.block)
        out = self._fade_out
        np.multiply(old, np.cos(theta, out=gain), out=out)
        np.multiply(incoming, np.sin(theta, out=gain), out=self._fade_in)
        out += self._fade_in
        ceiling = self.graph.safety.ceiling  # correlated graphs sum to +3 dB mid-fade: still never past it
        np.clip(out, -ceiling, ceiling, out=out)
        self._fade_pos += 1
        if self._fade_pos >= self._fade_len:
            self._fading = None
            self._retired.append(fading)
        return out

    def _report_tempo(self, start: int) -> None:
        """The tempo the last block ended at goes out when it moved ``TEMPO_REPORT_BPM`` or more."""
        bpm = self.clock.bpm
        if abs(bpm - self._tempo_sent) >= TEMPO_REPORT_BPM:
            self._tempo_sent = bpm
            self.outbound.push(start, Kind.TEMPO, OUTBOUND, 0, 0, 0, bpm)

    def _follow_tempo(self, graph: Graph) -> None:
        follow = graph.patch.table("clock")["follow"]
        if follow:
            bpm = graph.controls.get(f"{follow}.bpm")
            if bpm is not None and bpm[-1] > 0:
                self.set_tempo(float(bpm[-1]), 0)

    def set_tempo(self, bpm: float, offset: int = 0) -> None:
        """Audio thread: the tempo from ``offset`` frames into the coming block; with Link on, asked
        of the session (every peer follows it, this clock a few ms later)."""
        link = self.link
        if link is not None:
            link.request_tempo(bpm)
        else:
            self.clock.set_tempo(bpm, offset)

    def schedule(self, events: np.ndarray) -> None:
        """Add stamped events directly (same thread as ``process`` only: offline, scripts)."""
        for ev in events:
            self.scheduler.add(*ev.tolist())

    def panic(self, ring: EventRing) -> None:
        """All notes off, tails cut, from any control thread."""
        ring.push(self.now(), Kind.PANIC, BROADCAST)

    def status_line(self) -> str:
        s = self.stats
        peak = self.graph.safety.take_peak()
        peak_db = 20 * np.log10(peak) if peak > 0 else -np.inf
        link = self.link
        return (f"load {s.load_last * 100:5.1f}% (max {s.load_max * 100:5.1f}%)  xruns {s.xruns}  "
                f"late {s.deadline_misses}  events in {s.events_in} out {s.events_out}  errors {s.errors}  "
                f"peak {peak_db:6.1f} dBFS  bar {self.clock.bar + 1} beat {self.clock.beat_in_bar + 1:4.2f} "
                f"@ {self.clock.bpm:5.1f} bpm" + ("" if link is None else f"  {link.status()}"))

    def problems(self) -> dict[str, tuple[int, str]]:
        """Counters kept on the audio thread (which never prints), for a control thread's log:
        kind → (running total, message with ``{new}`` / ``{total}``)."""
        return {
            "events-dropped": (self.scheduler.dropped + self.timed.dropped + sum(r.dropped for r in self.rings),
                               "{new} event(s) dropped: the scheduler (4096) or an input ring was full; "
                               "the farthest-future ones go first ({total} in all)"),
            "inbox-dropped": (sum(io.inbox.dropped for io in self.graph.ios),
                              "{new} event(s) for one node in one block dropped: its inbox (512) was full "
                              "({total} in this patch)"),
            "outbound-dropped": (self.outbound.dropped, "{new} outgoing event(s) dropped: the out ring was "
                                                        "full ({total} in all)"),
            "audio-error": (self.faults.count, self.faults.describe()),
        } | (self._worker.problems() if self._worker is not None else {})

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        for graph in [self.graph, self._next_graph, self._fading, *self.retired()]:
            if graph is not None:
                graph.close()
