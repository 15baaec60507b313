"""Offline rendering: the same engine, driven as fast as the CPU allows. Deterministic."""

from __future__ import annotations

from typing import Callable

import numpy as np

from cadenza.engine.engine import Engine


class OfflineBackend:
    """Renders ``frames`` of output from optional input audio and stamped events."""

    name = "offline"

    @staticmethod
    def available() -> bool:
        return True

    def __init__(self, engine: Engine):
        self.engine = engine

    def render(self, frames: int, adc: np.ndarray | None = None, events: np.ndarray | None = None,
               progress: Callable[[int], None] | None = None,
               on_block: Callable[[int], None] | None = None) -> np.ndarray:
        """Output (2, frames) float32. ``adc``: (channels, n) input; ``events``: EVENT_DTYPE rows.

        ``progress(frame)`` every 64 blocks; ``on_block(b)`` after each block ``b`` (the
        harness reads the graph's controls and the outbound ring there).
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
        for b in range(n_blocks):
            start = b * block
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
