"""Rate-limited, one-line error reporting with counters, for the control threads.

A flood of bad packets must not become a flood of log lines (printing takes the
GIL and the terminal's time): each kind of problem prints at most one line per
``interval_s``, saying how many more of that kind were seen meanwhile. Every
problem is counted, in ``counts`` and in the engine's ``stats.errors``.
"""

from __future__ import annotations

import sys
import threading
import time


class ErrorLog:
    """``report(kind, message)`` from any non-audio thread."""

    def __init__(self, stats=None, interval_s: float = 1.0, stream=None):
        self.stats = stats
        self.interval_s = interval_s
        self.stream = stream
        self.counts: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._synced: dict[str, int] = {}
        self._lock = threading.Lock()  # control threads only; the audio thread never reports

    def report(self, kind: str, message: str, n: int = 1) -> None:
        """Count ``n`` problems of ``kind``; print ``message`` unless one was printed lately."""
        now = time.monotonic()
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + n
            if self.stats is not None:
                self.stats.errors += n
            if now - self._last.get(kind, -1e9) < self.interval_s:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + n
                return
            more = self._suppressed.pop(kind, 0)
            self._last[kind] = now
        tail = f" (+{more} more since the last report)" if more else ""
        print(f"cadenza: {kind}: {message}{tail}", file=self.stream or sys.stderr, flush=True)

    def sync(self, kind: str, total: int, message: str) -> None:
        """Report a counter kept by the audio thread (which never prints) when it grew.

        ``message`` may use ``{new}`` and ``{total}``.
        """
        new = total - self._synced.get(kind, 0)
        if new > 0:
            self._synced[kind] = total
            self.report(kind, message.format(new=new, total=total), n=new)

    def summary(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "no errors"
