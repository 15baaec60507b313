"""MIDI clock out: 24 pulses per quarter note following the engine's tempo, with transport.

One object serves both ways of sending: the JACK backend asks it, inside the
process callback, for the pulses that fall in this block (written at their
frame offsets, so the clock is sample-accurate), and the rtmidi output thread
asks it for the pulses due since its last look. A Start may wait for a beat
(``start(at_beat=...)``: an Ableton Link session starts on its bar line), so
a receiver's song position 0 is that beat.
"""

from __future__ import annotations

import math
from collections import deque

PPQN = 24
CLOCK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC
JUMP_PULSES = 2  # the next pulse this far from the clock: it jumped (Link remapped its beat); no burst, no gap


class MidiClock:
    """Transport state and pulse positions. ``start()``/``stop()``/``cont()`` from any thread."""

    def __init__(self):
        self.running = False
        self._next_pulse: int | None = None  # index of the next pulse, in 1/24 beats
        self._transport: deque[int] = deque()  # Start/Stop/Continue bytes waiting to go out
        self._start_at: int | None = None  # the pulse a waiting Start goes out on (``start(at_beat)``)
        self.pulses = 0

    def start(self, at_beat: float | None = None) -> None:
        """Start from the next pulse, or on the pulse at beat ``at_beat`` (receivers restart their
        song at position 0 there). A clock already less than one pulse past that beat starts at once."""
        if at_beat is None:
            self._transport.append(START)
        else:
            self._start_at = round(at_beat * PPQN)

    def stop(self) -> None:
        self._start_at = None
        self._transport.append(STOP)

    def cont(self) -> None:
        self._transport.append(CONTINUE)

    def block(self, beat0: float, beats_per_sample: float, frames: int) -> list[tuple[int, int]]:
        """(frame offset, status byte) of the messages due in a block starting at ``beat0``.

        ``beats_per_sample`` is the tempo (bpm / 60 / sample rate).
        """
        out = []
        while self._transport:
            msg = self._transport.popleft()
            out.append((0, msg))
            self.running = msg != STOP
            self._next_pulse = None
        if beats_per_sample <= 0.0:
            return out
        if self._start_at is not None:
            self._start_waiting(out, beat0, beats_per_sample, frames)
        if not self.running:
            return out
        if self._next_pulse is None or abs(self._next_pulse - beat0 * PPQN) > JUMP_PULSES:  # a clock that jumped
            self._next_pulse = math.ceil(beat0 * PPQN - 1e-9)
        while True:  # a pulse goes on the first frame at or after its exact position
            offset = max(math.ceil((self._next_pulse / PPQN - beat0) / beats_per_sample - 1e-6), 0)
            if offset >= frames:
                break
            out.append((offset, CLOCK))
            self._next_pulse += 1
            self.pulses += 1
        return out

    def _start_waiting(self, out: list, beat0: float, beats_per_sample: float, frames: int) -> None:
        """A Start waiting for its pulse: out it goes, at its frame, when this block reaches it."""
        late = beat0 * PPQN - self._start_at  # pulses
        if 0.0 <= late < 1.0:
            offset = 0
        elif late < 0.0:
            offset = max(math.ceil((self._start_at / PPQN - beat0) / beats_per_sample - 1e-6), 0)
            if offset >= frames:
                return
        else:  # far past it: a clock about to jump onto the new timeline; wait for it
            return
        out.append((offset, START))
        self.running = True
        self._next_pulse = self._start_at if late < 0.0 else math.ceil(beat0 * PPQN - 1e-9)
        self._start_at = None
