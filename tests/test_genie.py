"""Piano Genie: committed weights, numba/torch agreement, the node in a patch, the CLI, the SoundFont voice."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cadenza.engine.backends.offline import OfflineBackend
from cadenza.engine.cli import UserError, build_engine, main
from cadenza.engine.errors import ModelError
from cadenza.engine.events import EVENT_DTYPE, Kind
from cadenza.engine.node import Context
from cadenza.instruments.generators.genie import DEFAULT_WEIGHTS, GenieNode, load_decoder, scale_mask
from cadenza.models.genie import data
from cadenza.models.genie.model import START, Genie, GenieConfig, load
from cadenza.models.genie.numba_step import NumbaDecoder
from tests.helpers import engine_from_toml

LM_WEIGHTS = DEFAULT_WEIGHTS.with_name("lm_baseline.pt")
SR = 48000


def make_node(**options) -> GenieNode:
    node = GenieNode("genie", **options)
    node.open(Context(SR, 128))
    return node


def play(node: GenieNode, presses, gap_s: float = 0.25) -> list[int]:
    """Press and release each button in turn, ``gap_s`` apart; the pitches chosen."""
    pitches = []
    for i, button in enumerate(presses):
        t = round(i * gap_s * SR)
        pitches.append(node.handle(t, button, 100)[1])
        node.handle(t + round(0.8 * gap_s * SR), button, 0)
    return pitches


# -- weights ------------------------------------------------------------------------------

def test_committed_weights_load_weights_only_and_decode():
    for path, buttons in ((DEFAULT_WEIGHTS, True), (LM_WEIGHTS, False)):
        blob = torch.load(path, map_location="cpu", weights_only=True)
        assert blob["config"]["buttons"] is buttons and blob["meta"]["steps"] > 0
        assert path.stat().st_size < 5_000_000
        model, meta = load(path)
        logits, _ = model.step(START, 1.0, 3 if buttons else None)
        assert logits.shape == (88,) and torch.isfinite(logits).all()
    genie_meta = load(DEFAULT_WEIGHTS)[1]
    assert genie_meta["steps"] == load(LM_WEIGHTS)[1]["steps"]  # the baseline trained as long


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="python -m cadenza.models.genie.train"):
        load_decoder(tmp_path / "nope.pt")
    with pytest.raises(ModelError, match="LM baseline"):
        load_decoder(LM_WEIGHTS)


# -- numba port --------------------------------------------------------------------------

@pytest.mark.parametrize("buttons", [True, False])
def test_numba_step_agrees_with_torch(buttons):
    if buttons:
        model32, _ = load(DEFAULT_WEIGHTS)
    else:
        torch.manual_seed(1)
        model32 = Genie(GenieConfig(buttons=False)).eval()
    model64 = Genie(model32.config).double().eval()
    model64.load_state_dict(model32.state_dict())
    decoder = NumbaDecoder(model32)
    rng = np.random.default_rng(0)
    s32 = s64 = None
    prev = START
    for _ in range(40):
        button, dt = int(rng.integers(0, 8)), float(rng.choice([0.0, 0.05, 0.3, 1.0, 9.0]))
        logits = decoder.step(dt, button).copy()
        ref64, s64 = model64.step(prev, dt, button, s64)
        ref32, s32 = model32.step(prev, dt, button, s32)
        np.testing.assert_allclose(logits, ref64.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 0).numpy(),
                                   torch.softmax(ref32.double(), 0).numpy(), atol=1e-5, rtol=0)
        prev = int(rng.integers(0, 88))
        decoder.prev_key = prev


# -- behaviour ------------------------------------------------------------------------------

def test_ascending_buttons_give_ascending_pitches():
    node = make_node()
    pitches = play(node, list(range(8)))
    ups = sum(b > a for a, b in zip(pitches, pitches[1:]))
    assert ups >= 5 and pitches[-1] > pitches[0], pitches
    node.reset()
    down = play(node, list(range(7, -1, -1)))
    assert sum(b < a for a, b in zip(down, down[1:])) >= 5 and down[-1] < down[0], down


def test_same_seed_same_presses_same_notes():
    presses = [0, 3, 5, 2, 7, 7, 1, 4, 6, 2, 0, 5]
    a = play(make_node(seed=7, temperature=1.0), presses)
    b = play(make_node(seed=7, temperature=1.0), presses)
    assert a == b
    others = [play(make_node(seed=s, temperature=1.0), presses) for s in (8, 9, 10)]
    assert any(o != a for o in others)
    assert play(make_node(), presses) == play(make_node(), presses)  # greedy is deterministic


def test_key_and_range_constraints():
    node = make_node(key="D", scale="major", lowest=50.0, highest=74.0, temperature=1.0)
    allowed = scale_mask("D", "major")
    pitches = play(node, [0, 7, 1, 6, 2, 5, 3, 4] * 3)
    assert all(allowed[p % 12] and 50 <= p <= 74 for p in pitches), pitches


def test_silence_resets_the_phrase():
    presses = [4, 5, 6, 2, 1]
    fresh = play(make_node(), presses)
    node = make_node(reset_after=1.0)
    play(node, [0, 7, 0, 7, 3])
    t = round(10.0 * SR)  # long after the last release
    again = [node.handle(t + round(i * 0.25 * SR), b, 100)[1] for i, b in enumerate(presses)]
    assert again == fresh


def test_bad_button_is_ignored_and_release_matches_press():
    node = make_node()
    assert node.handle(0, 8, 100) == (-1, -1) and node.handle(10, -1, 100) == (-1, -1)
    assert node.ignored == 2
    _, on = node.handle(100, 3, 100)
    assert node.handle(5000, 3, 0) == (on, -1)
    assert node.handle(6000, 3, 0) == (-1, -1)  # a second release sends nothing


def test_node_in_patch_notes_at_press_sample_and_echoed_out():
    engine = build_engine("genie")
    try:
        target = engine.midi_map.buttons_to
        press, release = 4800 + 37, 4800 + 37 + 9000  # mid-block sample offsets
        events = np.array([(press, Kind.BUTTON, target, 0, 2, 100, 0.0),
                           (release, Kind.BUTTON, target, 0, 2, 0, 0.0),
                           (press + 20000, Kind.BUTTON, target, 0, 9, 100, 0.0)], dtype=EVENT_DTYPE)
        audio = OfflineBackend(engine).render(SR, None, events)
        out = engine.outbound.pop_all()
        notes = out[np.isin(out["kind"], (Kind.NOTE_ON, Kind.NOTE_OFF))]
        assert [(int(e["kind"]), int(e["time"])) for e in notes] == [(Kind.NOTE_ON, press), (Kind.NOTE_OFF, release)]
        assert notes[0]["a"] == notes[1]["a"] and notes[0]["b"] == 100
        onset = int(np.argmax(np.abs(audio[0]) > 1e-4))
        assert press <= onset < press + 64  # the synth starts at the press's own sample
    finally:
        engine.close()


def test_quantised_presses_wait_for_the_next_grid_point_and_keep_their_length(tmp_path):
    """Eighths at 120 BPM on the engine clock: a point every 12000 samples. A press 1000 samples
    (21 ms) after a point sounds at once; others wait for the next point, and one released
    before its point sounds there for as long as it was held."""
    engine = engine_from_toml("""
[clock]
bpm = 120.0
[[node]]
id = "genie"
type = "genie"
quantise = "eighth"
notes_to = "piano"
[[node]]
id = "piano"
type = "synth"
[midi]
buttons = { to = "genie", notes = [60, 62, 64, 65, 67, 69, 71, 72] }
""", tmp_path)
    try:
        target = engine.midi_map.buttons_to
        presses = [(13000, 1, 100), (15000, 1, 0), (30000, 2, 100), (31000, 2, 0), (40000, 3, 100), (60000, 3, 0)]
        events = np.array([(t, Kind.BUTTON, target, 0, b, v, 0.0) for t, b, v in presses], dtype=EVENT_DTYPE)
        OfflineBackend(engine).render(2 * SR, None, events)
        out = engine.outbound.pop_all()
        notes = out[np.isin(out["kind"], (Kind.NOTE_ON, Kind.NOTE_OFF))]
        want = [(Kind.NOTE_ON, 13000), (Kind.NOTE_OFF, 15000),  # 21 ms late: meant for the point it followed
                (Kind.NOTE_ON, 36000), (Kind.NOTE_OFF, 37000),  # released before its point: held 1000 samples there
                (Kind.NOTE_ON, 48000), (Kind.NOTE_OFF, 60000)]  # still held at its point: ends at the release
        assert [int(e["kind"]) for e in notes] == [kind for kind, _ in want]
        # the grid's points are the clock's beats in float32 controls: within a sample
        assert np.abs(notes["time"] - np.array([t for _, t in want])).max() <= 1, notes["time"]
    finally:
        engine.close()


# -- the command -------------------------------------------------------------------------

def test_cli_json_and_csv(tmp_path, capsys):
    with_header = tmp_path / "a.csv"
    with_header.write_text("time,button,velocity\n0.0,0,100\n0.2,0,0\n0.25,1,90\n0.5,2,90\n0.75,3,90\n")
    bare = tmp_path / "b.csv"
    bare.write_text("0.0, 0, 100\n0.2, 0, 0\n0.25, 1, 90\n0.5, 2, 90\n0.75, 3, 90\n")
    assert main(["genie", str(with_header), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert [n["button"] for n in notes] == [0, 1, 2, 3] and all(21 <= n["pitch"] <= 108 for n in notes)
    assert main(["genie", str(bare)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "time,button,pitch"
    assert [int(r.split(",")[2]) for r in rows[1:]] == [n["pitch"] for n in notes]


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("0.0,9,100\n")
    assert main(["genie", str(bad)]) == 2
    assert "button 9 is outside 0..7" in capsys.readouterr().err
    assert main(["genie", str(tmp_path / "none.csv")]) == 2
    good = tmp_path / "good.csv"
    good.write_text("0.0,1,100\n")
    assert main(["genie", str(good), "--weights", str(tmp_path / "w.pt")]) == 2
    assert "weights not found" in capsys.readouterr().err
    from cadenza.engine.cli.genie import read_buttons

    with pytest.raises(UserError, match="bad.csv:2"):
        bad.write_text("0.0,1,100\nx,y\n")
        read_buttons(bad)


# -- data ------------------------------------------------------------------------------------

def test_split_is_fixed_and_augmentation_stays_on_the_keyboard():
    assert data.split_of("bach/bwv66.6.mxl") == data.split_of("bach/bwv66.6.mxl")
    splits = [data.split_of(f"bach/piece{i}") for i in range(400)]
    assert 0.7 < splits.count("train") / 400 < 0.9 and "test" in splits and "valid" in splits
    piece = data.Piece("x", np.arange(20) * 0.5, np.array([21, 108] * 10), np.full(20, 80), np.full(20, 0.4))
    aug = data.augment(piece, np.random.default_rng(0))
    assert aug.pitch.min() >= 21 and aug.pitch.max() <= 108 and np.all(np.diff(aug.onset) >= 0)
    assert np.all((aug.velocity >= 1) & (aug.velocity <= 127))


# -- SoundFont voice ---------------------------------------------------------------------------

def _render_note(patch_text: str, tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(patch_text)
    engine = build_engine(path)
    try:
        events = np.array([(4837, Kind.NOTE_ON, 0, 0, 60, 100, 0.0), (30000, Kind.NOTE_OFF, 0, 0, 60, 0, 0.0)],
                          dtype=EVENT_DTYPE)
        return engine, OfflineBackend(engine).render(SR, None, events)
    finally:
        engine.close()


SF_PATCH = """
[[node]]
id = "piano"
type = "soundfont"
soundfont = "{sf}"
"""


def test_soundfont_voice_renders_in_block(tmp_path):
    from cadenza.instruments.voices.soundfont import find_soundfont

    sf = find_soundfont()
    if sf is None:
        pytest.skip("no SoundFont installed (apt install fluid-soundfont-gm)")
    engine, audio = _render_note(SF_PATCH.format(sf=sf), tmp_path)
    assert engine.graph.nodes[0].fallback is None
    onset = int(np.argmax(np.abs(audio[0]) > 1e-4))
    assert 4837 <= onset < 4837 + 64 + 128 and np.abs(audio[:, 6000:20000]).max() > 0.01


def test_soundfont_falls_back_to_the_synth(tmp_path, capsys):
    engine, audio = _render_note(SF_PATCH.format(sf=tmp_path / "missing.sf2"), tmp_path)
    assert "playing the built-in synth instead" in capsys.readouterr().err
    assert engine.graph.nodes[0].fallback is not None and np.abs(audio).max() > 0.01


def test_demo_renders_the_scripted_button_performance(tmp_path):
    import soundfile as sf

    from cadenza.engine.cli.demo import genie_demo, genie_presses

    audio, sr = sf.read(genie_demo(tmp_path / "demo-genie.wav"))
    assert audio.shape[0] / sr > genie_presses()[-1][0] and np.abs(audio).max() > 0.05
