"""Sample time and musical time (beats, bars) from a tempo that may change while playing, and
the timeline that ties sample time to the wall clock."""

from __future__ import annotations

import math

import numpy as np


class Clock:
    """Counts samples and beats.

    ``beat`` is the musical position in beats (float) at ``sample_time``; it
    advances by ``bpm / 60 / sample_rate`` beats per sample. A tempo change
    takes effect at a sample offset inside the block (``set_tempo``), so
    musical time stays continuous across it. A clock that follows an outside
    one (Ableton Link: :mod:`cadenza.engine.link`) is steered block by block
    with ``lock``.
    """

    JUMP_BEATS = 0.1  # ``lock``: an outside clock this far (beats) from ours is a jump (a join, a start)

    def __init__(self, sample_rate: int, bpm: float = 120.0, beats_per_bar: int = 4):
        self.sample_rate = sample_rate
        self.bpm = float(bpm)
        self.beats_per_bar = beats_per_bar
        self.sample_time = 0
        self.beat = 0.0
        self._pending_bpm = self.bpm
        self._pending_offset = -1
        self._nudge = 0.0  # beats per sample added over the coming block by ``lock``

    @property
    def bar(self) -> int:
        return int(self.beat // self.beats_per_bar)

    @property
    def beat_in_bar(self) -> float:
        return self.beat - self.bar * self.beats_per_bar

    def seconds(self) -> float:
        return self.sample_time / self.sample_rate

    def set_tempo(self, bpm: float, offset: int = 0) -> None:
        """Change tempo ``offset`` frames into the coming block (bpm, clamped to 1..1000; NaN/inf ignored)."""
        if not math.isfinite(bpm):
            return
        self._pending_bpm = float(min(max(bpm, 1.0), 1000.0))
        self._pending_offset = offset

    def beats_per_sample(self, bpm: float | None = None) -> float:
        return (self.bpm if bpm is None else bpm) / 60.0 / self.sample_rate

    def lock(self, beat: float, bpm: float, frames: int) -> float:
        """Follow an outside beat clock for the coming block of ``frames``: ``beat`` is its position
        at the block's first frame, ``bpm`` its tempo (replacing any pending ``set_tempo``).

        Our beat meets the outside one by the block's end, the block's rate bent by at most half
        of it, so the beat never steps back and no beat boundary is crossed twice; an error over
        ``JUMP_BEATS`` (a join, a transport start) is a jump instead. Returns the beat the block
        will end on (the outside clock's, unless the bend was capped).
        """
        self.bpm = self._pending_bpm = float(min(max(bpm, 1.0), 1000.0))
        self._pending_offset = -1
        step = self.beats_per_sample()
        error = beat - self.beat
        if abs(error) > self.JUMP_BEATS:
            self.beat, error = beat, 0.0
        self._nudge = min(max(error / frames, -0.5 * step), 0.5 * step)
        return self.beat + (step + self._nudge) * frames

    def fill(self, beat_out: np.ndarray, bpm_out: np.ndarray) -> None:
        """Write this block's per-frame beat position and tempo (no allocation)."""
        frames = beat_out.shape[0]
        split = self._pending_offset if 0 <= self._pending_offset < frames else frames
        step = self.beats_per_sample() + self._nudge
        beat_out[:split] = self.beat + step * _ramp(frames)[:split]
        bpm_out[:split] = self.bpm
        if split < frames:
            start = self.beat + step * split
            new_step = self.beats_per_sample(self._pending_bpm) + self._nudge
            beat_out[split:] = start + new_step * _ramp(frames)[: frames - split]
            bpm_out[split:] = self._pending_bpm

    def advance(self, frames: int) -> None:
        """Move on by one block, applying a pending tempo change at its offset and ``lock``'s bend."""
        self.beat += self._nudge * frames
        self._nudge = 0.0
        if 0 <= self._pending_offset < frames:
            off = self._pending_offset
            self.beat += self.beats_per_sample() * off
            self.bpm = self._pending_bpm
            self.beat += self.beats_per_sample() * (frames - off)
            self._pending_offset = -1
        else:
            self.beat += self.beats_per_sample() * frames
            if self._pending_offset >= frames:
                self._pending_offset -= frames
        self.sample_time += frames


class Timeline:
    """Where a running sample count sits on the wall clock, robust to a busy machine.

    ``follow(count, t)`` once per block: sample ``count`` is due at monotonic
    second ``t``, as the backend reports it (JACK's cycle times). It tracks
    ``offset`` — the monotonic second of sample 0, t − count / rate — with a
    second-order loop (a DLL, as JACK and scsynth filter their own clocks):
    the offset and its ``drift`` per sample, so a driver whose samples run
    slower than the wall clock (JACK's dummy driver falls behind by up to 2 %
    on a busy machine) is followed without lag, and wake-up jitter is
    smoothed. A report beyond ``JITTER_S`` of the prediction is either a lone
    excursion (a cycle reported late, the next one early; a frame time read
    twice), which moves nothing, or a real jump (cycles the server played
    without us), believed once the next block confirms it. ``lag``: how far,
    in whole samples, the offset has moved since the first block.
    """

    GAIN = 0.5  # of the offset, per report
    DRIFT_GAIN = 0.1  # of the drift: a 1 % rate error is followed within ~20 blocks
    JITTER_S = 0.0005

    def __init__(self, sample_rate: int):
        self.rate = float(sample_rate)
        self.offset: float | None = None
        self.drift = 0.0  # s of offset per sample
        self._first = 0.0
        self._count = 0
        self._candidate: float | None = None
        self.lag = 0

    def follow(self, count: int, t: float) -> float:
        """Take one report; returns when sample ``count`` is due, smoothed (monotonic s)."""
        offset = t - count / self.rate
        if self.offset is None:
            self.offset = self._first = offset
            self._count = count
            return t
        predicted = self.offset + self.drift * (count - self._count)
        error = offset - predicted
        if abs(error) <= self.JITTER_S:
            self.offset = predicted + self.GAIN * error
            self.drift += self.DRIFT_GAIN * error / max(count - self._count, 1)
            self._candidate = None
        elif self._candidate is not None and abs(offset - self._candidate) <= self.JITTER_S:
            self.offset = offset
            self._candidate = None
        else:
            self.offset = predicted
            self._candidate = offset
        self._count = count
        self.lag = round((self.offset - self._first) * self.rate)
        return self.offset + count / self.rate


_RAMPS: dict[int, np.ndarray] = {}


def _ramp(frames: int) -> np.ndarray:
    """0, 1, ..., frames-1 as float64, cached so the audio thread never builds it."""
    ramp = _RAMPS.get(frames)
    if ramp is None:
        ramp = _RAMPS[frames] = np.arange(frames, dtype=np.float64)
    return ramp
