"""Units, written once: MIDI note number ↔ frequency (Hz, A4 = 440 Hz = note 69), semitones ↔ ratio.

Numba functions that also work from Python, on scalars and on numpy arrays::

    midi_to_hz(69.0) == 440.0;  hz_to_midi(220.0) == 57.0;  semitones_to_ratio(12.0) == 2.0

Frequencies given to :func:`hz_to_midi` must be positive (callers clamp).
"""

from __future__ import annotations

import numpy as np
from numba import njit

A4_HZ = 440.0
A4_MIDI = 69.0


@njit(cache=True, nogil=True)
def midi_to_hz(note):
    """Frequency (Hz) of a MIDI note number (fractional notes allowed)."""
    return A4_HZ * 2.0 ** ((note - A4_MIDI) / 12.0)


@njit(cache=True, nogil=True)
def hz_to_midi(hz):
    """MIDI note number (fractional) of a positive frequency in Hz."""
    return A4_MIDI + 12.0 * np.log2(hz / A4_HZ)


@njit(cache=True, nogil=True)
def semitones_to_ratio(semitones):
    """Frequency ratio of an interval in semitones (12 → 2.0)."""
    return 2.0 ** (semitones / 12.0)
