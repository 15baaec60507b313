"""The ``null`` backend: real-time paced blocks with no sound device, recording the output.

It lets ``cadenza play`` and ``cadenza demo`` run on a headless machine exactly
as on stage: control threads stamp events against a clock that advances in
real time, and what the engine played is kept for a WAV.
"""

from __future__ import annotations

import time

import numpy as np

from cadenza.engine.engine import Engine


class NullBackend:
    name = "null"

    @staticmethod
    def available() -> bool:
        return True

    def __init__(self, engine: Engine, record: bool = True):
        self.engine = engine
        self.record = record
        self.recorded: list[np.ndarray] = []
        self.running = False

    def run(self, seconds: float | None = None, on_tick=None, tick_s: float = 0.5) -> None:
        """Play until ``seconds`` have passed (or forever); ``on_tick()`` every ``tick_s``."""
        engine = self.engine
        period = engine.period_s
        n_blocks = None if seconds is None else int(round(seconds / period))
        self.running = True
        t_next = time.monotonic()
        t_tick = t_next + tick_s
        b = 0
        try:
            while self.running and (n_blocks is None or b < n_blocks):
                out = engine.process(None)
                if self.record:
                    self.recorded.append(out.copy())
                b += 1
                t_next += period
                now = time.monotonic()
                if now > t_next + period:  # fell behind: count it like a device would
                    engine.stats.xruns += 1
                    t_next = now
                if on_tick is not None and now >= t_tick:
                    on_tick()
                    t_tick = now + tick_s
                delay = t_next - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        finally:
            self.running = False

    def stop(self) -> None:
        self.running = False

    def recording(self) -> np.ndarray:
        if not self.recorded:
            return np.zeros((2, 0), np.float32)
        return np.concatenate(self.recorded, axis=1)
