import numpy as np

from cadenza.engine import harness
from cadenza.engine.events import BROADCAST, Kind, make_events
from cadenza.engine.safety import Safety
from tests.helpers import SYNTH_ONLY, engine_from_toml, render_blocks


def _run_safety(signal: np.ndarray, block=128) -> np.ndarray:
    return harness.run(Safety("safety"), signal, 48000, block=block).audio


def test_nan_inf_and_plus_40_db_come_out_finite_and_under_the_ceiling():
    sr, n = 48000, 48000
    t = np.arange(n) / sr
    x = np.tile(np.sin(2 * np.pi * 220 * t) * 100.0, (2, 1)).astype(np.float32)  # +40 dBFS
    x[0, 1000:1010] = np.nan
    x[1, 2000] = np.inf
    x[0, 3000] = -np.inf
    y = _run_safety(x)
    ceiling = 10 ** (-1.0 / 20)
    assert np.all(np.isfinite(y))
    assert np.abs(y).max() <= ceiling + 1e-6
    assert np.abs(y[:, sr // 2:]).max() > 0.5 * ceiling  # limited, not muted


def test_dc_offset_is_removed():
    x = np.full((2, 48000), 0.3, np.float32)
    y = _run_safety(x)
    assert np.abs(y[:, -4800:]).max() < 1e-3


def test_quiet_audio_passes_unchanged_apart_from_dc_blocking():
    sr = 48000
    t = np.arange(sr) / sr
    x = np.tile(0.1 * np.sin(2 * np.pi * 1000 * t), (2, 1)).astype(np.float32)
    y = _run_safety(x)
    assert np.allclose(y[:, 4800:], x[:, 4800:], atol=2e-3)


def _ringing_engine():
    eng = engine_from_toml(SYNTH_ONLY.replace('attack = 0.001', 'attack = 0.001\nrelease = 8.0\nsustain = 1.0'))
    ev = make_events(1)
    ev[0] = (0, Kind.NOTE_ON, eng.node_index("piano"), 0, 60, 120, 0.0)
    eng.schedule(ev)
    render_blocks(eng, 40)
    return eng


def test_panic_event_cuts_notes_and_tails():
    eng = _ringing_engine()
    ring = eng.input_ring()
    eng.panic(ring)
    render_blocks(eng, 2)
    assert np.abs(render_blocks(eng, 10)).max() < 1e-6


def test_panic_from_midi_cc_120_and_123():
    for cc in (120, 123):
        eng = _ringing_engine()
        events = list(eng.midi_map.events(0xB3, cc, 0))
        assert events and events[0][0] == Kind.PANIC and events[0][1] == BROADCAST
        ring = eng.input_ring()
        ring.push(eng.clock.sample_time, *events[0])
        render_blocks(eng, 2)
        assert np.abs(render_blocks(eng, 10)).max() < 1e-6
