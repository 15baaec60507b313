import numpy as np

from cadenza.engine.clock import Clock
from cadenza.engine.events import ENGINE, Kind


def test_beats_and_bars_at_steady_tempo():
    clock = Clock(48000, bpm=120, beats_per_bar=3)
    for _ in range(375):  # 1 s at 128 frames
        clock.advance(128)
    assert np.isclose(clock.beat, 2.0) and clock.bar == 0
    for _ in range(375):
        clock.advance(128)
    assert clock.bar == 1 and np.isclose(clock.beat_in_bar, 1.0)


def test_tempo_change_inside_a_block_is_continuous():
    clock = Clock(48000, bpm=60)
    beat_out = np.zeros(128, np.float32)
    bpm_out = np.zeros(128, np.float32)
    clock.set_tempo(120, offset=64)
    clock.fill(beat_out, bpm_out)
    step_before = 60 / 60 / 48000
    assert bpm_out[63] == 60 and bpm_out[64] == 120
    assert np.isclose(beat_out[64], 64 * step_before)
    assert np.isclose(beat_out[65] - beat_out[64], 2 * step_before, rtol=1e-3)
    clock.advance(128)
    assert np.isclose(clock.beat, 64 * step_before + 64 * 2 * step_before)
    assert clock.bpm == 120


def test_engine_tempo_event_changes_tempo_while_playing():
    from tests.helpers import SYNTH_ONLY, engine_from_toml

    eng = engine_from_toml(SYNTH_ONLY)
    ring = eng.input_ring()
    ring.push(eng.clock.sample_time + 10, Kind.TEMPO, ENGINE, value=150.0)
    eng.process(None)
    assert eng.clock.bpm == 150.0
