"""Sample time and musical time (beats, bars) from a tempo that may change while playing."""

from __future__ import annotations

import math

import numpy as np


class Clock:
    """Counts samples and beats.

    ``beat`` is the musical position in beats (float) at ``sample_time``; it
    advances by ``bpm / 60 / sample_rate`` beats per sample. A tempo change
    takes effect at a sample offset inside the block (``set_tempo``), so
    musical time stays continuous across it.
    """

    def __init__(self, sample_rate: int, bpm: float = 120.0, beats_per_bar: int = 4):
        self.sample_rate = sample_rate
        self.bpm = float(bpm)
        self.beats_per_bar = beats_per_bar
        self.sample_time = 0
        self.beat = 0.0
        self._pending_bpm = self.bpm
        self._pending_offset = -1

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

    def fill(self, beat_out: np.ndarray, bpm_out: np.ndarray) -> None:
        """Write this block's per-frame beat position and tempo (no allocation)."""
        frames = beat_out.shape[0]
        split = self._pending_offset if 0 <= self._pending_offset < frames else frames
        step = self.beats_per_sample()
        beat_out[:split] = self.beat + step * _ramp(frames)[:split]
        bpm_out[:split] = self.bpm
        if split < frames:
            start = self.beat + step * split
            new_step = self.beats_per_sample(self._pending_bpm)
            beat_out[split:] = start + new_step * _ramp(frames)[: frames - split]
            bpm_out[split:] = self._pending_bpm

    def advance(self, frames: int) -> None:
        """Move on by one block, applying a pending tempo change at its offset."""
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


_RAMPS: dict[int, np.ndarray] = {}


def _ramp(frames: int) -> np.ndarray:
    """0, 1, ..., frames-1 as float64, cached so the audio thread never builds it."""
    ramp = _RAMPS.get(frames)
    if ramp is None:
        ramp = _RAMPS[frames] = np.arange(frames, dtype=np.float64)
    return ramp
