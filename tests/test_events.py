import numpy as np

from cadenza.engine.events import EVENT_DTYPE, EventRing, Inbox, Kind, Scheduler


def test_ring_is_fifo_and_counts_overflow():
    ring = EventRing(8)
    for i in range(10):
        ring.push(i, Kind.NOTE_ON, a=60 + i)
    assert ring.dropped == 2
    got = ring.pop_all()
    assert got.dtype == EVENT_DTYPE
    assert list(got["time"]) == list(range(8))
    assert len(ring) == 0
    ring.push(99, Kind.NOTE_OFF)
    assert ring.pop_all()["time"].tolist() == [99]


def test_ring_rejects_non_power_of_two():
    try:
        EventRing(100)
    except ValueError as exc:
        assert "power of two" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_scheduler_releases_due_events_sorted_and_keeps_future_ones():
    sched = Scheduler(64)
    ring = EventRing(16)
    for t in (300, 5, 130, 100, 5):
        ring.push(t, Kind.NOTE_ON, a=t % 128)
    sched.add_from(ring)
    n = sched.take(128)
    assert sched.due["time"][:n].tolist() == [5, 5, 100]
    n = sched.take(256)
    assert sched.due["time"][:n].tolist() == [130]
    assert sched.n_pending == 1


def test_inbox_keeps_time_order_stably():
    box = Inbox(8)
    for t, a in ((50, 1), (10, 2), (50, 3), (0, 4)):
        box.insert((t, Kind.CC, 0, 0, a, 0, 0.0))
    assert box.events["time"].tolist() == [0, 10, 50, 50]
    assert box.events["a"].tolist() == [4, 2, 1, 3]
    box.clear()
    assert box.count == 0


def test_threads_move_events_through_ring_without_loss():
    import threading

    ring = EventRing(1024)
    sched = Scheduler(4096)
    n = 3000

    def produce():
        i = 0
        while i < n:
            if ring.push(i, Kind.NOTE_ON):
                i += 1

    t = threading.Thread(target=produce)
    t.start()
    seen = []
    while len(seen) < n:
        sched.add_from(ring)
        k = sched.take(10**9)
        seen.extend(sched.due["time"][:k].tolist())
    t.join()
    assert seen == list(range(n))
    assert np.all(np.diff(seen) == 1)


def test_producer_peeks_what_it_pushed_since_a_mark_while_the_consumer_drains():
    ring = EventRing(8)
    ring.push(1, Kind.BEAT)
    mark = ring.mark()
    for t in (10, 11, 12):
        ring.push(t, Kind.NOTE_ON, a=t)
    assert ring.pop_all()["time"].tolist() == [1, 10, 11, 12]  # the consumer took them meanwhile
    assert [int(ev["a"]) for ev in ring.pushed_since(mark)] == [10, 11, 12]
    assert list(ring.pushed_since(ring.mark())) == []
