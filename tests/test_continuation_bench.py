"""bench.continuation's band measure: the performer's phrase it writes and the grid it scores against."""

from __future__ import annotations

import numpy as np
import pytest

from bench.band import grid_errors
from bench.continuation import PHRASE, band_inputs
from bench.datasets.band_set import BARS, ClipSpec, Clip, swung
from cadenza.engine.midi import read_midi_file


def clip(kind: str = "steady", swing: float = 0.5) -> Clip:
    """A 120 BPM clip's truth (no audio): sixteenths every 0.125 s, swung by ``swing``; a ramp ending at 8 s."""
    grid = 0.5 * swung(np.arange(BARS * 16 + 1, dtype=np.float64), swing)
    return Clip(ClipSpec("t", kind, 120.0, 0, 0, False, swing=swing), np.zeros(1), grid, [], 8.0 if kind == "ramp" else 0.0)


def test_grid_errors_are_signed_distances_to_the_nearest_sixteenth_after_start():
    onsets = [1.0, 4.51, 5.0 - 0.02, 6.1, 40.0]  # before 4 s, 10 ms late, 20 ms early, nearer 6.125, after the clip
    errors = grid_errors(clip(), onsets, 4)
    assert errors == pytest.approx([0.01, -0.02, -0.025])
    assert grid_errors(clip(), onsets, 4, start=5.5) == pytest.approx([-0.025])
    assert grid_errors(clip("ramp"), [8.6, 9.01], 4) == pytest.approx([0.01])  # from the second beat after the ramp: 9 s


def test_the_phrase_presses_genie_s_buttons_on_the_clip_s_swung_eighths_from_a_bar_line(tmp_path):
    c = clip("swing", 0.65)
    patch, phrase, end = band_inputs(c, tmp_path)
    assert "swing = 0.65" in patch.read_text()
    messages = read_midi_file(phrase)
    on = np.array([t for t, m in messages if m[0] == 0x90 and m[2] > 0])
    buttons = (60, 62, 64, 65, 67, 69, 71, 72)
    assert [m[1] for _, m in messages if m[0] == 0x90 and m[2] > 0] == [buttons[b] for b in PHRASE]
    np.testing.assert_allclose(on, c.grid_s[32: 32 + 2 * len(PHRASE): 2], atol=1e-3)  # from the bar line at 4 s, on eighths
    assert on[1] - on[0] == pytest.approx(0.65 * 0.5, abs=1e-3)  # swung: the off-beat eighth at 0.65 of the beat
    assert end == pytest.approx(on[-1] + 0.8 * (c.grid_s[64] - c.grid_s[62]), abs=1e-3)
