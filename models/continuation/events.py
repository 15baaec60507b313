"""The event vocabulary: notes on a sixteenth-note grid as tokens, after Performance RNN (Oore et al. 2018).

Tokens (``VOCAB`` = 129):

- ``START``            0: the beginning of a sequence (nothing heard before);
- ``NOTE_ON + k``      a note of pitch ``LOWEST + k`` (k 0..87) starts at the cursor;
- ``DUR + d - 1``      the note just started lasts ``d`` grid steps (1..16; longer notes count 16);
- ``SHIFT + s - 1``    the cursor moves ``s`` grid steps later (1..16; longer gaps take several);
- ``VEL + b``          the next notes' velocity bin ``b`` (0..7, 16 velocity units each), sent
  only when the bin changes.

A note is ``[VEL b] NOTE_ON p DUR d``; notes at one step come lowest pitch first.
A DUR token follows every NOTE_ON and only one; this grammar is what :func:`allowed_after`
returns. Each token has a *position*: the cursor after it, modulo ``BEAT`` steps
(its place in the quarter-note beat), which the model reads beside the token.
"""

from __future__ import annotations

import numpy as np

LOWEST = 21
NUM_PITCHES = 88
MAX_DUR = 16
MAX_SHIFT = 16
VEL_BINS = 8
BEAT = 4  # grid steps per beat: positions are 0..3

START = 0
NOTE_ON = 1
DUR = NOTE_ON + NUM_PITCHES
SHIFT = DUR + MAX_DUR
VEL = SHIFT + MAX_SHIFT
VOCAB = VEL + VEL_BINS


def velocity_bin(velocity: int) -> int:
    """MIDI velocity 1..127 → bin 0..7."""
    return min(max(int(velocity), 0), 127) // (128 // VEL_BINS)


def bin_velocity(b: int) -> int:
    """Bin 0..7 → the MIDI velocity at its centre (8..120)."""
    return b * (128 // VEL_BINS) + 128 // VEL_BINS // 2


def encode(step, pitch, velocity, duration, start: int, end: int | None = None,
           vel_bin: int = -1) -> tuple[list[int], list[int], int]:
    """Notes (arrays sorted by step then pitch) → (tokens, positions, last velocity bin).

    The cursor starts at grid step ``start`` (≤ the first onset) and, when ``end``
    is given, shifts on to ``end`` after the last note. ``vel_bin`` is the bin
    already in force (-1: none, so the first note sends one). Pitches outside
    21..108 are skipped.
    """
    tokens: list[int] = []
    positions: list[int] = []
    cursor = start

    def move_to(target: int) -> None:
        nonlocal cursor
        while cursor < target:
            s = min(MAX_SHIFT, target - cursor)
            cursor += s
            tokens.append(SHIFT + s - 1)
            positions.append(cursor % BEAT)

    for s, p, v, d in zip(step, pitch, velocity, duration):
        if not LOWEST <= p < LOWEST + NUM_PITCHES:
            continue
        move_to(int(s))
        b = velocity_bin(v)
        if b != vel_bin:
            tokens.append(VEL + b)
            positions.append(cursor % BEAT)
            vel_bin = b
        tokens += [NOTE_ON + int(p) - LOWEST, DUR + min(max(int(d), 1), MAX_DUR) - 1]
        positions += [cursor % BEAT] * 2
    if end is not None:
        move_to(end)
    return tokens, positions, vel_bin


def allowed_after(token: int) -> np.ndarray:
    """A (VOCAB,) bool mask of the tokens the grammar allows after ``token``."""
    ok = np.zeros(VOCAB, dtype=bool)
    if NOTE_ON <= token < DUR:
        ok[DUR:SHIFT] = True
    elif VEL <= token < VOCAB:
        ok[NOTE_ON:DUR] = True
    else:
        ok[NOTE_ON:DUR] = True
        ok[SHIFT:VOCAB] = True
    return ok
