"""Units, written once: MIDI note number ↔ frequency (Hz, A4 = 440 Hz = note 69), semitones ↔ ratio.

And the Slaney mel scale (librosa's ``hz_to_mel(htk=False)``: linear below 1 kHz, logarithmic above).

Numba functions that also work from Python, on scalars and on numpy arrays::

    midi_to_hz(69.0) == 440.0;  hz_to_midi(220.0) == 57.0;  semitones_to_ratio(12.0) == 2.0
    hz_to_mel(1000.0) == 15.0  (Slaney)

Frequencies given to :func:`hz_to_midi` and :func:`hz_to_mel` must be positive (callers clamp).
The mel *filterbank* is librosa's (:func:`cadenza.models.vocoder.features.mel_basis`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

A4_HZ = 440.0
A4_MIDI = 69.0
MEL_HZ_PER_MEL = 200.0 / 3  # Slaney: Hz per mel below the break
MEL_BREAK_HZ, MEL_BREAK = 1000.0, 15.0  # where the scale turns logarithmic (Hz, mel)
MEL_LOGSTEP = 0.06875177742094912  # log(6.4) / 27: natural-log step per mel above the break


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


@njit(cache=True, nogil=True)
def hz_to_mel(hz):
    """Slaney mel of a positive frequency in Hz (librosa's ``hz_to_mel(hz, htk=False)``)."""
    return (np.minimum(hz / MEL_HZ_PER_MEL, MEL_BREAK)
            + np.log(np.maximum(hz, MEL_BREAK_HZ) / MEL_BREAK_HZ) / MEL_LOGSTEP)


def warm_up_units() -> None:
    """Load the scalar versions now: nodes call them from Python on a note or a pitch, and a first
    call in a live block would compile (or load from cache) there, milliseconds late."""
    for unit in (midi_to_hz, hz_to_midi, semitones_to_ratio, hz_to_mel):
        unit(69.0)
