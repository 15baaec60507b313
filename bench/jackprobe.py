"""JACK test clients for the live-I/O tests and ``bench.latency``: a MIDI sender, a MIDI
listener and an audio capture, each stamping what it does with JACK frame times.

Put a sender and a capture in different clients: JACK runs a client before the
clients it feeds, so sender → cadenza → capture all happen in one cycle and
frame times compare directly (a single client both feeding and hearing the
engine would close a loop, which JACK breaks with a one-period delay).
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import threading
import time

import numpy as np

from cadenza.engine.backends.jack import CycleClock, RealtimeExit
from cadenza.engine.clock import Timeline

NOT_FINISHED = re.compile(r"client = (\S+) was not finished, state = (\w+)")


class PrivateServer:
    """A private ``jackd -n NAME -R -d dummy`` that a bench starts, stops or kills; ``env`` points clients at it.

    ``watch=True`` reads the server's log: ``late`` collects (``time.monotonic()`` s
    when read, client name, its state: ``Triggered`` — woken, not yet running —
    or ``Running``) for every ``JackEngine::XRun: client = NAME was not
    finished`` line — the server naming a client that had not finished its cycle
    (the dummy driver's own timer overshoots are counted to every client's xrun
    callback, so that callback cannot tell who was late).
    """

    def __init__(self, name: str, period: int = 128, rate: int = 48000, watch: bool = False):
        self.name, self.period, self.rate = name, period, rate
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
        self.proc: subprocess.Popen | None = None
        self.killed = False
        self.watch = watch
        self.late: list[tuple[float, str, str]] = []

    def start(self, timeout_s: float = 30.0) -> None:
        """Start it and wait until it answers (a busy machine starts jackd slowly)."""
        log = subprocess.PIPE if self.watch else subprocess.DEVNULL
        self.proc = subprocess.Popen(["jackd", "-n", self.name, "-R", "-d", "dummy", "-r", str(self.rate),
                                      "-p", str(self.period)], stdout=log, stderr=subprocess.STDOUT, text=True)
        if self.watch:
            threading.Thread(target=self._read_log, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if subprocess.run(["jack_wait", "-c"], env=self.env, capture_output=True, text=True
                              ).stdout.startswith("running"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"jackd {self.name} did not start")

    def _read_log(self, stream) -> None:
        for line in stream:
            named = NOT_FINISHED.search(line)
            if named:
                self.late.append((time.monotonic(), named.group(1), named.group(2)))

    def kill(self) -> None:
        """Kill it outright, as a crash would."""
        self.proc.kill()
        self.proc.wait(5)
        self.killed = True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def release(self) -> None:
        """JACK keeps 8 server slots and frees a killed one only when its name starts again."""
        if self.killed:
            self.killed = False
            self.start()
            self.stop()


class JackProbe:
    """One JACK client with optional ``midi_out`` / ``midi_in`` / ``audio_in`` ports.

    ``schedule([(offset, bytes), ...])`` writes those MIDI events in a coming
    cycle (one list per cycle, in order) and logs ``sent`` as (frame, bytes);
    ``received`` logs (frame, bytes) from ``midi_in``; ``audio()`` returns the
    captured mono signal and the JACK frame time of its first sample.
    ``yield_cpu=True`` drops its realtime thread to the lowest SCHED_FIFO priority, so a
    probe that only watches never takes a core from the clients it measures.
    A capture (or ``clock=True``) logs ``cycles``: per cycle, (frame, its start
    smoothed as the engine does, JACK's own estimate, when the callback woke up),
    in ``time.monotonic()`` seconds.
    """

    def __init__(self, name: str, midi_out: bool = False, midi_in: bool = False,
                 audio_in: bool = False, capture_s: float = 30.0, count_xruns: bool = False,
                 clock: bool = False, yield_cpu: bool = False):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.midi_out = self.client.midi_outports.register("midi_out") if midi_out else None
        self.midi_in = self.client.midi_inports.register("midi_in") if midi_in else None
        self.audio_in = self.client.inports.register("audio_in") if audio_in else None
        self.queue: collections.deque = collections.deque()
        self.sent: list[tuple[int, bytes]] = []
        self.received: list[tuple[int, bytes]] = []
        # capture only, per cycle: (frame, monotonic s of its start smoothed as the engine does,
        # JACK's own estimate, when this callback woke up)
        self.cycles: list[tuple[int, float, float, float]] = []
        self._buf = np.zeros(int(capture_s * self.client.samplerate) if audio_in else 0, np.float32)
        self._frame0: int | None = None
        self._written = 0
        self.cycle_clock = CycleClock(jack, self.client) if audio_in or clock else None
        self.timeline = Timeline(self.client.samplerate)
        self._frames = self._raw = 0  # JACK's frame count, unwrapped, and as JACK gave it last
        self.cycle = threading.Event()
        self._yield_cpu = yield_cpu
        self.xruns = 0  # JACK reports every xrun of the server to every client
        if count_xruns:  # Python on JACK's notification thread: only where a figure needs it
            self.client.set_xrun_callback(self._xrun)
        self.client.set_process_callback(self._process)
        self.realtime = RealtimeExit(jack, self.client)
        self.realtime.activate()

    def _process(self, frames: int) -> None:
        self.realtime.check()
        woke = time.monotonic()
        if self._yield_cpu:
            self._yield_cpu = False
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))  # this thread only (Linux)
        now = self.client.last_frame_time
        if self.midi_out is not None:
            self.midi_out.clear_buffer()
            if self.queue:
                for offset, data in self.queue.popleft():
                    self.midi_out.write_midi_event(offset, data)
                    self.sent.append((now + offset, bytes(data)))
        if self.midi_in is not None:
            for offset, data in self.midi_in.incoming_midi_events():
                self.received.append((now + offset, bytes(data)))
        if self.audio_in is not None:
            if self._frame0 is None:
                self._frame0 = now
            start = now - self._frame0
            if start + frames > self._buf.shape[0]:
                self.cycle.set()
                return
            self._buf[start:start + frames] = self.audio_in.get_array()
            self._written = start + frames
        clock = self.cycle_clock
        if clock is not None and clock.read():
            if self.cycles:
                self._frames += (clock.frame - self._raw) & 0xFFFFFFFF
            self._raw = clock.frame
            t = self.timeline.follow(self._frames, clock.measured)
            self.cycles.append((now, t, clock.measured, woke))
        self.cycle.set()

    def _xrun(self, delay_usecs: float) -> None:
        self.xruns += 1

    def schedule(self, *cycles) -> None:
        """Queue MIDI events: each argument is one cycle's list of (offset, bytes)."""
        self.queue.extend(cycles)

    def audio(self) -> tuple[np.ndarray, int]:
        return self._buf[: self._written].copy(), (self._frame0 or 0)

    def connect(self, src: str, dst: str) -> None:
        self.client.connect(src, dst)

    def close(self) -> None:
        self.realtime.close()


def onsets(x: np.ndarray, threshold: float = 0.01, gap: int = 480) -> np.ndarray:
    """Sample indices where |x| first exceeds ``threshold`` after ``gap`` quieter samples."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    if loud.size == 0:
        return loud
    keep = np.ones(loud.size, bool)
    keep[1:] = np.diff(loud) > gap
    return loud[keep]


def onset_delay(patch_path) -> int:
    """Frames from a note-on to where ``onsets`` sees it, rendered offline with the same patch."""
    from cadenza.engine.backends.offline import OfflineBackend
    from cadenza.engine.engine import Engine
    from cadenza.engine.events import Kind, make_events
    from cadenza.engine.patch import load_patch

    engine = Engine(load_patch(patch_path))
    ev = make_events(1)
    ev[0] = (1000, Kind.NOTE_ON, engine.midi_map.notes_to, 0, 60, 100, 0.0)
    out = OfflineBackend(engine).render(4000, events=ev)
    engine.close()
    return int(onsets(out[0])[0]) - 1000
