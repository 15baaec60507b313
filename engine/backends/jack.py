"""The ``jack`` backend: audio and JACK MIDI in one process callback (JACK-Client).

Client ``cadenza`` with ports ``in_1``..``in_N``, ``out_L``, ``out_R``,
``midi_in``, ``midi_out``. Incoming JACK MIDI is applied at its frame offset
inside the same callback, so it is sample-accurate; the engine's notes and
MIDI clock (24 ppqn) leave through ``midi_out`` at their frame offsets too.
The engine's timeline follows JACK's cycle start times (made robust by
:class:`~cadenza.engine.clock.Timeline`), so OSC timetags land on the right sample. If the server dies, ``run()`` returns and
what was played so far is kept.

Stopping never hangs. JACK2 ends a client's realtime thread with an
asynchronous ``pthread_cancel`` on deactivate; cancelled inside the Python
callback, or while waiting for the GIL, that thread takes the GIL with it and
the process waits for ever. So the stop asks the callback to end itself
(``jack.CallbackExit``: libjack then deactivates the client from that thread
and lets it exit on its own), waits until the kernel shows the thread gone,
and only then closes the client. No other Python callback is registered but
the server's shutdown notice: xruns are counted in the process callback from
gaps in JACK's frame time, and a MIDI source leaving is polled from a control
thread, so JACK's notification thread never runs Python when it is cancelled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time

import numpy as np

from cadenza.engine.backends import BackendError
from cadenza.engine.backends.live import LiveBackend, Recorder, prime, wait
from cadenza.engine.control.midiparse import MidiParser, event_bytes
from cadenza.engine.engine import Engine
from cadenza.engine.events import Kind, Scheduler

CLIENT_NAME = "cadenza"
STOP_TIMEOUT_S = 2.0  # how long a stop waits for the realtime thread to leave by itself
# JACK switches to a graph with new connections at the start of a cycle; our callback can read
# ``_ports_connected`` later in the cycle that was already running when connect() returned, and
# MIDI written then goes nowhere. The clock's Start waits this many cycles more.
CONNECT_SETTLE_CYCLES = 2
_ECHO_KINDS = (Kind.NOTE_ON, Kind.NOTE_OFF, Kind.CC, Kind.PITCH_BEND, Kind.PROGRAM)  # what MIDI out carries


def _jack():
    try:
        import jack
    except (ImportError, OSError) as exc:
        raise BackendError(f"backend 'jack' needs JACK-Client and libjack ({exc})") from None
    return jack


class CycleClock:
    """JACK's own estimate of the current cycle: its first frame (wrapping at 2**32) and when
    that frame is due, as ``time.monotonic()`` seconds (``jack_get_cycle_times``, a DLL)."""

    def __init__(self, jack, client):
        lib = ctypes.CDLL(ctypes.util.find_library("jack") or "libjack.so.0")
        self._get = lib.jack_get_cycle_times
        self._get.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint64),
                              ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_float)]
        self._ptr = int(jack._ffi.cast("uintptr_t", client._ptr))
        self._frames, self._usecs = ctypes.c_uint32(), ctypes.c_uint64()
        self._next, self._period = ctypes.c_uint64(), ctypes.c_float()
        self._args = [ctypes.byref(x) for x in (self._frames, self._usecs, self._next, self._period)]
        self.frame = 0  # the current cycle's first frame, as JACK counts
        self.measured = 0.0  # and when it is due, monotonic s

    def read(self) -> bool:
        """Refresh ``frame`` and ``measured``; False when JACK cannot tell."""
        if self._get(self._ptr, *self._args) != 0:
            return False
        # JACK's clock is CLOCK_MONOTONIC_RAW in microseconds; move it onto time.monotonic()
        shift = time.monotonic() - time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
        self.measured = self._usecs.value * 1e-6 + shift
        self.frame = self._frames.value
        return True


class PortArrays:
    """NumPy views of JACK audio port buffers for the process callback.

    JACK may hand a port a different buffer in any cycle, so the pointer is
    asked for every cycle; the view over it is rebuilt only when it moved
    (``Port.get_array`` builds a new one per call, in the hottest loop we have).
    """

    def __init__(self, jack, ports):
        self._lib, self._ffi = jack._lib, jack._ffi
        self._ptrs = [port._ptr for port in ports]
        self._addrs = [0] * len(ports)
        self.arrays: list[np.ndarray] = [np.zeros(0, np.float32)] * len(ports)

    def refresh(self, frames: int) -> list[np.ndarray]:
        """This cycle's buffers, ``frames`` long."""
        for i, ptr in enumerate(self._ptrs):
            buf = self._lib.jack_port_get_buffer(ptr, frames)
            addr = int(self._ffi.cast("uintptr_t", buf))
            if addr != self._addrs[i] or self.arrays[i].shape[0] != frames:
                self.arrays[i] = np.frombuffer(self._ffi.buffer(buf, 4 * frames), np.float32)
                self._addrs[i] = addr
        return self.arrays


class RealtimeExit:
    """Ends a Python JACK client's realtime thread from inside its own process callback.

    Call ``check()`` first thing in the callback. ``stop()`` (any other thread) asks
    the callback to raise ``jack.CallbackExit`` — libjack then deactivates the client
    from that thread and lets it exit on its own — and waits until the kernel shows
    the thread gone (``/proc/self/task/<tid>``). ``close()`` closes the client after
    that, so ``jack_client_close`` never cancels a thread inside Python. A thread
    that never comes back (a stalled server) is left to the process exit: the
    client is detached rather than cancelled, and ``stop()`` returns False.
    """

    def __init__(self, jack, client, timeout_s: float = STOP_TIMEOUT_S):
        self._jack = jack
        self.client = client
        self.timeout_s = timeout_s
        self._requested = False
        self._acknowledged = threading.Event()
        self._tid = 0
        self.active = False

    def activate(self) -> None:
        self._requested = False
        self._acknowledged.clear()
        self.client.activate()
        self.active = True

    def check(self) -> None:
        """Realtime thread: leave now if a stop was asked for."""
        if self._requested:
            self._tid = threading.get_native_id()
            self._acknowledged.set()
            raise self._jack.CallbackExit

    def stop(self) -> bool:
        """Let the realtime thread end itself; True once it is provably gone (or never ran)."""
        if not self.active:
            return True
        self._requested = True
        deadline = time.monotonic() + self.timeout_s
        if self._acknowledged.wait(self.timeout_s):
            if not os.path.isdir("/proc/self/task"):  # no /proc (macOS): give its exit time instead
                time.sleep(0.1)
                self.active = False
                return True
            task = f"/proc/self/task/{self._tid}"
            while os.path.exists(task) and time.monotonic() < deadline:
                time.sleep(0.001)
            if not os.path.exists(task):
                self.active = False
                return True
        self.client._ptr = self._jack._ffi.NULL  # detached: neither close() nor __del__ may cancel it now
        self.active = False
        return False

    def close(self) -> bool:
        """``stop()``, then close the client. Returns what ``stop()`` did."""
        gone = self.stop()
        self.client.close()
        return gone

    def abandon(self) -> None:
        """The server died (its thread ended on its own): forget the client, close nothing."""
        self.active = False
        self.client._ptr = self._jack._ffi.NULL


class JackBackend(LiveBackend):
    """Plays ``engine`` as JACK client ``cadenza``.

    ``connect``: where ``out_L``/``out_R`` (and the inputs) go: ``"system"`` (the
    physical ports), a port-name substring, or ``"none"``.
    """

    name = "jack"
    midi_ports = True  # MIDI is served in the callback; the control layer only names connections

    @staticmethod
    def available() -> bool:
        """True when a JACK server is running (one is never started from here)."""
        try:
            jack = _jack()
        except BackendError:
            return False
        jack.set_error_function(lambda msg: None)  # "cannot connect" is the answer, not an error
        try:
            jack.Client(f"{CLIENT_NAME}-probe", no_start_server=True).close()
            return True
        except jack.JackError:
            return False
        finally:
            jack.set_error_function()

    @staticmethod
    def server_format() -> tuple[int, int]:
        """(sample rate Hz, period frames) of the running server."""
        jack = _jack()
        try:
            client = jack.Client(f"{CLIENT_NAME}-probe", no_start_server=True)
        except jack.JackOpenError:
            raise BackendError("no JACK server is running (start one, e.g. `jackd -d alsa` or qjackctl)") from None
        try:
            return client.samplerate, client.blocksize
        finally:
            client.close()

    def __init__(self, engine: Engine, record: bool = True, connect: str = "system",
                 client_name: str = CLIENT_NAME):
        jack = _jack()
        self.engine = engine
        self.connect = connect
        try:
            self.client = jack.Client(client_name, no_start_server=True)
        except jack.JackOpenError:
            raise BackendError("no JACK server is running (start one, e.g. `jackd -d alsa` or qjackctl)") from None
        client = self.client
        if client.samplerate != engine.sample_rate:
            client.close()
            raise BackendError(f"JACK runs at {client.samplerate} Hz, the patch at {engine.sample_rate} Hz: "
                               f"play with --rate {client.samplerate} or restart jackd with -r {engine.sample_rate}")
        if client.blocksize % engine.block:
            client.close()
            raise BackendError(f"JACK's period is {client.blocksize} frames, the engine block {engine.block}: "
                               f"play with --block {client.blocksize}")
        n_in = engine.graph.adc.shape[0]
        self.inports = [client.inports.register(f"in_{i + 1}") for i in range(n_in)]
        self.outports = [client.outports.register(p) for p in ("out_L", "out_R")]
        self.midi_in = client.midi_inports.register("midi_in")
        self.midi_out = client.midi_outports.register("midi_out")
        self.parser = MidiParser()
        self.midi_clock = None  # set by the control layer when clock out is on
        self.log = None  # set by the control layer
        self._adc = np.zeros((n_in, engine.block), np.float32)
        self._ins, self._outs = PortArrays(jack, self.inports), PortArrays(jack, self.outports)
        self._out_pending = Scheduler(1024)  # outbound MIDI not due in this cycle yet
        self._cycle = CycleClock(jack, client)
        self.recorder = Recorder() if record else None
        self.first_frame: int | None = None  # JACK frame time of the engine's sample 0
        self.dead: str | None = None
        self.midi_sources_gone = 0
        self._midi_sources = 0
        self._reset_parser = False
        self._ports_connected = False  # set once run() has connected our ports (control thread)
        self._settled_cycles = 0  # our cycles since then (audio thread), up to CONNECT_SETTLE_CYCLES: the
        # MIDI clock waits for it, so Start reaches the connected ports
        self._want_midi: tuple[str | None, str | None] = (None, None)
        self._stop = threading.Event()
        self.realtime = RealtimeExit(jack, client)
        self._next_frame: int | None = None
        client.set_process_callback(self._process)
        client.set_shutdown_callback(self._shutdown)

    # -- callbacks (JACK threads) ----------------------------------------------------------

    def _process(self, frames: int) -> None:
        self.realtime.check()
        try:
            self._run_cycle(frames)
        except Exception as exc:  # never let a bug end the audio: this cycle is silent, counted
            self.engine.faults.record("jack callback", exc)
            for out in self._outs.refresh(frames):
                out.fill(0.0)

    def _run_cycle(self, frames: int) -> None:
        engine = self.engine
        block = engine.block
        clock = engine.clock
        start = clock.sample_time
        frame_time = self.client.last_frame_time
        if self.first_frame is None:
            self.first_frame = frame_time
        elif frame_time != self._next_frame:  # JACK skipped cycles of ours: an xrun we caused or suffered
            engine.stats.xruns += 1
        self._next_frame = (frame_time + frames) & 0xFFFFFFFF
        if self._reset_parser:
            self._reset_parser = False
            self.parser.reset()
        beat0, bps = clock.beat, clock.beats_per_sample()
        t0 = self._cycle.measured if self._cycle.read() else None
        midi_map = engine.midi_map
        add = engine.scheduler.add  # we are the audio thread: JACK MIDI is exact in the engine's own count
        for offset, data in self.midi_in.incoming_midi_events():
            for status, d1, d2 in self.parser.feed(data):
                for kind, target, ch, a, b, value in midi_map.events(status, d1, d2):
                    add(start + offset, kind, target, ch, a, b, value)
                    engine.stats.events_in += 1
        ins = self._ins.refresh(frames)
        outs = self._outs.refresh(frames)
        mark = engine.outbound.mark()  # we are the outbound ring's producer: peek what we add
        for k in range(frames // block):
            lo, hi = k * block, (k + 1) * block
            for c, buf in enumerate(ins):
                self._adc[c] = buf[lo:hi]
            out = engine.process(self._adc, start_time=None if t0 is None else t0 + lo / engine.sample_rate)
            outs[0][lo:hi] = out[0]
            outs[1][lo:hi] = out[1]
            if self.recorder is not None:
                self.recorder.write(out)
        self._write_midi_out(start, frames, mark, beat0, bps)

    def _write_midi_out(self, start: int, frames: int, mark: int, beat0: float, bps: float) -> None:
        port = self.midi_out
        port.clear_buffer()
        for ev in self.engine.outbound.pushed_since(mark):
            if ev["kind"] in _ECHO_KINDS:
                self._out_pending.add(*ev.tolist())
        if self._ports_connected and self._settled_cycles < CONNECT_SETTLE_CYCLES:
            self._settled_cycles += 1
        clock = self.midi_clock is not None and self._settled_cycles >= CONNECT_SETTLE_CYCLES
        if not clock and not self._out_pending.n_pending:
            return
        messages = []
        if clock:
            messages = [(off, bytes((status,))) for off, status in self.midi_clock.block(beat0, bps, frames)]
        n = self._out_pending.take(start + frames)
        for ev in self._out_pending.due[:n]:
            msg = event_bytes(int(ev["kind"]), int(ev["channel"]), int(ev["a"]), int(ev["b"]), float(ev["value"]))
            messages.append((min(max(int(ev["time"]) - start, 0), frames - 1), msg))
        messages.sort(key=lambda m: m[0])
        for offset, msg in messages:
            port.write_midi_event(offset, msg)

    def _shutdown(self, status, reason: str) -> None:
        self.dead = reason or "the JACK server shut down"
        self._stop.set()

    # -- control side ------------------------------------------------------------------------

    def connect_midi(self, midi_in: str | None, midi_out: str | None) -> str | None:
        """Remember which JACK MIDI ports to connect once running (port-name substrings).

        Returns ``midi_in`` when no JACK MIDI port matches it (a device not bridged
        into JACK), so the control layer can open it through python-rtmidi instead.
        """
        if midi_in and not self.client.get_ports(midi_in, is_midi=True, is_output=True):
            self._want_midi = (None, midi_out or None)
            return midi_in
        self._want_midi = (midi_in or None, midi_out or None)
        return None

    def _poll_midi_sources(self) -> None:
        """Control thread: a source leaving ``midi_in`` may leave the parser mid-message."""
        if not self.realtime.active or self.dead is not None:
            return
        n = len(self.client.get_all_connections(self.midi_in))
        if n < self._midi_sources:
            self.midi_sources_gone += self._midi_sources - n
            self._reset_parser = True
        self._midi_sources = n

    def problems(self) -> dict[str, tuple[int, str]]:
        """Counters kept on the audio thread, for the control layer's log."""
        self._poll_midi_sources()
        return {
            "midi-garbage": (self.parser.garbage, "{new} stray MIDI byte(s) on midi_in dropped ({total} in all)"),
            "midi-source-gone": (self.midi_sources_gone, "a MIDI source left cadenza:midi_in ({total} so far); "
                                                         "its held notes may hang: CC 123 or /cadenza/panic frees them"),
        }

    def _report(self, kind: str, message: str) -> None:
        if self.log is not None:
            self.log.report(kind, message)
        else:
            import sys
            print(f"cadenza: {kind}: {message}", file=sys.stderr)

    def _connect_ports(self) -> None:
        client = self.client
        if self.connect == "system":
            playback = client.get_ports(is_audio=True, is_input=True, is_physical=True)
            capture = client.get_ports(is_audio=True, is_output=True, is_physical=True)
        elif self.connect and self.connect != "none":
            playback = client.get_ports(self.connect, is_audio=True, is_input=True)
            capture = client.get_ports(self.connect, is_audio=True, is_output=True)
            if not playback:
                self._report("connect", f"no JACK audio input port matches {self.connect!r}; out_L/out_R unconnected")
        else:
            playback = capture = []
        pairs = list(zip(self.outports, playback[:2])) + list(zip(capture, self.inports))
        if len(playback) == 1:
            pairs.append((self.outports[1], playback[0]))
        midi_in, midi_out = self._want_midi
        if midi_in:
            sources = [p for p in client.get_ports(midi_in, is_midi=True, is_output=True)
                       if not p.name.startswith(client.name + ":")]
            if not sources:
                self._report("midi", f"no JACK MIDI output port matches {midi_in!r}; "
                                     f"connect one to {client.name}:midi_in by hand")
            pairs += [(p, self.midi_in) for p in sources]
        if midi_out:
            sinks = [p for p in client.get_ports(midi_out, is_midi=True, is_input=True)
                     if not p.name.startswith(client.name + ":")]
            if not sinks:
                self._report("midi", f"no JACK MIDI input port matches {midi_out!r}")
            pairs += [(self.midi_out, p) for p in sinks]
        for src, dst in pairs:
            try:
                client.connect(src, dst)
            except Exception as exc:  # already connected, or the port vanished meanwhile
                self._report("connect", f"{src.name} → {dst.name}: {exc}")

    def run(self, seconds: float | None = None, on_tick=None, tick_s: float = 0.5) -> None:
        """Play until ``seconds`` pass, ``stop()``, Ctrl-C or the server's death."""
        self._stop.clear()
        if self.recorder is not None:
            self.recorder.start()
        prime(self.engine)
        self.realtime.activate()
        self._connect_ports()
        self._ports_connected = True
        try:
            wait(self._stop, seconds, on_tick, tick_s)
        finally:
            if self.dead is None:
                if self.midi_clock is not None and self.midi_clock.running:
                    self.midi_clock.stop()  # Stop goes out in the next cycles, before we leave the graph
                    time.sleep(3 * self.client.blocksize / self.client.samplerate + 0.01)
                self._stop_realtime()
            else:
                self.realtime.abandon()
            if self.recorder is not None:
                self.recorder.stop()
            if self.dead is not None:
                self._report("jack", f"the JACK server went away ({self.dead}); stopped, "
                                     f"{self.recorder.audio().shape[1] / self.engine.sample_rate if self.recorder else 0:.1f} s "
                                     "recorded so far are kept")

    def _stop_realtime(self) -> None:
        if not self.realtime.stop():
            self._report("jack", f"the JACK realtime thread did not stop within {STOP_TIMEOUT_S:g} s; "
                                 "its client is left to the process exit")

    def close(self) -> None:
        """Close the client, once its realtime thread is provably gone (never cancelled in Python)."""
        if self.dead is None:
            self._stop_realtime()
            self.client.close()
        else:
            self.realtime.abandon()
