"""Chord and key labels: the numbers CHORD and KEY events carry, as text.

A CHORD event carries (a = root pitch class 0-11, b = quality index into
:data:`QUALITIES`), or a = :data:`NO_CHORD` for no chord; a KEY event carries
(a = tonic pitch class 0-11, b = mode index into :data:`MODES`). Labels are
written as ``mir_eval`` reads them: chords ``"C:maj"``, ``"F#:min"``, ``"N"``;
keys ``"C major"``, ``"A minor"``.
"""

from __future__ import annotations

import numpy as np

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
QUALITIES = ("maj", "min")  # chord quality by index (an event's b)
MODES = ("major", "minor")  # key mode by index (an event's b)
NO_CHORD = -1  # a CHORD event's root when nothing tonal sounds


def chord_label(root: int, quality: int) -> str:
    """``"C:maj"`` for (0, 0), ``"A:min"`` for (9, 1), ``"N"`` for a root of :data:`NO_CHORD`."""
    if root == NO_CHORD:
        return "N"
    return f"{PITCH_CLASSES[root % 12]}:{QUALITIES[quality]}"


def key_label(tonic: int, mode: int) -> str:
    """``"C major"`` for (0, 0), ``"F# minor"`` for (6, 1)."""
    return f"{PITCH_CLASSES[tonic % 12]} {MODES[mode]}"


class ChordMemory:
    """The band's progression, beat by beat: what it played, and where it changes next if it repeats itself.

    ``record(beat, root, quality)`` once per beat (absolute beat number, the chord heard
    during it; root -1 for no chord). ``change_at(beat)`` finds the shortest period of
    ``PERIODS`` beats over which the last beats repeat the ones a period before at least
    ``AGREE`` of the time; when the progression changed chord at this point of the
    period last time, it returns the chord it changed to — (root, quality) — else None
    (no change due, or no period that clear: the first pass of a loop, a new section).
    A change on a downbeat is then known before it sounds, which no listener can hear
    in time. Beats are whatever the caller counts, bars need not be known.
    """

    PERIODS = (4, 6, 8, 12, 16, 24, 32)  # beats: 1, 2, 3, 4, 6 and 8 bars of 4 (or 2, 4, 8 of 3)
    AGREE = 0.75
    MIN_COMPARED = 8  # beats compared at least before a period is believed
    UNKNOWN = -2

    def __init__(self, size: int = 128):
        self.size = size
        self.chord = np.full(size, self.UNKNOWN, np.int64)  # root * 2 + quality, -1 no chord, by beat mod size
        self.beat_of = np.full(size, -1, np.int64)  # which beat each slot holds

    def reset(self) -> None:
        self.chord[:] = self.UNKNOWN
        self.beat_of[:] = -1

    def record(self, beat: int, root: int, quality: int) -> None:
        slot = beat % self.size
        self.chord[slot] = -1 if root < 0 else root * 2 + quality
        self.beat_of[slot] = beat

    def _at(self, beat: int) -> int:
        slot = beat % self.size
        return int(self.chord[slot]) if beat >= 0 and self.beat_of[slot] == beat else self.UNKNOWN

    def change_at(self, beat: int) -> tuple[int, int] | None:
        for period in self.PERIODS:
            compared = agreed = 0
            for b in range(beat - max(period, self.MIN_COMPARED) - 1, beat - 1):  # beat - 1 may be unrecorded yet
                now, then = self._at(b), self._at(b - period)
                if now != self.UNKNOWN and then != self.UNKNOWN:
                    compared += 1
                    agreed += now == then
            if compared >= self.MIN_COMPARED and agreed >= self.AGREE * compared:
                chord, before = self._at(beat - period), self._at(beat - period - 1)
                if chord == self.UNKNOWN or before == self.UNKNOWN or chord == before:
                    return None
                return (-1, 0) if chord < 0 else divmod(chord, 2)
        return None
