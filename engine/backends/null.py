"""The ``null`` backend: real-time paced blocks with no sound device, recording the output.

It lets ``cadenza play`` and ``cadenza demo`` run on a headless machine exactly
as on stage: control threads stamp events against a clock that advances in
real time, and what the engine played is kept for a WAV (through the same
:class:`Recorder` as the device backends).
"""

from __future__ import annotations

import threading
import time

from cadenza.engine.backends.live import LiveBackend, Recorder, prime
from cadenza.engine.engine import Engine


class NullBackend(LiveBackend):
    name = "null"

    def __init__(self, engine: Engine, record: bool = True):
        self.engine = engine
        self.recorder = Recorder() if record else None
        self._stop = threading.Event()

    def run(self, seconds: float | None = None, on_tick=None, tick_s: float = 0.5) -> None:
        """Play until ``seconds`` have passed (or ``stop()``); ``on_tick()`` every ``tick_s``."""
        engine = self.engine
        period = engine.period_s
        n_blocks = None if seconds is None else int(round(seconds / period))
        self._stop.clear()
        if self.recorder is not None:
            self.recorder.start()
        prime(engine)
        t_next = time.monotonic()
        t_tick = t_next + tick_s
        b = 0
        try:
            while not self._stop.is_set() and (n_blocks is None or b < n_blocks):
                out = engine.process(None)
                if self.recorder is not None:
                    self.recorder.write(out)
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
                    self._stop.wait(delay)
        finally:
            self._stop.set()
            if self.recorder is not None:
                self.recorder.stop()
