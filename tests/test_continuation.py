"""The continuation model: seeded sampling, numba against torch, key / register / density masks, one-line load errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cadenza.engine.errors import ModelError
from cadenza.models.continuation import events
from cadenza.models.continuation.sampler import WEIGHTS, Continuer, key_mask, key_of_control
from cadenza.models.weights import save_weights

# C major, two bars: up the scale and back to the tonic (step, pitch, velocity, duration steps)
C_PHRASE = [(0, 60, 90, 2), (2, 62, 70, 2), (4, 64, 80, 2), (6, 65, 70, 2), (8, 67, 90, 4), (12, 69, 80, 2),
            (14, 71, 70, 2), (16, 72, 90, 4), (20, 67, 80, 4), (24, 64, 80, 4), (28, 60, 90, 4)]


@pytest.fixture(scope="module")
def continuer() -> Continuer:
    return Continuer(device="cpu")


def continue_bars(c: Continuer, bars: int, seed: int, **kw) -> list[tuple[int, int, int, int]]:
    c.prime(C_PHRASE)
    notes = []
    for bar in range(bars):
        notes += [(16 * bar + s, p, v, d) for s, p, v, d in c.continue_bar(16, seed=seed + bar, **kw)]
    return notes


def test_the_same_seed_gives_the_same_notes(continuer):
    first = continue_bars(continuer, 2, seed=5)
    assert first and first == continue_bars(continuer, 2, seed=5)
    onsets = [s for s, *_ in first]
    assert onsets == sorted(onsets) and all(0 <= s < 32 for s in onsets)
    assert all(1 <= d <= events.MAX_DUR and 1 <= v <= 127 for _, _, v, d in first)


def test_a_c_major_phrase_is_continued_in_c_major(continuer):
    c_major = key_mask(0, 0)
    masked = continue_bars(continuer, 4, seed=11, key_mask=c_major)
    assert masked and all(c_major[p % 12] for _, p, _, _ in masked)
    # without the mask, what the model hears alone: most of its notes are in C major too
    free = [p for seed in range(5) for _, p, _, _ in continue_bars(continuer, 4, seed=100 * seed)]
    share = np.mean(c_major[np.array(free) % 12])
    print(f"in C major without the key mask: {share:.3f} of {len(free)} notes")
    assert share >= 0.85


def test_the_numba_path_agrees_with_torch(continuer):
    """The CPU path (numba port) and the CUDA path's code (torch, here on the CPU) hear a phrase to the
    same logits, and the same seeds continue it with the same notes."""
    reference = Continuer(device="cpu", backend="torch")
    assert continuer.backend == "numba"
    for c in (continuer, reference):
        c.prime(C_PHRASE)
    np.testing.assert_allclose(continuer._logits, reference._logits, atol=1e-4)
    assert continue_bars(continuer, 4, seed=21) == continue_bars(reference, 4, seed=21)
    assert continue_bars(continuer, 2, seed=0, temperature=0.0) == continue_bars(reference, 2, seed=0, temperature=0.0)


def test_register_and_density_bound_the_notes(continuer):
    notes = continue_bars(continuer, 2, seed=3, register=(60, 67))
    assert notes and all(60 <= p <= 67 for _, p, _, _ in notes)
    assert continue_bars(continuer, 2, seed=3, density=0.0) == []
    sparse = sum(len(continue_bars(continuer, 2, seed=s, density=0.3)) for s in range(4))
    dense = sum(len(continue_bars(continuer, 2, seed=s, density=3.0)) for s in range(4))
    assert sparse < dense


def test_greedy_needs_no_seed(continuer):
    assert continue_bars(continuer, 1, seed=0, temperature=0.0) == continue_bars(continuer, 1, seed=9,
                                                                                  temperature=0.0)


def test_key_masks_and_the_key_control():
    assert [int(i) for i in np.flatnonzero(key_mask(0, 0))] == [0, 2, 4, 5, 7, 9, 11]
    assert [int(i) for i in np.flatnonzero(key_mask(9, 1))] == [0, 2, 4, 5, 7, 8, 9, 11]  # A minor + G#
    assert key_of_control(0.0) == (0, 0) and key_of_control(21.0) == (9, 1)


def one_line_model_error(path) -> str:
    with pytest.raises(ModelError) as info:
        Continuer(path, device="cpu")
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_corrupt_or_foreign_weights_are_one_line_model_errors(tmp_path):
    assert "not found" in one_line_model_error(tmp_path / "nothing.pt")
    copy = tmp_path / "continuation.pt"
    shutil.copy(WEIGHTS, copy)
    (tmp_path / "continuation.pt.sha256").write_text(
        (WEIGHTS.parent / "continuation.pt.sha256").read_text())
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    copy.write_bytes(bytes(raw))
    assert "sha256" in one_line_model_error(copy)
    foreign = tmp_path / "foreign.pt"
    save_weights({"config": {"hidden": 3}, "state_dict": {}}, foreign)
    assert "not a continuation model" in one_line_model_error(foreign)
    (tmp_path / "foreign.pt.sha256").unlink()
    assert "no recorded sha256" in one_line_model_error(foreign)


# -- the generator node (instruments/generators/continuation.py) -------------------------------------

RATE, BPM = 48000, 120.0
STEP = RATE * 60 // int(BPM) // 4  # samples per sixteenth: 6000


def performer(notes, first_step: int = 16) -> np.ndarray:
    """NOTE_ON / NOTE_OFF events of (step, pitch, velocity, duration) notes, ``first_step`` sixteenths in."""
    from cadenza.engine.events import Kind, make_events

    rows = []
    for s, p, v, d in notes:
        rows += [((first_step + s) * STEP + 40, Kind.NOTE_ON, 0, 0, p, v, 0.0),
                 ((first_step + s + d) * STEP - 40, Kind.NOTE_OFF, 0, 0, p, 0, 0.0)]
    events = make_events(len(rows))
    for i, row in enumerate(sorted(rows)):
        events[i] = row
    return events


def run_node(events, bars: int, **options):
    from cadenza.engine.harness import run
    from cadenza.instruments.generators.continuation import ContinuationGenerator

    frames = bars * 16 * STEP
    controls = {"clock_bpm": np.full(frames, BPM, np.float32),
                "clock_beat": (np.arange(frames) / (4 * STEP)).astype(np.float32),
                "key": np.zeros(frames, np.float32)}  # the chord listener hears C major
    node = ContinuationGenerator("cont", key_from="chords", seed=3, **options)
    return run(node, None, RATE, events=events, controls=controls, frames=frames).events


def test_the_node_continues_a_c_major_phrase_on_the_grid_in_key_after_a_bar_of_silence():
    from cadenza.engine.events import Kind

    heard = performer(C_PHRASE)  # bars 1-2; the last note ends on bar 3's line (step 48)
    out = run_node(heard, bars=8)
    ons = out[out["kind"] == Kind.NOTE_ON]
    assert len(ons) >= 4
    assert ons["time"].min() >= 64 * STEP - 1  # a bar of silence (bar 3), then bar 4's line (±1 sample: float32 clock)
    grid = np.round(ons["time"] / STEP).astype(np.int64) * STEP
    assert np.abs(ons["time"] - grid).max() <= 1  # on sixteenth-grid points (±1 sample: float32 clock)
    assert all(key_mask(0, 0)[ons["a"] % 12])
    again = run_node(heard, bars=8)
    assert np.array_equal(out, again)


def test_the_node_stops_when_the_performer_plays_again():
    from cadenza.engine.events import Kind

    back = performer([(112, 72, 90, 4)])  # the performer comes back at step 128 (bar 8) for 4 steps
    heard = np.sort(np.concatenate([performer(C_PHRASE), back]), order="time")
    out = run_node(heard, bars=14)
    times = out[out["kind"] == Kind.NOTE_ON]["time"]
    assert (times < 128 * STEP).any()  # it was continuing (the grid point at 128 may round a sample early)
    assert not ((times > 128 * STEP) & (times < 160 * STEP - 1)).any()  # quiet while the performer plays
    # silent again after that note (it ends at step 132): the continuation is back at bar 10 (step 160)
    assert (times >= 160 * STEP - 1).any()


def test_in_a_patch_the_engine_routes_notes_to_it_and_it_plays_on_through_the_voice(tmp_path):
    from cadenza.engine.events import Kind
    from cadenza.engine.harness import run

    patch = tmp_path / "continue.toml"
    patch.write_text("""
[clock]
bpm = 120.0
[[node]]
id = "cont"
type = "continue"
seed = 3
notes_to = "piano"
[[node]]
id = "piano"
type = "synth"
""")
    heard = performer(C_PHRASE)
    heard["target"] = 0  # the continue node: the first in the graph's order
    result = run(patch, None, RATE, events=heard, block=128, frames=8 * 16 * STEP)
    out = result.events[(result.events["kind"] == Kind.NOTE_ON) & (result.events["time"] >= 63 * STEP)]
    assert len(out) >= 4 and np.abs(result.audio).max() > 0.0
