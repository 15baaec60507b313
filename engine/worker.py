"""The worker lane: work too heavy for one block runs on a thread and comes back as stamped events.

Bar-level generators, model reloads and plotting run here, never on the audio
thread. A job is a callable with no arguments; it returns the events it made
(EVENT_DTYPE rows, or tuples in that field order, stamped with the absolute
sample time at which each should sound — a future bar), or None. The lane
pushes them into its own :class:`EventRing`, one of the engine's input rings,
so the audio thread picks them up with every other control event, at their
samples. The audio thread never waits for the lane.

Policy:

- **Bounded queue, drop-oldest.** At most ``capacity`` jobs wait; ``submit`` on
  a full queue drops the oldest waiting job and counts it (``dropped``, exact
  once the thread takes its next job): a generator that falls behind skips its
  stale bars, never the next one.
  ``submit`` never blocks (a deque append and an event flag), so any thread,
  the audio thread included, may call it.
- **A job that raises** is counted (``errors``), the latest is named in one line
  by :meth:`problems` (the engine's ``problems()`` includes it), and the lane
  goes on with the next job. Events that come back too late to sound at their
  stamp are played at once and counted (``late``); a full ring drops and counts
  them like any input ring (the engine's ``events-dropped``).
- **Stopping** waits at most ``timeout_s`` for the running job to end; a job that
  runs longer is left to finish on the (daemon) thread and ``stop`` returns False.

``engine.worker`` creates the lane on first use and starts its thread there
(so touch it in ``prepare`` or a control thread, not in ``process``);
``Engine.close()`` stops it. A node reaches it through its prepare
``Context.lane``. Offline (``inline``) the lane has no thread: ``submit`` runs
the job at once in the caller's thread, so a render is the same every time.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from typing import Callable

import numpy as np

from cadenza.engine.events import EVENT_DTYPE, EventRing

Job = Callable[[], "np.ndarray | list[tuple] | None"]


class WorkerLane:
    """A thread that runs submitted jobs in order and pushes their events into ``ring``.

    ``ring``: an input ring of the engine (this lane is its only producer);
    ``now``: the engine's current sample time (to count late results), or None.
    """

    def __init__(self, ring: EventRing, now: Callable[[], int] | None = None, capacity: int = 16,
                 name: str = "cadenza-worker", inline: bool = False):
        self.ring = ring
        self.inline = inline
        self.capacity = capacity
        self.name = name
        self._now = now
        self._jobs: collections.deque[tuple[int, str, Job]] = collections.deque(maxlen=capacity)
        self._seq = itertools.count(1)  # next() is atomic: any number of submitting threads
        self._last_seq = 0  # the latest job the thread took (jobs between were dropped)
        self._wake = threading.Event()
        self._stopping = False
        self._busy = False
        self._thread: threading.Thread | None = None
        # counters below are written by the worker thread only
        self.done = 0  # jobs finished, with or without an error
        self.dropped = 0  # jobs dropped unrun from a full queue (counted when the next one is taken)
        self.errors = 0
        self.late = 0  # events that came back after their sample time
        self._error: tuple[str, BaseException] | None = None

    # -- any thread ------------------------------------------------------------------------------

    def submit(self, job: Job, name: str = "") -> bool:
        """Queue ``job``; never blocks. Returns False when it displaced the oldest waiting job.
        ``inline``: runs it now, in this thread, and returns True."""
        if self.inline:
            self._run(name or getattr(job, "__name__", "job"), job)
            return True
        full = len(self._jobs) >= self.capacity  # a hint: the thread may take one meanwhile
        self._jobs.append((next(self._seq), name or getattr(job, "__name__", "job"), job))  # full: oldest out
        self._wake.set()
        return not full

    @property
    def waiting(self) -> int:
        return len(self._jobs)

    def idle(self) -> bool:
        """True when no job waits or runs."""
        return not self._jobs and not self._busy

    def wait_idle(self, timeout_s: float) -> bool:
        """Off the audio thread: wait until ``idle()`` (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while not self.idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def problems(self) -> dict[str, tuple[int, str]]:
        """Counters for the control layer's log: kind → (running total, one-line message)."""
        if self._error is None:
            error = "no worker job failed"
        else:
            job, exc = self._error
            text = str(exc).splitlines()[0][:160] if str(exc) else ""
            error = (f"worker job {job!r} raised {type(exc).__name__}{': ' + text if text else ''}"
                     ).replace("{", "{{").replace("}", "}}") + "; the lane went on ({total} in all)"
        return {
            "worker-error": (self.errors, error),
            "worker-dropped": (self.dropped, f"{{new}} worker job(s) dropped unrun: the queue ({self.capacity}) "
                                             "was full, the oldest go first ({total} in all)"),
            "worker-late": (self.late, "{new} event(s) from the worker came after their time and played at once "
                                       "({total} in all)"),
        }

    # -- lifecycle (control threads) ------------------------------------------------------------

    def start(self) -> None:
        if self.inline:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def run_inline(self) -> None:
        """From now on ``submit`` runs each job at once in its caller's thread (offline rendering)."""
        self.stop()
        self.inline = True
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop after the running job (waiting jobs are dropped); True once the thread has ended."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        if thread.is_alive():
            return False
        self._thread = None
        self._jobs.clear()
        return True

    # -- the worker thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping:
            self._busy = True
            try:
                seq, name, job = self._jobs.popleft()
            except IndexError:
                self._busy = False
                self._wake.wait()
                self._wake.clear()
                continue
            self.dropped += seq - self._last_seq - 1
            self._last_seq = seq
            self._run(name, job)

    def _run(self, name: str, job: Job) -> None:
        try:
            events = job()
            if events is not None and not self._stopping:
                self._deliver(events)
        except Exception as exc:  # a failing job is counted and named; the lane goes on
            self.errors += 1
            self._error = (name, exc)
        finally:
            self.done += 1
            self._busy = False

    def _deliver(self, events) -> None:
        rows = np.asarray(events, EVENT_DTYPE) if not isinstance(events, np.ndarray) else events
        if rows.dtype != EVENT_DTYPE:
            raise TypeError(f"a job returns EVENT_DTYPE rows, found dtype {rows.dtype}")
        rows = np.atleast_1d(rows)
        if self._now is not None and len(rows):
            self.late += int(np.count_nonzero(rows["time"] < self._now()))
        self.ring.push_array(rows)
