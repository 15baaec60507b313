"""Ableton Link: the engine clock joins a Link session on the network (tempo, beat phase, start/stop).

Needs the optional extra ``cadenza[link]`` (LinkPython-extern, a binding of
Ableton Link, which is GPL-2.0-or-later); imported only when a patch says
``[clock] link = true`` or ``cadenza play --link`` asks. Quantum = the
patch's ``[clock] beats_per_bar``: bars start on the session's phase 0.

Threads. Link's session state is read and written on the ``cadenza-link``
thread, never on the audio thread. Every ``POLL_S`` it captures the session
and publishes into ``state`` (one numpy store, so no reader sees half of it):
a ``time.monotonic()`` second, Link's beat then, the tempo, playing, peers.
Once per block the audio thread (``drive``) extrapolates that beat to its
block's first frame and steers the engine :class:`~cadenza.engine.clock.Clock`
onto it (``Clock.lock``): ``clock.beat`` is Link's beat, so everything that
reads the clock (generators, MIDI clock out) follows the session.

The other way: a tempo the engine is asked for (``/cadenza/tempo``, ``[clock]
follow``) is stored by the audio thread (``request_tempo``) and committed to
the session by the link thread, so every peer follows it — this engine too,
one poll later. Start/stop: a local transport word (``transport``) is
committed to the session, quantised to the bar when peers play; the session's
start/stop from another peer reaches the nodes (a TRANSPORT event) and MIDI
clock out, whose Start waits for beat 0 — the bar the session starts on.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from cadenza.engine.control.midiclock import PPQN
from cadenza.engine.errors import CadenzaError
from cadenza.engine.events import BROADCAST, Kind

EXTRA = "cadenza[link]"
POLL_S = 0.005  # how often the link thread samples the session, s
OFFSET_MAX_GAP_S = 0.0005  # a clock-offset reading is kept only when read within this long (not preempted)
SAME_TEMPO_BPM = 0.005  # a tempo request closer than this to the session's is none (Link rounds its tempo)


class LinkMissing(CadenzaError):
    """Link was asked for, but the optional extra is not installed."""


def load_link():
    """LinkPython-extern's ``link`` module, or a one-line error naming the extra."""
    try:
        import link
    except ImportError:
        raise LinkMissing(f"Ableton Link needs the optional extra: pip install '{EXTRA}' "
                          "(LinkPython-extern; Link is GPL-2.0-or-later)") from None
    return link


class LinkSession:
    """``engine``'s clock in a Link session while started (``with LinkSession(engine, log): ...``).

    ``log``: an :class:`~cadenza.engine.control.log.ErrorLog` for what goes wrong on the link
    thread; ``midi_clock``: a :class:`~cadenza.engine.control.midiclock.MidiClock` whose
    Start/Stop follow the session's.
    """

    def __init__(self, engine, log, midi_clock=None):
        self.engine = engine
        self.log = log
        self.quantum = float(engine.clock.beats_per_bar)
        self.link = load_link().Link(engine.clock.bpm)
        self.link.startStopSyncEnabled = True
        self._host = self.link.clock()  # Link's host clock, microseconds
        self.state = np.zeros(5, np.float64)  # [monotonic s, Link's beat then, tempo bpm, playing 0/1, peers]
        self._offset = 0.0  # time.monotonic() − Link host time, s
        self._offset_read = False  # whether _offset holds a reading yet
        # the audio thread's last block: [monotonic s of its end, clock beat there, beats per second]
        self._block = np.zeros(3, np.float64)
        self._tempo_request = np.zeros(2, np.float64)  # [requests made, bpm]: the audio thread's one store
        self._tempo_taken = 0.0
        self.playing = False  # the session's start/stop as this engine last acted on it
        self.midi_clock = midi_clock
        self._ring = engine.input_ring()  # this thread's events (the session's start/stop) to the nodes
        self._lock = threading.Lock()  # capture-change-commit, between control threads (never the audio thread)
        self._running = False
        self._thread: threading.Thread | None = None

    # -- life cycle (a control thread) ----------------------------------------------------

    def __enter__(self) -> "LinkSession":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Join (enable Link), publish a first state, then let the audio thread follow it."""
        self.link.enabled = True
        self.poll()
        self.engine.link = self
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="cadenza-link", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.engine.link = None
        self._running = False
        if self._thread is not None:
            self._thread.join(2.0)
        self.link.enabled = False

    def _loop(self) -> None:
        while self._running:
            try:
                self.poll()
            except Exception as exc:  # the session must outlive one bad turn; the clock keeps its last state
                self.log.report("link", f"{type(exc).__name__}: {exc}")
            time.sleep(POLL_S)

    # -- the link thread ------------------------------------------------------------------------

    def host_us(self) -> int:
        """Link's host time now, microseconds; also refreshes the monotonic offset, unless this thread
        was preempted between the two clocks' reads (on a loaded machine that put the engine's beat
        milliseconds off Link's)."""
        m0 = time.monotonic()
        us = self._host.micros()
        m1 = time.monotonic()
        if m1 - m0 < OFFSET_MAX_GAP_S or not self._offset_read:
            self._offset = 0.5 * (m0 + m1) - us * 1e-6
            self._offset_read = True
        return us

    def poll(self) -> None:
        """Commit a pending tempo request, follow the session's start/stop, publish ``state``."""
        with self._lock:
            us = self.host_us()
            session = self.link.captureAppSessionState()
            count, bpm = self._tempo_request.tolist()
            if count != self._tempo_taken:
                self._tempo_taken = count
                session.setTempo(float(bpm), us)
                self.link.commitAppSessionState(session)
            playing = session.isPlaying()
            if playing != self.playing:
                self._follow_transport(session, playing)
            self._publish(session, us)

    def _follow_transport(self, session, playing: bool) -> None:
        """Another peer started or stopped the session: beat 0 is where it started; tell nodes and MIDI."""
        self.playing = playing
        if playing:
            session.requestBeatAtStartPlayingTime(0.0, self.quantum)
            self.link.commitAppSessionState(session)
        self._ring.push(self.engine.stamp(), Kind.TRANSPORT, BROADCAST, 0, int(playing), 0, 0.0)
        self._midi(playing, session.beatAtTime(self.host_us(), self.quantum))

    def _publish(self, session, us: int) -> None:
        self.state[:] = (us * 1e-6 + self._offset, session.beatAtTime(us, self.quantum), session.tempo(),
                         session.isPlaying(), self.link.numPeers())

    def _midi(self, playing: bool, beat: float) -> None:
        """MIDI clock out starts on beat 0 (the next bar line when the session has played on past it)."""
        if self.midi_clock is None:
            return
        if not playing:
            self.midi_clock.stop()
        elif beat * PPQN < 1.0:
            self.midi_clock.start(at_beat=0.0)
        else:
            self.midi_clock.start(at_beat=math.ceil(beat / self.quantum) * self.quantum)

    # -- requests from control threads ----------------------------------------------------------

    def transport(self, word: str) -> None:
        """``start``, ``stop`` or ``continue`` for every peer. Start maps beat 0 to now, or — when
        peers play — to the next bar line; continue plays on from the beat the session is at."""
        with self._lock:
            us = self.host_us()
            session = self.link.captureAppSessionState()
            if word == "start":
                session.setIsPlayingAndRequestBeatAtTime(True, us, 0.0, self.quantum)
            else:
                session.setIsPlaying(word != "stop", us)
            self.link.commitAppSessionState(session)
            self.playing = word != "stop"
            session = self.link.captureAppSessionState()
            self._publish(session, us)  # the clock jumps in the next block
        if word == "continue" and self.midi_clock is not None:
            self.midi_clock.cont()
        elif word != "continue":
            self._midi(self.playing, session.beatAtTime(us, self.quantum))

    def beats_at(self, us: float) -> tuple[float, float]:
        """(Link's beat, the engine clock's beat) at Link host time ``us`` (microseconds)."""
        with self._lock:
            session = self.link.captureAppSessionState()
        end, beat, rate = self._block.tolist()  # one read: the audio thread stores it whole
        return session.beatAtTime(int(us), self.quantum), beat + (us * 1e-6 + self._offset - end) * rate

    def status(self) -> str:
        """``link 1 peer 120.00 bpm playing`` for the status line."""
        now = self.panel()
        return (f"link {now['peers']} peer{'' if now['peers'] == 1 else 's'} {now['bpm']:.2f} bpm "
                f"{'playing' if now['playing'] else 'stopped'}")

    def panel(self) -> dict:
        """What the browser panel shows: peers, the session's tempo (bpm), whether it plays."""
        _, _, bpm, playing, peers = self.state.tolist()
        return {"peers": int(peers), "bpm": round(bpm, 2), "playing": bool(playing)}

    # -- the audio thread -----------------------------------------------------------------------

    def drive(self, clock, t0: float, frames: int) -> None:
        """Steer ``clock`` onto Link's beat for a block whose first frame is due at monotonic ``t0``.
        Reads ``state`` only: no lock, no Link call, no allocation that grows."""
        t, beat, bpm, _, _ = self.state.tolist()  # one read: the link thread stores it whole
        rate = bpm / 60.0
        end = clock.lock(beat + (t0 - t) * rate, bpm, frames)
        self._block[:] = (t0 + frames / clock.sample_rate, end, rate)

    def request_tempo(self, bpm: float) -> None:
        """Ask the session for ``bpm`` unless it is at it already (audio thread: one store; the link
        thread commits the latest request at its next poll)."""
        if math.isfinite(bpm) and abs(bpm - self.state[2]) >= SAME_TEMPO_BPM:  # state[2]: the session's bpm
            self._tempo_request[:] = (self._tempo_request[0] + 1.0, bpm)
