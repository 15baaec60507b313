"""Fixed-size event records and the lock-free rings that carry them between threads.

An event is one row of ``EVENT_DTYPE``:

========  =======  ==========================================================
field     type     meaning
========  =======  ==========================================================
time      int64    absolute sample time at which it takes effect (samples)
kind      int16    one of the ``Kind`` constants
target    int16    index of the receiving node in the running graph
                   (``OUTBOUND`` for events leaving the engine, ``BROADCAST``
                   for every node, ``ENGINE`` for the engine itself: tempo)
channel   int16    MIDI channel 0-15, or a voice / button lane
a         int16    first data field (note number, CC number, param index...)
b         int16    second data field (velocity, CC value...)
value     float32  a continuous value (param value, bpm, phase, pitch bend)
========  =======  ==========================================================

Control threads stamp an event with the sample time at which it should sound
and push it into their own :class:`EventRing` (single producer, single
consumer). The audio thread drains the rings into a :class:`Scheduler`, which
hands each block the events that fall inside it, sorted by time.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numba import njit

EVENT_DTYPE = np.dtype(
    [
        ("time", np.int64),
        ("kind", np.int16),
        ("target", np.int16),
        ("channel", np.int16),
        ("a", np.int16),
        ("b", np.int16),
        ("value", np.float32),
    ]
)

OUTBOUND = -1
BROADCAST = -2
ENGINE = -3


class Kind(IntEnum):
    """Event kinds. Data fields per kind are given as (channel, a, b, value).

    An ``IntEnum``: numba reads ``Kind.X`` inside ``@njit`` code as a constant, so
    kernels compare ``ev["kind"] == Kind.NOTE_ON`` instead of retyping numbers.
    ``Kind.NAMES`` maps each number to its lower-case name (OSC addresses).
    """

    NOTE_ON = 1  # (ch, note, velocity 1-127, -)
    NOTE_OFF = 2  # (ch, note, velocity, -)
    CC = 3  # (ch, controller, value 0-127, -)
    PITCH_BEND = 4  # (ch, -, -, bend -1..1 of the receiver's bend range)
    PROGRAM = 5  # (ch, program, -, -)
    PARAM = 6  # (-, param index, -, value in the param's unit)
    PANIC = 7  # all notes off, tails cut
    BEAT = 8  # (-, beat index mod 2**15, -, bpm)
    TEMPO = 9  # (-, -, -, bpm)
    BUTTON = 10  # (-, button 0-7, velocity 0-127 (0 releases), -)
    PITCH = 11  # (-, voiced 0/1, -, f0 Hz) — listener reports
    TRANSPORT = 12  # (-, 0 stop / 1 start / 2 continue, -, -)
    BEAT_PREDICTION = 13  # (-, -, -, seconds until the predicted beat)
    LOUDNESS = 14  # (-, -, -, loudness dB)
    CHORD = 15  # (-, root pitch class 0-11 or -1 for no chord, quality index, confidence 0..1) — engine.harmony
    KEY = 16  # (-, tonic pitch class 0-11, mode 0 major / 1 minor, confidence 0..1) — engine.harmony
    PLAYED = 17  # (ch, note, velocity 0-127 (0 = off), -) — a voice's report of a note it plays: OSC only, never MIDI
    DOWNBEAT = 18  # (-, bar number mod 2**15, -, beats per bar) — a beat listener's downbeat, at its beat's sample


Kind.NAMES = {k.value: k.name.lower() for k in Kind}


def make_events(capacity: int) -> np.ndarray:
    """A zeroed event array of ``capacity`` rows."""
    return np.zeros(capacity, dtype=EVENT_DTYPE)


class EventRing:
    """Single-producer / single-consumer ring of events.

    The producer only writes ``_head`` and the consumer only writes ``_tail``;
    each index is one int64 element, so under the GIL neither side can see a
    half-written index. Nothing here allocates after construction.
    """

    def __init__(self, capacity: int = 4096):
        if capacity & (capacity - 1):
            raise ValueError("EventRing capacity must be a power of two")
        self.buf = make_events(capacity)
        self._mask = capacity - 1
        self._head = np.zeros(1, np.int64)  # written by the producer
        self._tail = np.zeros(1, np.int64)  # written by the consumer
        self.dropped = 0  # producer-side count of events lost to a full ring

    def __len__(self) -> int:
        return int(self._head[0] - self._tail[0])

    def push(self, time, kind, target=0, channel=0, a=0, b=0, value=0.0) -> bool:
        """Producer side: append one event. Returns False (and counts it) when full."""
        head = self._head[0]
        if head - self._tail[0] > self._mask:
            self.dropped += 1
            return False
        self.buf[head & self._mask] = (time, kind, target, channel, a, b, value)
        self._head[0] = head + 1
        return True

    def push_array(self, events: np.ndarray) -> int:
        """Producer side: append rows of an event array; returns how many fit."""
        n = 0
        for row in events:
            if not self.push(*row.tolist()):
                break
            n += 1
        return n

    def drain_into(self, out: np.ndarray, count: int) -> int:
        """Consumer side: move events into ``out[count:]``; returns the new count."""
        head = self._head[0]
        new_count = _drain(self.buf, self._mask, self._tail, head, out, count)
        return new_count

    def drain_bounded(self, pending: np.ndarray, count: int, dropped: np.ndarray) -> int:
        """Consumer side: move every waiting event into ``pending[:count]``, which never grows
        past its length (the farthest-future events are dropped and counted in ``dropped[0]``)."""
        return _drain_bounded(self.buf, self._mask, self._tail, self._head[0], pending, count, dropped)

    def pop_all(self) -> np.ndarray:
        """Consumer side, off the audio thread: a copy of every waiting event."""
        out = make_events(len(self))
        n = self.drain_into(out, 0)
        return out[:n]

    def mark(self) -> int:
        """Producer side: how many events this ring has taken so far, a mark for ``pushed_since``."""
        return int(self._head[0])

    def pushed_since(self, mark: int):
        """Producer side: the events this thread pushed since ``mark``, oldest first (record views).

        Safe while the consumer drains: a slot is only rewritten by a later push, and a push
        never overwrites an event not yet consumed (a full ring refuses instead).
        """
        buf, mask = self.buf, self._mask
        for i in range(mark, int(self._head[0])):
            yield buf[i & mask]


@njit(nogil=True, cache=True)
def _drain(buf, mask, tail_arr, head, out, count):
    tail = tail_arr[0]
    cap = out.shape[0]
    while tail < head and count < cap:
        out[count] = buf[tail & mask]
        count += 1
        tail += 1
    tail_arr[0] = tail
    return count


class Scheduler:
    """Holds future events and releases, per block, those due in it, in time order.

    ``take(block_end)`` moves every pending event with ``time < block_end`` into
    ``self.due`` (sorted by time, ties kept in arrival order) and returns how
    many there are. Events stamped in the past are due at once.

    Capacity policy: at most ``capacity`` events wait. When full, the
    farthest-future event is the one dropped — the new one if it is the
    farthest, else the pending one it displaces — and counted in ``dropped``.
    Input is never blocked: a ring is always drained whole, so a flood of
    far-future events can never hold back a note due now.
    """

    def __init__(self, capacity: int = 4096):
        self.pending = make_events(capacity)
        self.n_pending = 0
        self.due = make_events(capacity)
        self.dropped = 0
        self._dropped = np.zeros(1, np.int64)  # the kernels' count, folded into ``dropped``
        self._scratch = make_events(1)

    def add_from(self, ring: "EventRing") -> None:
        """Move all of a ring's waiting events in (the farthest-future ones drop when full)."""
        self.n_pending = ring.drain_bounded(self.pending, self.n_pending, self._dropped)
        self.dropped = int(self._dropped[0])

    def add(self, time, kind, target=0, channel=0, a=0, b=0, value=0.0) -> bool:
        """Add one event; False when it was the farthest-future one and the scheduler is full."""
        self._scratch[0] = (time, kind, target, channel, a, b, value)
        self.n_pending, kept = _insert_bounded(self.pending, self.n_pending, self._scratch[0], self._dropped)
        self.dropped = int(self._dropped[0])
        return kept

    def add_shifted(self, events: np.ndarray, n: int, shift: int) -> None:
        """Add ``events[:n]`` with ``shift`` added to their times (from another scheduler's ``due``)."""
        if n:
            self.n_pending = _insert_shifted(self.pending, self.n_pending, events, n, shift, self._dropped)
            self.dropped = int(self._dropped[0])

    def take(self, block_end: int) -> int:
        n_due, self.n_pending = _take_due(self.pending, self.n_pending, self.due, block_end, self._scratch)
        return n_due

    def clear(self) -> None:
        self.n_pending = 0


@njit(nogil=True, cache=True)
def _insert_bounded(pending, n_pending, ev, dropped):
    """Append ``ev``; when full, keep the earlier of it and the latest pending event.

    Returns (new count, whether ``ev`` was kept).
    """
    if n_pending < pending.shape[0]:
        pending[n_pending] = ev
        return n_pending + 1, True
    dropped[0] += 1
    latest = 0
    for i in range(1, n_pending):
        if pending[i]["time"] > pending[latest]["time"]:
            latest = i
    if ev["time"] >= pending[latest]["time"]:
        return n_pending, False
    pending[latest] = ev
    return n_pending, True


@njit(nogil=True, cache=True)
def _insert_shifted(pending, n_pending, events, n, shift, dropped):
    for i in range(n):
        events[i]["time"] += shift
        n_pending, _ = _insert_bounded(pending, n_pending, events[i], dropped)
    return n_pending


@njit(nogil=True, cache=True)
def _drain_bounded(buf, mask, tail_arr, head, pending, n_pending, dropped):
    tail = tail_arr[0]
    while tail < head:
        n_pending, _ = _insert_bounded(pending, n_pending, buf[tail & mask], dropped)
        tail += 1
    tail_arr[0] = tail
    return n_pending


@njit(nogil=True, cache=True)
def _take_due(pending, n_pending, due, block_end, scratch):
    n_due = 0
    keep = 0
    for i in range(n_pending):
        if pending[i]["time"] < block_end:
            due[n_due] = pending[i]
            n_due += 1
        else:
            pending[keep] = pending[i]
            keep += 1
    # stable insertion sort by time: blocks carry few events
    for i in range(1, n_due):
        _sift_back(due, i, scratch)
    return n_due, keep


class Inbox:
    """A node's events for the current block, kept sorted by time."""

    def __init__(self, capacity: int = 512):
        self.buf = make_events(capacity)
        self.count = 0
        self.dropped = 0
        self._scratch = make_events(1)

    def clear(self) -> None:
        self.count = 0

    def insert(self, row) -> None:
        """Insert one event (a record or a tuple), keeping time order (stable)."""
        if self.count >= self.buf.shape[0]:
            self.dropped += 1
            return
        self.buf[self.count] = row
        _sift_back(self.buf, self.count, self._scratch)
        self.count += 1

    @property
    def events(self) -> np.ndarray:
        return self.buf[: self.count]


@njit(nogil=True, cache=True)
def _sift_back(buf, j, scratch):
    """Move row j back past later-stamped rows. Records are views, so swap via scratch."""
    while j > 0 and buf[j - 1]["time"] > buf[j]["time"]:
        scratch[0] = buf[j - 1]
        buf[j - 1] = buf[j]
        buf[j] = scratch[0]
        j -= 1


def warm_up_kernels() -> None:
    """Compile (or load from cache) every event kernel now, not in the first live block."""
    ring = EventRing(2)
    ring.push(1, Kind.NOTE_ON)
    sched = Scheduler(4)
    sched.add_from(ring)
    sched.take(2)
    sched.add_shifted(sched.due, 1, 0)
    sched.add(1, Kind.NOTE_ON)  # a graph's deferrals and JACK's outbound MIDI call it from the audio thread
    ring.push(1, Kind.NOTE_ON)
    ring.pop_all()  # the out thread's: a first load there holds the GIL the audio thread waits for
    box = Inbox(2)
    box.insert(sched.due[0])
    box.insert(sched.due[0])
