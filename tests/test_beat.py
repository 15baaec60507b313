"""The streaming beat tracker: clicks, tempo changes, downbeats, silence, determinism, file vs engine paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cadenza.engine.backends.offline import OfflineBackend
from cadenza.engine.cli import main as cadenza
from cadenza.engine.events import Kind
from cadenza.engine.cli.beats import track
from tests.helpers import engine_from_toml

SR = 48000


def click_track(segments: list[tuple[float, float]], seconds: float, start: float = 0.25,
                bar: int = 1, accent_db: float = 0.0):
    """Clicks (1 kHz, 4 ms decay) at ``(from_s, bpm)`` tempo segments; returns audio and click times.

    With ``bar`` > 1, every ``bar``-th click (the first included) is ``accent_db`` louder than the others.
    """
    x = np.zeros(int(seconds * SR), np.float32)
    n = np.arange(int(0.03 * SR))
    click = 0.5 * np.sin(2 * np.pi * 1000 * n / SR) * np.exp(-n / (0.004 * SR))
    quiet = 10 ** (-accent_db / 20)
    times, t = [], start
    while t < seconds - 0.05:
        i = int(round(t * SR))
        seg = x[i: i + len(n)]
        seg += click[: len(seg)] * (1.0 if len(times) % bar == 0 else quiet)
        times.append(t)
        bpm = [b for s, b in segments if s <= t + 1e-9][-1]
        t += 60.0 / bpm
    return x, np.array(times)


def nearest_error(beats: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return beats - ref[np.argmin(np.abs(beats[:, None] - ref[None, :]), axis=1)]


@pytest.fixture(scope="module")
def clicks120():
    return click_track([(0.0, 120.0)], 20.0)


def test_click_track_120_bpm_beats_within_10_ms(clicks120):
    x, ref = clicks120
    result = track(x, SR)
    late = result.beats[result.beats > 4.0]
    assert len(late) == pytest.approx(np.sum(ref > 4.0), abs=1)
    assert np.max(np.abs(nearest_error(late, ref))) <= 0.010
    # the spacing of the beats, not the posterior's tempo, which reads slow on sharp onsets (117.7 here)
    assert result.bpm[-1] == pytest.approx(120.0, rel=0.002)


def test_predicted_beats_come_at_least_one_block_ahead(clicks120):
    x, ref = clicks120
    result = track(x, SR, block=128)
    assert np.all(result.predicted - result.issued >= 128 / SR - 1e-9)
    late = result.predicted[result.issued > 4.0]
    assert len(late) >= 30
    assert np.median(np.abs(nearest_error(late, ref))) <= 0.010


def test_abrupt_tempo_change_is_followed():
    x, ref = click_track([(0.0, 100.0), (10.0, 135.0)], 24.0)
    result = track(x, SR)
    after = result.beats[result.beats > 15.0]
    assert len(after) >= 15
    assert np.max(np.abs(nearest_error(after, ref))) <= 0.035
    assert 60.0 / np.median(np.diff(after)) == pytest.approx(135.0, rel=0.03)
    assert result.bpm[-1] == pytest.approx(135.0, rel=0.005)


def test_silence_gives_no_beats():
    result = track(np.zeros(10 * SR, np.float32), SR)
    assert len(result.beats) == 0 and len(result.predicted) == 0 and len(result.downbeats) == 0
    assert np.all(result.confidence == 0.0)


@pytest.fixture(scope="module")
def accented120():
    """120 BPM clicks, 4 to the bar, the first of each bar 12 dB louder."""
    return click_track([(0.0, 120.0)], 24.0, bar=4, accent_db=12.0)


def test_accented_downbeats_are_found(accented120):
    x, ref = accented120
    result = track(x, SR)
    bars = ref[::4]
    late = result.downbeats[result.downbeats > 8.0]
    assert len(late) == pytest.approx(np.sum(bars > 8.0), abs=1)
    assert np.max(np.abs(nearest_error(late, bars))) <= 0.010  # every downbeat on an accented click
    assert np.all(result.beats_per_bar[-3:] == 4)
    assert set(np.round(result.downbeats, 6)) <= set(np.round(result.beats, 6))  # a downbeat is a beat


def test_three_four_bars_are_told_from_four():
    x, ref = click_track([(0.0, 132.0)], 24.0, bar=3, accent_db=12.0)
    result = track(x, SR)
    late = result.downbeats[result.downbeats > 8.0]
    assert len(late) >= 10 and np.all(result.beats_per_bar[-3:] == 3)
    assert np.max(np.abs(nearest_error(late, ref[::3]))) <= 0.010


def test_bar_phase_rises_through_the_bar(accented120):
    from cadenza.engine import harness
    from cadenza.instruments.listeners.beat import BeatTracker

    x, ref = accented120
    result = harness.run(BeatTracker("beat"), x, SR)
    bar_phase = result.controls["bar_phase"]
    bars = ref[::4]
    for t in bars[(bars > 10.0) & (bars < 22.0)]:
        mid_bar = int((t + 1.25) * SR)  # two and a half beats after the downbeat
        assert bar_phase[mid_bar] == pytest.approx(0.625, abs=0.02)
        just_before = int((t - 0.02) * SR)
        assert bar_phase[just_before] > 0.97
    assert bar_phase.min() >= 0.0 and bar_phase.max() < 1.0
    silent = harness.run(BeatTracker("beat"), np.zeros(5 * SR, np.float32), SR)
    assert np.all(silent.controls["bar_phase"] == 0.0)


def test_beats_and_downbeats_do_not_depend_on_the_block_size(accented120):
    x, _ = accented120
    at128 = track(x, SR, block=128)
    assert len(at128.downbeats) > 5
    for block in (64, 256):
        other = track(x, SR, block=block)
        assert np.array_equal(other.beats, at128.beats) and np.array_equal(other.downbeats, at128.downbeats)


def test_a_fixed_bar_length_is_kept(accented120):
    x, _ = accented120
    result = track(x, SR, beats_per_bar=2)
    assert len(result.downbeats) > 10 and np.all(result.beats_per_bar == 2)
    with pytest.raises(ValueError, match="beats_per_bar"):
        track(x[:SR], SR, beats_per_bar=1)


def test_same_audio_same_beats(accented120):
    x = accented120[0] + 0.01 * np.random.default_rng(3).standard_normal(accented120[0].shape).astype(np.float32)
    a, b = track(x, SR), track(x, SR)
    assert np.array_equal(a.beats, b.beats) and np.array_equal(a.predicted, b.predicted)
    assert len(a.downbeats) > 5 and np.array_equal(a.downbeats, b.downbeats)
    assert np.array_equal(a.bpm, b.bpm)


def test_downbeats_go_out_over_osc():
    import socket

    from pythonosc.osc_message import OscMessage

    from cadenza.engine.control.osc import OscOut
    from cadenza.engine.events import make_events

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(1.0)
    out = OscOut([sock.getsockname()])
    ev = make_events(1)
    ev[0] = (200, Kind.DOWNBEAT, 3, 0, 12, 0, 4.0)
    for data in out.messages(ev[0], "beat"):
        out.send(data)
    got = dict((m.address, list(m.params)) for m in (OscMessage(sock.recv(65536)) for _ in range(2)))
    out.close()
    sock.close()
    assert got == {"/cadenza/out/beat/downbeat": [12, 4], "/cadenza/downbeat": [12]}


PATCH = """
[patch]
description = "beat listener on the input; the clock follows it"
[audio]
inputs = 1
[clock]
bpm = 90.0
follow = "beat"
[[node]]
id = "beat"
type = "beat"
input = "adc"
"""


def test_file_tool_and_engine_agree_exactly(tmp_path, capsys, accented120):
    from cadenza.engine.audio_io import write_wav

    x, _ = accented120
    wav = tmp_path / "clicks.wav"
    write_wav(wav, x[None, :], SR)
    assert cadenza(["beats", str(wav), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)

    from cadenza.engine.audio_io import read_audio

    audio = read_audio(wav, SR)  # the same 24-bit samples the tool read
    engine = engine_from_toml(PATCH, tmp_path, sample_rate=SR, block=128)
    try:
        OfflineBackend(engine).render(audio.shape[1], audio)
        events = engine.outbound.pop_all()
        assert engine.clock.bpm == pytest.approx(120.0, rel=0.02)  # [clock] follow = "beat"
    finally:
        engine.close()
    beats = events["time"][events["kind"] == Kind.BEAT] / SR
    assert len(beats) > 30
    assert np.round(beats, 4).tolist() == printed["beats_s"]
    pred = events[events["kind"] == Kind.BEAT_PREDICTION]
    assert np.round(pred["time"] / SR + pred["value"], 4).tolist() == printed["predicted_s"]
    down = events[events["kind"] == Kind.DOWNBEAT]
    assert len(down) > 5
    assert np.round(down["time"] / SR, 4).tolist() == printed["downbeats_s"]
    assert down["value"].astype(int).tolist() == printed["beats_per_bar"]


def test_beats_tool_rejects_a_missing_file(tmp_path, capsys):
    assert cadenza(["beats", str(tmp_path / "nope.wav")]) == 2
    assert "cannot read audio" in capsys.readouterr().err


def test_numba_onset_network_agrees_with_torch(tmp_path):
    import torch

    from cadenza.engine.dsp import onset as bk
    from cadenza.engine.dsp.onset import N_GROUPS
    from cadenza.instruments.listeners.beat import load_onset_net
    from cadenza.models.beat.train import OnsetNet
    from cadenza.models.weights import save_weights

    torch.manual_seed(0)
    net = OnsetNet(hidden=12).double()
    path = tmp_path / "net.pt"
    save_weights(net.state_dict(), path)
    w = load_onset_net(path)
    x = np.abs(np.random.default_rng(1).standard_normal((50, N_GROUPS)))
    with torch.no_grad():
        ref = torch.sigmoid(net(torch.from_numpy(x)[None]))[0].numpy()  # (frames, 2): beat, downbeat
    h, gi, gh = np.zeros(12), np.zeros(36), np.zeros(36)
    got = []
    for k in range(len(x)):
        beat = bk.gru_step(x[k], h, gi, gh, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], w["w_out"], w["b_out"])
        got.append((beat, bk.readout(h, w["w_down"], w["b_down"])))
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_a_read_out_of_the_wrong_size_is_refused(tmp_path):
    import torch

    from cadenza.engine.errors import ModelError
    from cadenza.instruments.listeners.beat import load_onset_net
    from cadenza.models.beat.train import OnsetNet
    from cadenza.models.weights import save_weights

    sd = OnsetNet(hidden=12).state_dict()
    sd["out.weight"] = torch.zeros(2, 13)
    path = tmp_path / "net.pt"
    save_weights(sd, path)
    with pytest.raises(ModelError, match="allowed"):
        load_onset_net(path)
    sd["out.weight"], sd["out.bias"] = torch.zeros(1, 12), torch.zeros(1)  # beats only: loads, no downbeat head
    save_weights(sd, path)
    assert load_onset_net(path)["w_down"].shape == (0,)


def test_onset_fft_is_numpys_rfft():
    from cadenza.engine.dsp.onset import OnsetFrontEnd, rfft_mag

    f = OnsetFrontEnd(44100.0)
    x = np.random.default_rng(3).standard_normal(f.win)
    rfft_mag(x, f.spec, f.mag)
    np.testing.assert_allclose(f.mag, np.abs(np.fft.rfft(x)), rtol=0, atol=1e-9)
