"""What the real-time backends (JACK, PortAudio, null) share: recording, priming, the wait loop.

The :class:`Recorder` keeps what was played without allocating on the audio
thread: the callback copies each block into a preallocated ring; a small
thread moves what was written into memory every 0.1 s. If that thread falls
more than the ring's length behind, the lost frames are counted (``lost``).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from cadenza.engine.backends import Backend


class Recorder:
    """``write(block)`` on the audio thread; ``start()``, ``stop()``, ``audio()`` elsewhere."""

    def __init__(self, channels: int = 2, ring_frames: int = 1 << 18):
        self.ring = np.zeros((channels, ring_frames), np.float32)
        self._mask = ring_frames - 1
        self._head = 0  # frames written (audio thread)
        self._tail = 0  # frames moved out (drain thread)
        self.lost = 0
        self.chunks: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # between drainers only; the audio thread never takes it

    def write(self, block: np.ndarray) -> None:
        """Audio thread: append (channels, frames) — no allocation."""
        n = block.shape[1]
        i = self._head & self._mask
        first = min(n, self.ring.shape[1] - i)
        self.ring[:, i:i + first] = block[:, :first]
        if first < n:
            self.ring[:, : n - first] = block[:, first:]
        self._head += n

    def drain(self) -> None:
        with self._lock:
            self._drain()

    def _drain(self) -> None:
        head = self._head
        if head - self._tail > self.ring.shape[1]:
            self.lost += head - self._tail - self.ring.shape[1]
            self._tail = head - self.ring.shape[1]
        while self._tail < head:
            i = self._tail & self._mask
            n = min(head - self._tail, self.ring.shape[1] - i)
            self.chunks.append(self.ring[:, i:i + n].copy())
            self._tail += n

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.drain()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cadenza-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.drain()

    def audio(self) -> np.ndarray:
        """Everything recorded so far, float32 (channels, frames)."""
        with self._lock:
            self._drain()
            if not self.chunks:
                return np.zeros((self.ring.shape[0], 0), np.float32)
            joined = np.concatenate(self.chunks, axis=1)
            self.chunks = [joined]
            return joined


class LiveBackend(Backend):
    """What the real-time backends share: ``stop()`` from any thread, and what was played."""

    _stop: threading.Event
    recorder: "Recorder | None"

    def stop(self) -> None:
        self._stop.set()

    def recording(self) -> np.ndarray:
        if self.recorder is None:
            return np.zeros((2, 0), np.float32)
        return self.recorder.audio()


def prime(engine) -> None:
    """Load the event kernels (numba) before the first callback, which must not pay for it."""
    ring = engine.input_ring(2)
    engine.timed.add_from(ring)
    engine.timed.take(-1)
    engine.rings.remove(ring)


def wait(stop: threading.Event, seconds: float | None, on_tick=None, tick_s: float = 0.5) -> None:
    """Block until ``stop`` is set or ``seconds`` pass, calling ``on_tick()`` every ``tick_s``."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while not stop.is_set():
        timeout = tick_s if deadline is None else min(tick_s, deadline - time.monotonic())
        if timeout <= 0:
            return
        stop.wait(timeout)
        if on_tick is not None and not stop.is_set():
            on_tick()
