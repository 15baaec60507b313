import numpy as np
import pytest

from cadenza.engine.events import Kind, make_events
from tests.helpers import SYNTH_ONLY, engine_from_toml, render_blocks


@pytest.mark.parametrize("block", [64, 128, 256])
def test_note_ons_start_at_their_exact_sample(block):
    eng = engine_from_toml(SYNTH_ONLY, block=block)
    piano = eng.node_index("piano")
    start = 4 * block  # a block boundary past the warm-up
    one = make_events(1)
    one[0] = (start + 17, Kind.NOTE_ON, piano, 0, 60, 100, 0.0)
    eng.schedule(one)
    single = render_blocks(eng, 8)
    eng2 = engine_from_toml(SYNTH_ONLY, block=block)
    ev = make_events(2)
    ev[0] = (start + 17, Kind.NOTE_ON, piano, 0, 60, 100, 0.0)
    ev[1] = (start + 90, Kind.NOTE_ON, piano, 0, 67, 100, 0.0)
    eng2.schedule(ev)
    both = render_blocks(eng2, 8)
    assert np.all(single[:, : start + 17] == 0.0)
    assert single[0, start + 17] != 0.0
    # the second note changes nothing before sample 90 and starts sounding exactly there
    assert np.array_equal(both[:, : start + 90], single[:, : start + 90])
    assert both[0, start + 90] != single[0, start + 90]


def _engine_with_notes(notes, block=128, extra=""):
    eng = engine_from_toml(SYNTH_ONLY + extra, block=block)
    piano = eng.node_index("piano")
    ev = make_events(len(notes))
    for i, (t, kind, a, b, value) in enumerate(notes):
        ev[i] = (t, kind, piano, 0, a, b, value)
    eng.schedule(ev)
    return eng, eng.graph.nodes[piano]


def _dominant_hz(x, sr=48000):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


def test_sixteen_voices_then_oldest_is_stolen():
    notes = [(i * 10, Kind.NOTE_ON, 40 + i, 100, 0.0) for i in range(17)]
    eng, synth = _engine_with_notes(notes)
    render_blocks(eng, 4)
    assert synth.active_voices() == 16
    playing = set(synth.voice_state[:, 1].astype(int))
    assert 40 not in playing and 56 in playing  # the oldest note gave its voice to the 17th


def test_sustain_pedal_holds_released_notes_until_pedal_up():
    sr = 48000
    notes = [(0, Kind.CC, 64, 127, 0.0), (10, Kind.NOTE_ON, 60, 100, 0.0),
             (1000, Kind.NOTE_OFF, 60, 0, 0.0), (sr, Kind.CC, 64, 0, 0.0)]
    eng, synth = _engine_with_notes(notes)
    out = render_blocks(eng, int(1.6 * sr / 128))
    held = np.abs(out[0, int(0.8 * sr): int(0.95 * sr)]).max()
    after = np.abs(out[0, int(1.5 * sr):]).max()
    assert held > 0.01  # still sounding long after note-off: the pedal holds it
    assert after < held * 1e-2


def test_pitch_bend_moves_pitch_by_its_range():
    sr = 48000
    notes = [(0, Kind.PITCH_BEND, 0, 0, 1.0), (0, Kind.NOTE_ON, 69, 100, 0.0)]
    eng, _ = _engine_with_notes(notes, extra="")
    eng.graph.nodes[eng.node_index("piano")].wave = 3  # sine: one clear peak
    out = render_blocks(eng, 64)
    f = _dominant_hz(out[0, 2048: 2048 + 4096 * 1])
    assert abs(1200 * np.log2(f / (440 * 2 ** (2 / 12)))) < 25  # two semitones up (bin 11.7 Hz)


def test_velocity_scales_level():
    loud, _ = _engine_with_notes([(0, Kind.NOTE_ON, 60, 127, 0.0)])
    soft, _ = _engine_with_notes([(0, Kind.NOTE_ON, 60, 30, 0.0)])
    a = np.abs(render_blocks(loud, 20)).max()
    b = np.abs(render_blocks(soft, 20)).max()
    assert a > 3 * b > 0


def test_release_ends_the_note():
    eng, synth = _engine_with_notes([(0, Kind.NOTE_ON, 60, 100, 0.0), (4800, Kind.NOTE_OFF, 60, 0, 0.0)])
    out = render_blocks(eng, 300)
    assert synth.active_voices() == 0
    assert np.abs(out[:, -1000:]).max() < 1e-6  # only the DC blocker's decaying tail (< -120 dB)
