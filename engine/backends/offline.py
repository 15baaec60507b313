"""Offline rendering: the same engine, driven as fast as the CPU allows. Deterministic."""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from cadenza.engine.backends import Backend, BackendError
from cadenza.engine.engine import Engine


class OfflineBackend(Backend):
    """Renders ``frames`` of output from optional input audio and stamped events.

    ``render`` is the workhorse; ``run(seconds)`` is the :class:`Backend` form (no input,
    ``on_tick`` every ``tick_s`` of rendered time, ``stop()`` ends it at the next block).
    """

    name = "offline"

    def __init__(self, engine: Engine):
        self.engine = engine
        engine.run_jobs_inline()
        self._stop = threading.Event()
        self._recorded = np.zeros((2, 0), np.float32)

    def run(self, seconds: float | None = None, on_tick=None, tick_s: float = 0.5) -> None:
        """Render ``seconds`` of the engine with no input, as fast as the CPU allows."""
        if seconds is None:
            raise BackendError("backend 'offline' renders a given length: run(seconds=...)")
        engine = self.engine
        every = max(1, round(tick_s / engine.period_s))

        def tick(b: int) -> None:
            if on_tick is not None and b % every == every - 1:
                on_tick()

        self._recorded = self.render(round(seconds * engine.sample_rate), on_block=tick)

    def stop(self) -> None:
        self._stop.set()

    def recording(self) -> np.ndarray:
        return self._recorded

    def render(self, frames: int, adc: np.ndarray | None = None, events: np.ndarray | None = None,
               progress: Callable[[int], None] | None = None,
               on_block: Callable[[int], None] | None = None) -> np.ndarray:
        """Output (2, frames) float32. ``adc``: (channels, n) input; ``events``: EVENT_DTYPE rows.

        ``progress(frame)`` every 64 blocks; ``on_block(b)`` after each block ``b`` (the
        harness reads the graph's controls and the outbound ring there). A ``stop()`` from
        another thread ends it after the current block (the output is cut there).
        """
        engine = self.engine
        block = engine.block
        n_blocks = -(-frames // block)
        out = np.zeros((2, n_blocks * block), np.float32)
        n_in = engine.graph.adc.shape[0]
        chunk = np.zeros((n_in, block), np.float32)
        # fed block by block, so a long score never overfills the scheduler
        if events is not None:
            events = np.sort(events, order="time", kind="stable")
        fed = 0
        self._stop.clear()
        for b in range(n_blocks):
            start = b * block
            if self._stop.is_set():
                return out[:, :start]
            if events is not None and fed < len(events):
                due = fed + int(np.searchsorted(events["time"][fed:], start + block))
                engine.schedule(events[fed:due])
                fed = due
            if adc is not None:
                chunk[:] = 0.0
                piece = adc[:n_in, start: start + block]
                chunk[: piece.shape[0], : piece.shape[1]] = piece
            out[:, start: start + block] = engine.process(chunk if adc is not None else None)
            if on_block is not None:
                on_block(b)
            if progress is not None and b % 64 == 0:
                progress(start)
        return out[:, :frames]
