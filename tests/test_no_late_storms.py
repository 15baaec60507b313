"""No late storms: nothing compiles on the audio thread once a patch is loaded, and timetagged
events ride a wall-clock timeline that follows the backend's real jumps and ignores lone ones."""

from __future__ import annotations

import numba.core.dispatcher
import numpy as np
import pytest

from cadenza.engine.backends.live import prime
from cadenza.engine.clock import Timeline
from cadenza.engine.engine import Engine
from cadenza.engine.events import BROADCAST, ENGINE, OUTBOUND, Kind
from cadenza.engine.patch import list_patches, load_patch
from helpers import SYNTH_ONLY, engine_from_toml

RATE, BLOCK = 48000, 128
PERIOD_S = BLOCK / RATE


@pytest.mark.parametrize("name", [name for name, _ in list_patches()])
def test_no_numba_dispatch_compiles_in_live_blocks_after_load(name, monkeypatch):
    """A kernel first called in a live block loads or compiles there: milliseconds late (the first
    outbound note used to cost 3 ms in ``Scheduler.add``). Every kind of input a show sends, after
    load and priming, must find its kernels ready."""
    engine = Engine(load_patch(name), RATE, BLOCK)
    prime(engine)
    graph = engine.graph
    ring = engine.input_ring()
    compiled = []
    original = numba.core.dispatcher.Dispatcher._compile_for_args

    def spy(self, *args, **kwargs):
        compiled.append(self.py_func.__qualname__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(numba.core.dispatcher.Dispatcher, "_compile_for_args", spy)
    target = max(engine.midi_map.notes_to, engine.midi_map.buttons_to, 0)
    t = np.arange(BLOCK) / RATE
    try:
        for b in range(120):
            now = engine.clock.sample_time + 5
            if b % 20 == 1:
                ring.push(now, Kind.NOTE_ON, target, 0, 60 + b % 12, 100, 0.0)
                ring.push(now, Kind.BUTTON, target, 0, b % 8, 90, 0.0)
                ring.push(now, Kind.NOTE_ON, OUTBOUND, 0, 72, 100, 0.0)  # MIDI thru: straight out
            if b % 20 == 11:
                ring.push(now, Kind.NOTE_OFF, target, 0, 60 + b % 12, 0, 0.0)
                ring.push(now, Kind.BUTTON, target, 0, b % 8, 0, 0.0)
                ring.push(now, Kind.CC, target, 0, 1, 64, 0.5)
                ring.push(now, Kind.PITCH_BEND, target, 0, 0, 0, 0.25)
            if b == 60:
                ring.push(now, Kind.TEMPO, ENGINE, 0, 0, 0, 100.0)
                ring.push(now, Kind.PANIC, BROADCAST)
            voice = 0.3 * np.sin(2 * np.pi * 220 * (t + b * PERIOD_S)).astype(np.float32)
            engine.process(np.stack([voice] * graph.adc.shape[0]), start_time=1000.0 + b * PERIOD_S)
    finally:
        engine.close()
    assert compiled == []


def test_every_event_kernel_is_loaded_once_an_engine_exists():
    """The event lanes' kernels are called from Python on the audio thread (JACK's outbound MIDI
    adds to a scheduler; a graph defers into one): each must be loaded before the first block."""
    from cadenza.engine import events

    Engine(load_patch("default"), RATE, BLOCK).close()
    kernels = {name: f for name, f in vars(events).items() if isinstance(f, numba.core.dispatcher.Dispatcher)}
    assert kernels and {name for name, f in kernels.items() if not f.signatures} == set()


def test_timeline_ignores_a_lone_excursion_and_follows_a_jump_in_two_blocks():
    line = Timeline(RATE)
    for k in range(10):
        line.follow(k * BLOCK, 5.0 + k * PERIOD_S + (2e-5 if k % 2 else -2e-5))  # wake-up jitter, ±1 sample
    assert abs(line.lag) <= 1
    line.follow(10 * BLOCK, 5.0 + 10 * PERIOD_S + PERIOD_S)  # a cycle reported one period late...
    assert abs(line.lag) <= 1
    line.follow(11 * BLOCK, 5.0 + 11 * PERIOD_S)  # ...and the next on time: nothing moved
    assert abs(line.lag) <= 1
    # the server played two periods without us: reported, then confirmed
    line.follow(12 * BLOCK, 5.0 + 14 * PERIOD_S)
    assert abs(line.lag) <= 1
    due = line.follow(13 * BLOCK, 5.0 + 15 * PERIOD_S)
    assert abs(line.lag - 2 * BLOCK) <= 1
    assert due == pytest.approx(5.0 + 15 * PERIOD_S, abs=1e-9)


def test_a_timetagged_note_lands_on_its_wall_clock_sample_though_the_timeline_jumped(tmp_path):
    """Stamped 40 blocks ahead; the server then skips three periods of ours. The note must sound
    where the wall clock says, three periods earlier in the engine's own count."""
    engine = engine_from_toml(SYNTH_ONLY, tmp_path, sample_rate=RATE, block=BLOCK)
    ring = engine.input_ring()
    t0, due_s = 100.0, 100.0 + 40 * PERIOD_S + 17 / RATE
    out = []
    skipped = 0
    for b in range(60):
        if b == 20:
            skipped = 3  # from here on JACK's cycles run 3 periods ahead of the blocks we rendered
        start_time = t0 + (b + skipped) * PERIOD_S
        if b == 1:  # stamped from a block before the jump, as the OSC thread would
            ring.push(round(engine.sample_at(due_s)), Kind.NOTE_ON, engine.midi_map.notes_to, 0, 69, 120, 0.0)
        out.append(engine.process(None, start_time=start_time)[0].copy())
    engine.close()
    audio = np.concatenate(out)
    onset = int(np.flatnonzero(np.abs(audio) > 1e-4)[0])
    assert onset == 40 * BLOCK + 17 - 3 * BLOCK
