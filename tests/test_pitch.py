"""The streaming pitch listener: accuracy on known signals, octave traps, voicing, graph and CLI paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cadenza.engine.cli import main
from cadenza.engine.engine import Engine
from cadenza.engine.events import Kind
from cadenza.engine.patch import parse_patch
from cadenza.engine.dsp.pitch import DELAY_S, PitchTracker
from cadenza.models.pitch.model import numba_weights

SR = 48000


def learned(sr, **kwargs):
    """The listener as the node and ``cadenza pitch`` run it: with the learned head."""
    return PitchTracker(sr, head=numba_weights(), **kwargs)


def harmonic(f0, seconds=0.6, sr=SR, amps=None, level=0.3):
    """A harmonic tone at ``f0`` Hz (scalar or per-sample array) with harmonic amplitudes ``amps``."""
    n = int(seconds * sr)
    f = np.broadcast_to(np.asarray(f0, float), (n,))
    phase = 2 * np.pi * np.cumsum(f) / sr
    amps = [1.0 / h for h in range(1, 9)] if amps is None else amps
    x = sum(a * np.sin(h * phase) for h, a in enumerate(amps, 1) if np.all(h * f < sr / 2))
    return (level * x / np.max(np.abs(x))).astype(np.float32)


def steady(frames, start=0.15):
    keep = frames.time_s > start
    return frames.f0_hz[keep], frames.voicing[keep]


@pytest.mark.parametrize("f0", [62.0, 98.0, 220.0, 523.25, 1046.5, 1480.0])
@pytest.mark.parametrize("sr", [44100, 48000])
def test_known_pitch_within_10_cents(f0, sr):
    frames = learned(sr).process_file(harmonic(f0, sr=sr))
    est, voicing = steady(frames)
    cents = 1200 * np.log2(est / f0)
    assert np.all(voicing >= 0.5)
    assert np.max(np.abs(cents)) < 10.0


def test_weak_fundamental_stays_at_the_right_octave():
    # fundamental 40 dB down, even harmonics strong: the classic octave-up trap
    amps = [0.01, 1.0, 0.15, 0.8, 0.1, 0.5, 0.05, 0.3]
    for f0 in (110.0, 196.0, 330.0):
        est, voicing = steady(learned(SR).process_file(harmonic(f0, amps=amps)))
        cents = 1200 * np.log2(est[voicing >= 0.5] / f0)
        assert np.mean(np.abs(cents) < 50) > 0.98, f0


@pytest.mark.parametrize("sr", [44100, 48000])
def test_a_pure_tone_is_read_at_its_own_pitch_from_its_first_voiced_hop(sr):
    # a sine dips at every multiple of its period; the head never saw one in training and alone read
    # a 440 Hz sine as 220 Hz (and 880 Hz as 293 Hz) on nearly every hop
    for f0 in (110.0, 330.0, 440.0, 880.0, 1200.0):
        for lead_s in (0.0, 0.1):
            t = np.arange(int(0.5 * sr)) / sr
            x = np.concatenate([np.zeros(int(lead_s * sr)), 0.5 * np.sin(2 * np.pi * f0 * t)]).astype(np.float32)
            frames = learned(sr).process_file(x)
            voiced = frames.voicing >= 0.5
            assert np.mean(voiced[frames.time_s > lead_s + 0.05]) > 0.98, (f0, lead_s)
            cents = np.abs(1200 * np.log2(frames.f0_hz[voiced] / f0))
            settled = frames.time_s[voiced] > frames.time_s[voiced][0] + 0.02
            assert np.all(cents < 100.0), (f0, lead_s, frames.f0_hz[voiced][:8])  # no octave, not at the onset either
            assert np.all(cents[settled] < 10.0), (f0, lead_s)


def test_vibrato_is_followed():
    t = np.arange(int(0.8 * SR)) / SR
    f = 300.0 * 2 ** (0.5 / 12 * np.sin(2 * np.pi * 5.5 * t))
    frames = learned(SR).process_file(harmonic(f, seconds=0.8))
    truth = np.interp(frames.time_s, t, f)
    keep = frames.time_s > 0.1
    assert np.max(np.abs(1200 * np.log2(frames.f0_hz[keep] / truth[keep]))) < 25.0


def test_silence_and_noise_are_unvoiced_and_never_nan():
    rng = np.random.default_rng(1)
    for x in (np.zeros(SR, np.float32), (0.2 * rng.standard_normal(SR)).astype(np.float32),
              (1e-7 * rng.standard_normal(SR)).astype(np.float32)):
        frames = learned(SR).process_file(x)
        assert np.mean(frames.voiced) < 0.02
        assert np.all(np.isfinite(np.stack(frames)))
    frames = learned(SR).process_file(np.full(4800, np.nan, np.float32))
    assert np.all(np.isfinite(np.stack(frames)))


def test_loudness_tracks_level():
    quiet = learned(SR).process_file(harmonic(440.0, level=0.01)).loudness_db[-1]
    loud = learned(SR).process_file(harmonic(440.0, level=0.1)).loudness_db[-1]
    assert loud - quiet == pytest.approx(20.0, abs=0.5)


def test_streaming_blocks_agree_exactly():
    x = harmonic(200.0, seconds=0.5) + harmonic(310.0, seconds=0.5, level=0.05)
    one = learned(SR).process_file(x, block=len(x))
    rng = np.random.default_rng(0)
    tracker = learned(SR)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 300))
        parts.append(tracker.process(x[i:i + n]))
        i += n
    many = [np.concatenate(col) for col in zip(*parts)]
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


PATCH = """
[audio]
inputs = 1
block = {block}
[[node]]
id = "pitch"
type = "pitch"
input = ["adc"]
events_hz = 100.0
midi = true
learned = true
"""


@pytest.mark.parametrize("block", [64, 128])
def test_node_in_graph_matches_file_path_and_emits_events(block):
    x = np.concatenate([np.zeros(4800, np.float32), harmonic(220.0, seconds=0.4), np.zeros(9600, np.float32)])
    engine = Engine(parse_patch(PATCH.format(block=block), "t.toml"), SR, block)
    f0_ctl = []
    for i in range(0, len(x) - block + 1, block):
        engine.process(x[None, i:i + block])
        f0_ctl.append(engine.graph.controls["pitch.f0_hz"].copy())
    f0_ctl = np.concatenate(f0_ctl)
    tracker = learned(SR)
    frames = tracker.process_file(x[:len(f0_ctl)])
    # the control at each hop's emission sample equals the file path's row
    emitted = np.round((frames.time_s + DELAY_S) * SR).astype(int) - 1
    np.testing.assert_array_equal(f0_ctl[emitted], np.where(frames.voiced, frames.f0_hz, 0.0).astype(np.float32))
    events = engine.outbound.pop_all()
    kinds = events["kind"]
    assert np.count_nonzero(kinds == Kind.NOTE_ON) == 1
    assert np.count_nonzero(kinds == Kind.NOTE_OFF) == 1
    assert events["a"][kinds == Kind.NOTE_ON][0] == 57  # A3
    pitch = events[kinds == Kind.PITCH]
    assert abs(len(pitch) - len(f0_ctl) / SR * 100) <= 1  # 100 per second
    assert np.count_nonzero(kinds == Kind.LOUDNESS) == len(pitch)
    voiced = pitch[pitch["a"] == 1]
    assert np.all(np.abs(1200 * np.log2(voiced["value"] / 220.0)) < 10)


def test_cli_json_rows(tmp_path, capsys):
    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(path, harmonic(330.0, seconds=0.5), SR)
    assert main(["pitch", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["delay_s"] == DELAY_S
    t = np.array(out["time_s"])
    assert t[0] >= 0.0 and np.allclose(np.diff(t), out["hop_s"])
    f0 = np.array(out["f0_hz"])[t > 0.1]
    assert np.all(np.abs(1200 * np.log2(f0 / 330.0)) < 10)
    assert main(["pitch", str(tmp_path / "missing.wav")]) == 2


def test_pitch_to_midi_hysteresis_holds_one_note_through_vibrato():
    # ±60 cent vibrato crosses the half step but not half a step + 0.3 semitones of hysteresis
    t = np.arange(int(0.8 * SR)) / SR
    f = 220.0 * 2 ** (0.6 / 12 * np.sin(2 * np.pi * 5.0 * t))
    x = np.concatenate([np.zeros(2400, np.float32), harmonic(f, seconds=0.8), np.zeros(4800, np.float32)])
    engine = Engine(parse_patch(PATCH.format(block=128), "t.toml"), SR, 128)
    for i in range(0, len(x) - 127, 128):
        engine.process(x[None, i:i + 128])
    events = engine.outbound.pop_all()
    kinds = events["kind"]
    assert np.count_nonzero(kinds == Kind.NOTE_ON) == 1
    assert np.count_nonzero(kinds == Kind.NOTE_OFF) == 1
    bends = events["value"][kinds == Kind.PITCH_BEND] * 2.0  # semitones (bend_range 2)
    assert 0.5 < bends.max() < 0.7 and -0.7 < bends.min() < -0.5


def test_the_head_kernel_agrees_with_torch():
    import torch

    from cadenza.engine.dsp import pitch_kernels as K
    from cadenza.models.pitch.model import PitchHead, to_numba

    torch.manual_seed(0)
    net = PitchHead(16).eval()
    x = torch.rand(1, 40, K.N_INPUTS)
    with torch.no_grad():
        ref, _ = net(x)
    proj, h = np.zeros(16, np.float32), np.zeros(16, np.float32)
    gi, gh, logits = np.zeros(48, np.float32), np.zeros(48, np.float32), np.zeros(1 + K.N_BINS, np.float32)
    for t in range(x.shape[1]):
        K.head_step(x[0, t].numpy(), *to_numba(net), proj, h, gi, gh, logits)
        np.testing.assert_allclose(logits, ref[0, t].numpy(), atol=1e-4)


def test_the_live_head_reads_the_inputs_it_was_trained_on():
    rng = np.random.default_rng(3)
    x = harmonic(140.0, seconds=0.5) + (0.05 * rng.standard_normal(SR // 2)).astype(np.float32)
    trained_on, t_train = PitchTracker(SR, features=True).head_features(x)  # as models/pitch/data.py
    live, t_live = learned(SR).head_features(x)
    np.testing.assert_array_equal(trained_on, live)
    np.testing.assert_array_equal(t_train, t_live)


def test_a_missing_or_broken_head_is_one_clear_error(tmp_path):
    from cadenza.engine.errors import ModelError
    from cadenza.models.pitch.model import load

    with pytest.raises(ModelError, match="head.pt: pitch-head weights not found") as missing:
        load(tmp_path / "head.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="bad.pt") as broken:
        load(tmp_path / "bad.pt")
    assert "\n" not in str(missing.value) + str(broken.value)


def test_the_head_needs_its_range_and_the_rules_take_any():
    with pytest.raises(ValueError, match="covers 55..1600 Hz"):
        learned(SR, fmin=40.0)
    frames = PitchTracker(SR, fmin=40.0).process_file(harmonic(45.0))
    assert abs(1200 * np.log2(np.median(steady(frames)[0]) / 45.0)) < 10.0


def test_the_head_holds_a_low_voice_in_noise_where_the_rules_lose_it():
    rng = np.random.default_rng(11)
    x = harmonic(98.0, seconds=1.5)
    spectrum = np.fft.rfft(rng.standard_normal(x.shape[0]))
    noise = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(spectrum.shape[0]), 1)), x.shape[0])  # pink
    x = (x + noise * np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2) / 10 ** (5.0 / 10))).astype(np.float32)  # 5 dB SNR

    def within_50_cents(frames):
        est = frames.f0_hz[frames.time_s > 0.2]
        return np.mean(np.abs(1200 * np.log2(est / 98.0)) < 50)

    head, rules = within_50_cents(learned(SR).process_file(x)), within_50_cents(PitchTracker(SR).process_file(x))
    assert head > 0.95 and head > rules + 0.1, (head, rules)
