"""The worker lane: a real thread whose jobs come back as stamped events; the audio side never waits."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cadenza.engine.backends.offline import OfflineBackend
from cadenza.engine.events import EventRing, Kind, make_events
from cadenza.engine.node import Node
from cadenza.engine.registry import register
from cadenza.engine.worker import WorkerLane
from tests.helpers import engine_from_toml


class Probe(Node):
    """Records (absolute sample time, kind, note) of every event it receives."""

    ACCEPTS_NOTES = True

    def __init__(self, node_id, **options):
        super().__init__(node_id, **options)
        self.outputs = {"out": 1}
        self.seen: list[tuple[int, int, int]] = []

    def process(self, io):
        self.seen.extend((int(e["time"]), int(e["kind"]), int(e["a"])) for e in io.events)


register("test_worker_probe", Probe)

PATCH = """
[clock]
bpm = 120.0
[[node]]
id = "probe"
type = "test_worker_probe"
"""


@pytest.fixture
def engine(tmp_path):
    eng = engine_from_toml(PATCH, tmp_path, sample_rate=48000, block=128)
    yield eng
    eng.close()


def _probe(engine) -> Probe:
    return engine.graph.nodes[engine.node_index("probe")]


def _bar_notes(engine, bar: int, pitches) -> np.ndarray:
    """Note-ons on each beat of ``bar`` (0-based) for the probe, stamped in samples."""
    per_beat = round(60.0 / engine.clock.bpm * engine.sample_rate)
    start = bar * engine.clock.beats_per_bar * per_beat
    ev = make_events(len(pitches))
    for i, pitch in enumerate(pitches):
        ev[i] = (start + i * per_beat, Kind.NOTE_ON, engine.node_index("probe"), 0, pitch, 100, 0.0)
    return ev


def _play(engine, seconds: float) -> None:
    for _ in range(round(seconds * engine.sample_rate / engine.block)):
        engine.process(None)


def test_notes_for_a_future_bar_land_at_their_stamped_samples(engine):
    lane = engine.worker
    assert lane.running and lane.ring in engine.rings
    want = _bar_notes(engine, 1, [60, 64, 67, 72])  # bar 2 at 120 bpm: 2.0 s .. 3.5 s
    assert lane.submit(lambda: _bar_notes(engine, 1, [60, 64, 67, 72]), "next bar")
    _play(engine, 0.5)  # the audio goes on while the job runs
    assert lane.wait_idle(5.0)
    _play(engine, 3.5)
    assert _probe(engine).seen == [(int(t), Kind.NOTE_ON, int(a)) for t, a in zip(want["time"], want["a"])]
    assert lane.late == 0 and lane.errors == 0 and lane.dropped == 0


def test_offline_the_lane_runs_each_job_at_submit_so_renders_repeat(engine):
    lane = engine.worker
    OfflineBackend(engine)  # what `cadenza render` makes: jobs run inline from here on
    assert lane.inline and not lane.running
    thread = []
    assert lane.submit(lambda: thread.append(threading.current_thread()) or _bar_notes(engine, 1, [60, 67]))
    assert thread == [threading.current_thread()] and lane.idle() and len(lane.ring) == 2
    _play(engine, 3.0)
    want = _bar_notes(engine, 1, [60, 67])
    assert _probe(engine).seen == [(int(t), Kind.NOTE_ON, int(a)) for t, a in zip(want["time"], want["a"])]


def test_a_job_that_raises_is_counted_named_and_the_lane_goes_on(engine):
    lane = engine.worker

    def broken():
        raise ValueError("no weights for bar 3")

    lane.submit(broken, "genie bar")
    lane.submit(lambda: [(engine.now() + 4800, Kind.NOTE_ON, engine.node_index("probe"), 0, 62, 90, 0.0)], "after")
    assert lane.wait_idle(5.0)
    assert lane.errors == 1 and lane.running
    total, message = engine.problems()["worker-error"]
    assert total == 1 and "'genie bar' raised ValueError: no weights for bar 3" in message
    assert "\n" not in message and "{total}" in message
    _play(engine, 0.2)
    assert [(k, a) for _, k, a in _probe(engine).seen] == [(Kind.NOTE_ON, 62)]


def test_a_slow_job_never_delays_process(engine):
    lane = engine.worker
    release = threading.Event()
    times = []

    def slow():
        release.wait(10.0)  # a model reload that takes as long as it likes
        return _bar_notes(engine, 2, [48])

    lane.submit(slow, "reload")
    time.sleep(0.01)
    for _ in range(400):  # ~1 s of audio while the job is stuck
        t0 = time.perf_counter()
        engine.process(None)
        times.append(time.perf_counter() - t0)
    assert not lane.idle()  # the job was still running all along
    release.set()
    assert lane.wait_idle(5.0)
    assert max(times) < 0.05  # a wait on the job would have taken seconds
    _play(engine, 4.0)
    assert [a for _, _, a in _probe(engine).seen] == [48]


def test_full_queue_drops_the_oldest_waiting_job():
    ring = EventRing(64)
    lane = WorkerLane(ring, capacity=4)
    lane.start()
    release = threading.Event()
    lane.submit(lambda: release.wait(10.0) and None, "blocker")
    while lane.waiting:  # until the thread has taken it
        time.sleep(0.001)
    assert all(lane.submit(lambda i=i: [(1000 + i, Kind.NOTE_ON, 0, 0, i, 1, 0.0)]) for i in range(4))
    assert not lane.submit(lambda: [(1004, Kind.NOTE_ON, 0, 0, 4, 1, 0.0)])  # full: job 0 goes
    assert not lane.submit(lambda: [(1005, Kind.NOTE_ON, 0, 0, 5, 1, 0.0)])  # and job 1
    release.set()
    assert lane.wait_idle(5.0)
    assert lane.dropped == 2 and lane.done == 5
    assert ring.pop_all()["a"].tolist() == [2, 3, 4, 5]
    assert lane.stop(1.0)


def test_stop_is_bounded_even_with_a_stuck_job():
    lane = WorkerLane(EventRing(8))
    lane.start()
    release = threading.Event()
    lane.submit(lambda: release.wait(30.0) and None, "stuck")
    while lane.waiting:  # until the thread has taken it
        time.sleep(0.001)
    t0 = time.monotonic()
    assert lane.stop(0.2) is False
    assert time.monotonic() - t0 < 1.0
    release.set()
    assert lane.stop(2.0) is True and not lane.running
    idle = WorkerLane(EventRing(8))
    idle.start()
    t0 = time.monotonic()
    assert idle.stop(2.0) and time.monotonic() - t0 < 0.5
