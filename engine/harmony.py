"""Chord and key labels: the numbers CHORD and KEY events carry, as text.

A CHORD event carries (a = root pitch class 0-11, b = quality index into
:data:`QUALITIES`), or a = :data:`NO_CHORD` for no chord; a KEY event carries
(a = tonic pitch class 0-11, b = mode index into :data:`MODES`). Labels are
written as ``mir_eval`` reads them: chords ``"C:maj"``, ``"F#:min"``, ``"N"``;
keys ``"C major"``, ``"A minor"``.
"""

from __future__ import annotations

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
