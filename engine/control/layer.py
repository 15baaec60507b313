"""The live control layer: OSC in/out, MIDI in/out/clock, patch reload, status, errors.

One :class:`ControlLayer` runs beside any live backend. Its threads sleep in
socket and MIDI reads (which release the GIL), so the audio callback keeps
the interpreter when it needs it:

- ``cadenza-osc-in``: reads the UDP socket, parses, stamps, pushes events;
- rtmidi's own callback threads: one per MIDI input, each with its own ring;
- ``cadenza-out``: every 2 ms drains ``engine.outbound`` and sends each event
  when its sample time comes (OSC to every target, MIDI out), sends MIDI
  clock when the backend does not do it in its callback, refreshes the
  status line, reports the audio thread's counters as log lines and closes
  the graphs the audio thread has retired;
- ``cadenza-reload``: builds a new patch's graph, then ``engine.swap`` (one
  reload at a time; a request that comes while one builds waits for it).

Patch switching (``switch_patch``: ``/cadenza/patch``, the browser panel, and
MIDI program change when the first patch has a ``[set]``) picks a patch by
name or index from the run's :class:`PatchSet` and goes through the same
reload path, crossfaded at a block boundary.

No thread dies from one bad input: each loop turn and each request is caught,
counted and named in one line.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import sys
import threading
import time
from dataclasses import dataclass, field

import rtmidi

from cadenza.engine.control.log import ErrorLog
from cadenza.engine.control.midiclock import MidiClock
from cadenza.engine.control.midiio import RtMidiInput, RtMidiOutput, pick_api
from cadenza.engine.control.midiparse import event_bytes
from cadenza.engine.control.osc import OscIn, OscOut, build_message
from cadenza.engine.control.patchset import PatchSet
from cadenza.engine.hostport import parse_hostport
from cadenza.engine.events import OUTBOUND

OUT_POLL_S = 0.002
STATUS_EVERY_S = 0.5
MAX_PENDING_OUT = 16384  # outbound events waiting for their time; past it the farthest-future are dropped


@dataclass
class ControlOptions:
    """What the control layer opens. ``None`` means: as the patch says."""

    osc: bool = True
    osc_host: str | None = None  # listen address (patch [osc] listen, default 127.0.0.1)
    osc_port: int | None = None  # listen port (default 8000)
    osc_send: list[str] = field(default_factory=list)  # extra "host:port" targets
    midi: bool = True
    midi_in: str | None = None  # input port name substring (patch [midi] in)
    midi_out: str | None = None  # output port name substring (patch [midi] out)
    virtual: bool | None = None  # open the virtual "Cadenza" ports (patch [midi] virtual)
    clock_out: bool | None = None  # send MIDI clock (patch [midi] clock_out)


@contextlib.contextmanager
def realtime_mode(switch_interval_s: float = 0.0005):
    """While playing: short GIL switch interval, garbage collector frozen and off."""
    old_interval = sys.getswitchinterval()
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    sys.setswitchinterval(switch_interval_s)
    try:
        yield
    finally:
        sys.setswitchinterval(old_interval)
        gc.unfreeze()
        if was_enabled:
            gc.enable()


class ControlLayer:
    """Starts and stops the control threads for ``engine`` played by ``backend``.

    A backend that handles MIDI in its own callback (JACK) has
    ``midi_ports = True`` and ``connect_midi(in_substring, out_substring)``,
    and takes ``midi_clock``; otherwise MIDI goes through python-rtmidi here.
    """

    def __init__(self, engine, backend=None, options: ControlOptions | None = None, log: ErrorLog | None = None):
        self.engine = engine
        self.backend = backend
        self.options = options or ControlOptions()
        self.log = log or ErrorLog(engine.stats)
        self.midi_clock = MidiClock()
        self.osc_in: OscIn | None = None
        self.osc_out: OscOut | None = None
        self.midi_inputs = []
        self.midi_output = None
        self.status = ""
        self._pending: list[tuple] = []  # heap of outbound events not yet due
        self._seq = 0
        self._thread_clock = False
        self._running = False
        self._out_thread = threading.Thread(target=self._out_loop, name="cadenza-out", daemon=True)
        self._reloads: list[threading.Thread] = []
        self._reload_lock = threading.Lock()
        self.reloads_done = 0
        self.out_dropped = 0
        self.patch_set = PatchSet(engine.patch)
        self._programs = (engine.midi_map, engine.midi_map.programs_seen)  # program changes acted on

    # -- life cycle ------------------------------------------------------------------

    def __enter__(self) -> "ControlLayer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        opts, engine = self.options, self.engine
        osc_table, midi_table = engine.patch.table("osc"), engine.patch.table("midi")
        if opts.osc:
            host, port = parse_hostport(osc_table["listen"], 8000, listen=True)  # checked when the patch loaded
            host = opts.osc_host or host
            port = port if opts.osc_port is None else opts.osc_port
            try:
                self.osc_in = OscIn(self, host, port)
                self.osc_in.start()
            except OSError as exc:
                self.log.report("osc", f"{exc}; playing without OSC in")
            targets = []
            for text in [*osc_table["send"], *opts.osc_send]:
                try:
                    targets.append(parse_hostport(text, 9000))
                except ValueError as exc:
                    self.log.report("osc-send", f"OSC target {exc}; not sending there")
            self.osc_out = OscOut(targets, osc_table["pitch_rate_hz"])
        if hasattr(self.backend, "log"):
            self.backend.log = self.log
        if opts.midi:
            self._open_midi(midi_table)
        # the MIDI clock goes out in the backend's callback (JACK) or from the out thread (rtmidi)
        self._thread_clock = self.midi_output is not None and self._clock_out(midi_table)
        if self._clock_out(midi_table):
            self.midi_clock.start()
        self._running = True
        self._out_thread.start()

    def stop(self) -> None:
        if self._thread_clock and self.midi_clock.running:
            self.midi_clock.stop()
            time.sleep(3 * OUT_POLL_S)  # let Stop go out
        self._running = False
        if self._out_thread.is_alive():
            self._out_thread.join(2.0)
        for thread in self._reloads:
            thread.join(10.0)
        if self.osc_in is not None:
            self.osc_in.stop()
        if self.osc_out is not None:
            self.osc_out.close()
        for device in [*self.midi_inputs, self.midi_output]:
            if device is not None:
                device.close()
        self.midi_inputs.clear()
        self.midi_output = None

    def _clock_out(self, midi_table) -> bool:
        return bool(midi_table["clock_out"] if self.options.clock_out is None else self.options.clock_out)

    def _open_midi(self, midi_table) -> None:
        opts = self.options
        want_in = opts.midi_in if opts.midi_in is not None else midi_table["in"]
        want_out = opts.midi_out if opts.midi_out is not None else midi_table["out"]
        virtual = midi_table["virtual"] if opts.virtual is None else opts.virtual
        from cadenza.engine.backends.jack import JackBackend  # here: the backends import this package

        if getattr(self.backend, "midi_ports", False):
            # JACK MIDI in the callback; a device JACK does not see comes in through rtmidi
            self.backend.midi_clock = self.midi_clock
            unbridged = self.backend.connect_midi(want_in, want_out)
            if unbridged:
                self._open_inputs([(unbridged, False)], pick_api(False))
            return
        api = pick_api(JackBackend.available())
        wanted_in = [(want_in, False)] if want_in else []
        if virtual:
            wanted_in.append((None, True))
        if self._open_inputs(wanted_in, api) and (want_out or virtual):
            try:
                self.midi_output = RtMidiOutput(self.log, api, want_out or None, not want_out)
            except Exception as exc:
                self.log.report("midi", f"MIDI out {want_out or 'virtual'}: {exc}; playing without it")

    def _open_inputs(self, wanted: list[tuple[str | None, bool]], api: int) -> bool:
        """Open rtmidi inputs; False when the platform has no MIDI system at all (one line says so)."""
        for substring, is_virtual in wanted:
            try:
                self.midi_inputs.append(RtMidiInput(self.engine, self.log, api, substring, is_virtual))
            except rtmidi.SystemError as exc:
                self.log.report("midi", f"no MIDI system here ({str(exc).strip()}); playing without MIDI ports")
                return False
            except Exception as exc:  # no port of that name, or the device refused
                self.log.report("midi", f"MIDI in {substring or 'virtual ' + repr('Cadenza')}: {exc}; "
                                        "playing without it")
        return True

    # -- requests from OSC -------------------------------------------------------------

    def transport(self, word: str) -> None:
        if self.engine.link is not None:  # every peer of the Ableton Link session, and MIDI clock out, follow
            self.engine.link.transport(word)
            return
        {"start": self.midi_clock.start, "stop": self.midi_clock.stop, "continue": self.midi_clock.cont}[word]()

    def reload(self, path: str | None) -> None:
        """Build ``path`` (default: the playing patch's file) off the audio thread, then swap it in."""
        thread = threading.Thread(target=self.reload_now, args=(path,), name="cadenza-reload", daemon=True)
        self._reloads = [t for t in self._reloads if t.is_alive()] + [thread]
        thread.start()

    def reload_now(self, path: str | None) -> bool:
        """Build and swap in ``path`` on this thread; False (one line said why) when the old patch plays on."""
        from cadenza.engine.patch import load_patch

        engine = self.engine
        with self._reload_lock:
            try:
                patch = load_patch(path or engine.patch.path)
                graph = engine.build_graph(patch)
            except Exception as exc:  # any failure leaves the old patch playing
                self.log.report("reload", f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                                          f"still playing {engine.patch.name}")
                return False
            if not engine.swap(patch, graph):
                self.log.report("reload", f"the audio did not take {patch.name} in time; "
                                          f"still playing {engine.patch.name}")
                return False
            self.reloads_done += 1
        self.log.console.line(f"cadenza: reloaded {patch.path}")
        return True

    def switch_patch(self, which: str | int) -> str:
        """Reload into patch ``which`` (a name or 0-based index of ``patch_set``); returns its name.
        PatchSetError (one line) for anything not in the list: nothing is read then."""
        path = self.patch_set.resolve(which)
        self.reload(str(path))
        return path.stem

    def _follow_program_change(self) -> None:
        """A MIDI program change seen since the last look switches to that patch of the set."""
        midi_map = self.engine.midi_map
        seen_map, seen = self._programs
        count = midi_map.programs_seen
        if midi_map is seen_map and count == seen:
            return
        self._programs = (midi_map, count)
        if self.patch_set.program_switches and count and midi_map.last_program >= 0:
            try:
                self.switch_patch(midi_map.last_program)
            except ValueError as exc:
                self.log.report("program", f"MIDI program change: {exc}")

    def send_status(self, addr) -> None:
        """Answer ``/cadenza/status`` to ``addr`` (OscIn picks it: the sender's IP, at the port it named)."""
        s = self.engine.stats
        data = build_message("/cadenza/status", [self.status or "starting", float(s.load_last),
                                                 int(s.xruns), int(s.events_in), int(s.events_out),
                                                 int(s.errors)])
        if self.osc_in is not None:
            try:
                self.osc_in.sock.sendto(data, addr)
            except OSError as exc:
                self.log.report("osc-send", f"status to {addr[0]}:{addr[1]}: {exc.strerror or exc}")

    # -- the out thread ------------------------------------------------------------------

    def _out_loop(self) -> None:
        engine = self.engine
        next_status = 0.0
        clock_sample = engine.output_now()
        while self._running:
            try:
                now = engine.output_now()
                self._send_due(now)
                if self._thread_clock and now > clock_sample:
                    self._clock_pulses(clock_sample, now)
                    clock_sample = now
                for graph in engine.retired():
                    graph.close()
                self._follow_program_change()
                t = time.monotonic()
                if t >= next_status:
                    next_status = t + STATUS_EVERY_S
                    self.status = engine.status_line()
                    self._report_problems()
            except Exception as exc:  # the out thread must outlive any bad event
                self.log.report("out-error", f"{type(exc).__name__}: {exc}")
            time.sleep(OUT_POLL_S)
        self._send_due(engine.output_now())

    def _send_due(self, now: int) -> None:
        outbound = self.engine.outbound
        if len(outbound):
            for ev in outbound.pop_all():
                self._seq += 1
                heapq.heappush(self._pending, (int(ev["time"]), self._seq, ev))
            if len(self._pending) > MAX_PENDING_OUT:  # keep the soonest; count the rest
                self.out_dropped += len(self._pending) - MAX_PENDING_OUT
                self._pending = heapq.nsmallest(MAX_PENDING_OUT, self._pending)
        graph = self.engine.graph
        while self._pending and self._pending[0][0] <= now:
            _, _, ev = heapq.heappop(self._pending)
            self.engine.stats.events_out += 1
            target = int(ev["target"])
            name = graph.nodes[target].id if 0 <= target < len(graph.nodes) else "engine"
            if target == OUTBOUND:
                name = "engine"
            if self.osc_out is not None and self.osc_out.targets:
                for data in self.osc_out.messages(ev, name):
                    self.osc_out.send(data, self.log)
            if self.midi_output is not None:
                msg = event_bytes(int(ev["kind"]), int(ev["channel"]), int(ev["a"]), int(ev["b"]),
                                  float(ev["value"]))
                if msg is not None:
                    self.midi_output.send(msg)

    def _clock_pulses(self, start: int, end: int) -> None:
        clock = self.engine.clock
        bps = clock.beats_per_sample()
        beat0 = clock.beat + (start - clock.sample_time) * bps
        for _, status in self.midi_clock.block(beat0, bps, end - start):
            self.midi_output.send([status])

    def _report_problems(self) -> None:
        problems = dict(self.engine.problems())
        problems["out-dropped"] = (self.out_dropped, "{new} outgoing event(s) waited too long and were "
                                                     "dropped ({total} in all)")
        backend_problems = getattr(self.backend, "problems", None)
        if backend_problems is not None:
            problems.update(backend_problems())
        for kind, (total, message) in problems.items():
            self.log.sync(kind, total, message)
