"""engine.harness.run: one node or a whole patch over arrays, the same as the engine plays them."""

from __future__ import annotations

import numpy as np

from cadenza.engine import harness
from cadenza.engine.backends.offline import OfflineBackend
from cadenza.engine.engine import Engine
from cadenza.engine.events import Kind, make_events
from cadenza.engine.patch import parse_patch
from cadenza.instruments.voices.synth import PolySynth
from tests.helpers import SYNTH_ONLY


def _notes(target: int = 0) -> np.ndarray:
    ev = make_events(2)
    ev[0] = (1000, Kind.NOTE_ON, target, 0, 60, 100, 0.0)
    ev[1] = (9000, Kind.NOTE_OFF, target, 0, 60, 0, 0.0)
    return ev


def test_a_node_hears_events_at_their_offsets_and_streams_like_one_run():
    whole = harness.run(PolySynth("piano"), None, 48000, _notes(), frames=12000)
    assert whole.audio.shape == (2, 12000) and len(whole.block_us) == -(-12000 // 128)
    assert np.all(whole.audio[:, :1000] == 0.0) and np.abs(whole.audio[:, 1000:1200]).max() > 0.0
    runner = harness.Runner(PolySynth("piano"), 48000, 128)
    parts = [runner.process(None, _notes(), frames=128 * 40).audio,
             runner.process(None, _notes()[1:], frames=12000 - 128 * 40).audio]
    assert np.array_equal(np.concatenate(parts, axis=1), whole.audio)


def test_a_patch_runs_through_the_offline_backend(tmp_path):
    patch = parse_patch(SYNTH_ONLY, tmp_path / "p.toml")
    got = harness.run(patch, None, 48000, _notes(), frames=12000)
    engine = Engine(patch, 48000, 128)
    try:
        want = OfflineBackend(engine).render(12000, None, _notes())
    finally:
        engine.close()
    assert np.array_equal(got.audio, want)
    assert got.controls["clock.bpm"].shape == (12000,)
