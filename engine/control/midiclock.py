"""MIDI clock out: 24 pulses per quarter note following the engine's tempo, with transport.

One object serves both ways of sending: the JACK backend asks it, inside the
process callback, for the pulses that fall in this block (written at their
frame offsets, so the clock is sample-accurate), and the rtmidi output thread
asks it for the pulses due since its last look.
"""

from __future__ import annotations

import math
from collections import deque

PPQN = 24
CLOCK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC


class MidiClock:
    """Transport state and pulse positions. ``start()``/``stop()``/``cont()`` from any thread."""

    def __init__(self):
        self.running = False
        self._next_pulse: int | None = None  # index of the next pulse, in 1/24 beats
        self._transport: deque[int] = deque()  # Start/Stop/Continue bytes waiting to go out
        self.pulses = 0

    def start(self) -> None:
        """Start from the next pulse (receivers restart their song at position 0)."""
        self._transport.append(START)

    def stop(self) -> None:
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
        if not self.running or beats_per_sample <= 0.0:
            return out
        if self._next_pulse is None:
            self._next_pulse = math.ceil(beat0 * PPQN - 1e-9)
        while True:  # a pulse goes on the first frame at or after its exact position
            offset = max(math.ceil((self._next_pulse / PPQN - beat0) / beats_per_sample - 1e-6), 0)
            if offset >= frames:
                break
            out.append((offset, CLOCK))
            self._next_pulse += 1
            self.pulses += 1
        return out
