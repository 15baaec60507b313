"""Rate-limited, one-line error reporting with counters, for the control threads.

A flood of bad packets must not become a flood of log lines (printing takes the
GIL and the terminal's time). Each *kind of fault* — the kind plus the shape of
its message, with numbers and quoted values blanked, so a bad param and a bad
tempo are told apart but a thousand bad tempos are one fault — prints at most
one line per ``interval_s``, saying how many more were seen meanwhile; a fault
that keeps coming waits twice as long each time (up to ``MAX_INTERVAL_S``); all
faults together print at most ``burst`` lines per ``interval_s``. Every problem
is counted, in ``counts`` and in the engine's ``stats.errors``. A line is cut
to ``MAX_LINE`` characters and control characters are escaped.

The same :class:`Console` prints the live status line (``\\r``, no newline), so
a log line first clears it and the status line is drawn again after it: an
error never lands inside the status line. Python's ``logging`` (python-osc
logs through it) is routed here by :func:`capture_logging`.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time

MAX_LINE = 240
MAX_INTERVAL_S = 60.0
_SHAPE = re.compile(r"'[^']*'|\"[^\"]*\"|[-+]?\d[\d.eE+-]*|nan|inf", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as one printable line of at most ``limit`` characters (cut in the middle,
    so both what went wrong and what happens next stay readable)."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


class Console:
    """stderr shared by the status line and log lines (any thread)."""

    def __init__(self, stream=None):
        self._stream = stream
        self._status = ""
        self._lock = threading.Lock()

    @property
    def stream(self):
        return self._stream or sys.stderr

    def line(self, text: str) -> None:
        """Print one line above the status line."""
        with self._lock:
            clear = "\r\x1b[K" if self._status else ""
            redraw = "\r" + self._status if self._status else ""
            self.stream.write(f"{clear}{text}\n{redraw}")
            self.stream.flush()

    def status(self, text: str) -> None:
        """Replace the status line (drawn with ``\\r``, no newline)."""
        with self._lock:
            self._status = text
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()

    def end_status(self) -> None:
        """Leave the status line as it is and move below it."""
        with self._lock:
            if self._status:
                self._status = ""
                self.stream.write("\n")
                self.stream.flush()


class ErrorLog:
    """``report(kind, message)`` from any non-audio thread."""

    def __init__(self, stats=None, interval_s: float = 1.0, stream=None, burst: int = 10,
                 console: Console | None = None):
        self.stats = stats
        self.interval_s = interval_s
        self.burst = burst
        self.console = console or Console(stream)
        self.counts: dict[str, int] = {}
        self._last: dict[tuple[str, str], tuple[float, float]] = {}  # fault → (printed at, wait)
        self._suppressed: dict[tuple[str, str], int] = {}
        self._synced: dict[str, int] = {}
        self._window = (0.0, 0)  # (start, lines printed in it), for the burst cap
        self._lock = threading.Lock()  # control threads only; the audio thread never reports

    def report(self, kind: str, message: str, n: int = 1, shape: str | None = None) -> None:
        """Count ``n`` problems of ``kind``; print ``message`` unless this fault was printed lately.

        ``shape`` names the fault when its message alone would not (default: the message
        with numbers and quoted values blanked).
        """
        now = time.monotonic()
        key = (kind, shape if shape is not None else _SHAPE.sub("#", message[:MAX_LINE]))
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + n
            if self.stats is not None:
                self.stats.errors += n
            start, printed = self._window
            if now - start >= self.interval_s:
                start, printed = now, 0
            last, wait = self._last.get(key, (-1e9, self.interval_s))
            if now - last < wait or printed >= self.burst:
                self._suppressed[key] = self._suppressed.get(key, 0) + n
                self._window = (start, printed)
                return
            more = self._suppressed.pop(key, 0)
            quiet = now - last > 2 * wait
            self._last[key] = (now, self.interval_s if quiet or not more else min(2 * wait, MAX_INTERVAL_S))
            self._window = (start, printed + 1)
            if len(self._last) > 4096:  # many distinct faults: forget the oldest shapes
                self._last = dict(list(self._last.items())[-1024:])
        tail = f" (+{more} more since the last report)" if more else ""
        self.console.line(f"cadenza: {kind}: {one_line(message)}{tail}")

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


class _ToErrorLog(logging.Handler):
    def __init__(self, log: ErrorLog):
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a library's bad format string must not break logging
            text = str(record.msg)
        # a library's message template (or, pre-formatted, its words before a colon) names the fault
        shape = str(record.msg) if record.args else text.split(":")[0][:80]
        self.log.report(record.name if record.name != "root" else "log", text, shape=shape)


def capture_logging(log: ErrorLog) -> logging.Handler:
    """Route Python logging (warnings and up, python-osc's included) through ``log``'s limiter.

    Returns the handler; ``release_logging(handler)`` puts the previous setup back.
    """
    handler = _ToErrorLog(log)
    root = logging.getLogger()
    handler.previous = (root.handlers[:], root.level)
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    return handler


def release_logging(handler: logging.Handler) -> None:
    root = logging.getLogger()
    root.handlers, level = handler.previous
    root.setLevel(level)
