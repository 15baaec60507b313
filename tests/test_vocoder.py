"""Channel vocoder, neural vocoder and harmonizer: behaviour on real signals, through real nodes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cadenza.engine.audio_io import write_wav
from cadenza.engine.backends.offline import OfflineBackend
from cadenza.engine.engine import Engine
from cadenza.engine import harness
from cadenza.engine.events import EVENT_DTYPE, Kind
from cadenza.engine.midi import midi_to_events
from cadenza.engine.patch import load_patch
from cadenza.instruments.voices.harmonizer import WEIGHTS, Harmonizer
from cadenza.engine.dsp.pitch import PitchTracker
from cadenza.instruments.voices.vocoder import ChannelVocoder
from cadenza.models.vocoder import data
from cadenza.models.vocoder import features as F
from cadenza.models.vocoder import model as M

SR = 48000


def run(node, inputs: dict, sr: int = SR, block: int = 128, notes=()) -> np.ndarray:
    """Stream whole signals through ``node`` block by block; returns its output (2, n)."""
    n = next(iter(inputs.values())).shape[-1] // block * block
    events = np.zeros(len(notes), EVENT_DTYPE)
    for i, note in enumerate(notes):
        events[i] = (0, Kind.NOTE_ON, 0, 0, note, 100, 0.0)
    return harness.run(node, {p: x[:, :n] for p, x in inputs.items()}, sr, events, block).audio


def vowel(f0: float, seconds: float, sr: int = SR) -> np.ndarray:
    """A sustained 'ah'-like vowel: harmonics of f0 shaped by formants at 700, 1200 and 2600 Hz."""
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    for k in range(1, int(8000 / f0)):
        f = k * f0
        gain = sum(a / (1 + ((f - fc) / bw) ** 2) for fc, bw, a in ((700, 130, 1.0), (1200, 150, 0.6), (2600, 250, 0.25)))
        x += gain * np.sin(2 * np.pi * f * t + k)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def band_db(x: np.ndarray, edges: np.ndarray, sr: int = SR) -> np.ndarray:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    return np.array([10 * np.log10(spec[(freqs >= lo) & (freqs < hi)].sum() + 1e-12)
                     for lo, hi in zip(edges[:-1], edges[1:])])


def median_f0(x: np.ndarray, sr: int = SR) -> float:
    frames = PitchTracker(sr).process_file(x)
    return float(np.median(frames.f0_hz[frames.voiced]))


def cents(a: float, b: float) -> float:
    return abs(1200 * np.log2(a / b))


# -- channel vocoder -------------------------------------------------------------------------------

def test_vocoded_vowel_has_carrier_pitch_and_voice_envelope():
    voice = vowel(150.0, 1.0)
    out = run(ChannelVocoder("v", bands=24, carrier="saw", carrier_hz=110.0), {"modulator": voice[None],
              "carrier": np.zeros((2, voice.size))})[0]
    steady = out[SR // 4:]
    assert cents(median_f0(out), 110.0) < 30  # the carrier's pitch, not the voice's 150 Hz
    edges = np.geomspace(300, 6000, 13)
    corr = np.corrcoef(band_db(voice[SR // 4:], edges), band_db(steady, edges))[0, 1]
    assert corr > 0.8


def test_formant_shift_moves_the_envelope_up():
    voice = vowel(150.0, 0.6)
    centroid = []
    for shift in (0.0, 7.0):
        out = run(ChannelVocoder("v", carrier="noise", formant=shift), {"modulator": voice[None],
                  "carrier": np.zeros((2, voice.size))})[0, SR // 4:]
        spec = np.abs(np.fft.rfft(out)) ** 2
        freqs = np.fft.rfftfreq(out.size, 1 / SR)
        centroid.append((spec * freqs).sum() / spec.sum())
    assert centroid[1] > 1.25 * centroid[0]


def test_channel_vocoder_silence_in_silence_out():
    carrier = np.tile(np.sign(np.sin(2 * np.pi * 220 * np.arange(SR // 2) / SR)).astype(np.float32), (2, 1))
    out = run(ChannelVocoder("v"), {"modulator": np.zeros((1, SR // 2)), "carrier": carrier})
    assert np.abs(out).max() < 1e-6


def test_unvoiced_sibilant_passes_through_without_a_carrier():
    rng = np.random.default_rng(0)
    hiss = np.convolve(rng.standard_normal(SR // 2), [1, -1], "same").astype(np.float32) * 0.1  # an "sss"
    out = run(ChannelVocoder("v"), {"modulator": hiss[None], "carrier": np.zeros((2, hiss.size))})
    assert np.sqrt(np.mean(out[0, SR // 8:] ** 2)) > 0.1 * np.sqrt(np.mean(hiss ** 2))


# -- neural vocoder --------------------------------------------------------------------------------

def test_weights_load_with_weights_only_and_numba_port_agrees():
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    net = M.VocoderNet()
    net.load_state_dict(state)
    mel = torch.randn(1, 30, 80) - 6.0
    f0 = torch.linspace(120, 300, 30)[None]
    voi = torch.rand(1, 30)
    with torch.no_grad():
        amp, env, noise, _ = net(mel, f0, voi)
    w = M.numba_weights(net)
    h, proj = np.zeros(M.HIDDEN, np.float32), np.zeros(M.HIDDEN, np.float32)
    gates, y = np.zeros((2, 3 * M.HIDDEN), np.float32), np.zeros(M.N_OUT, np.float32)
    a, e, nz = np.zeros(1, np.float32), np.zeros(80, np.float32), np.zeros(M.N_NOISE, np.float32)
    for t in range(30):
        M.gru_step(mel[0, t].numpy(), float(f0[0, t]), float(voi[0, t]), w, h, proj, gates, y)
        M.decode_outputs(y, mel[0, t].numpy(), a, e, nz)
    np.testing.assert_allclose(a[0], amp[0, -1].item(), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(e, env[0, -1].numpy(), atol=1e-3)
    np.testing.assert_allclose(nz, noise[0, -1].numpy(), rtol=1e-3, atol=1e-6)
    weights = np.zeros(M.N_HARMONICS)
    M.envelope_weights_nb(e, 200.0, weights)
    np.testing.assert_allclose(weights, M.envelope_weights(env[:, -1:], torch.tensor([[200.0]]))[0, 0].numpy(),
                               rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("kind", ["speech", "singing"])
def test_neural_vocoder_resynthesises_held_out_phrase_in_tune(kind):
    sr = data.SAMPLE_RATE
    if kind == "speech":  # sentence 0 of every language is held out of training
        phrase = data.speak(data.SENTENCES["en"][0], "en+f3", 50, 160)
    else:  # melody 3 of each choir program is held out
        phrase = data.sing(52, 52 * 1000 + 3)
    phrase = (0.6 * phrase / np.abs(phrase).max()).astype(np.float32)
    node = Harmonizer("n", voices=0)
    out = run(node, {"in": phrase[None]}, sr=sr, block=64)[0]
    d = node.latency_samples
    ref = PitchTracker(sr).process_file(phrase[: out.size - d])
    res = PitchTracker(sr).process_file(out[d:])
    n = min(ref.f0_hz.size, res.f0_hz.size)
    both = ref.voiced[:n] & res.voiced[:n]
    assert both.mean() > 0.3 * ref.voiced[:n].mean()
    err = np.abs(1200 * np.log2(res.f0_hz[:n][both] / ref.f0_hz[:n][both]))
    assert np.median(err) < 20.0


def test_the_live_node_reads_f0_and_voicing_as_the_weights_were_trained():
    """Frame for frame, the harmonizer feeds the net the f0 and voicing of the training feature path
    (``features.pitch_frames``): the tracker settings the weights were trained under, whatever the
    pitch listener's own defaults are tuned to."""
    sr = data.SAMPLE_RATE
    phrase = data.speak(data.SENTENCES["de"][0], "de", 50, 170)
    fed = []

    class Recording(Harmonizer):
        def _frame(self, f0_hz: float, voicing: float) -> None:
            fed.append((f0_hz, voicing))
            super()._frame(f0_hz, voicing)

    node = Recording("n", voices=0)
    run(node, {"in": phrase[None]}, sr=sr, block=64)
    trained_under = json.loads((WEIGHTS.parent / "train_log.json").read_text())["pitch_settings"]
    assert node.tracker.settings == trained_under
    f0, voicing = F.pitch_frames(phrase, sr)
    fed = np.array(fed, np.float32)
    assert len(fed) >= len(f0) - 1 and voicing.max() > 0.9  # a voiced phrase, every frame compared
    np.testing.assert_array_equal(fed[:, 0], f0[:len(fed)])
    np.testing.assert_array_equal(fed[:, 1], voicing[:len(fed)])


def test_harmonizer_silence_in_silence_out():
    out = run(Harmonizer("h", voices=3, intervals=[4, 7, 12]), {"in": np.zeros((1, SR // 2))}, notes=(60, 64))
    assert np.sqrt(np.mean(out ** 2)) < 1e-4


def test_harmony_line_lands_on_the_held_midi_note():
    voice = vowel(220.0, 1.2)
    out = run(Harmonizer("h", voices=1, lead_db=-60.0), {"in": voice[None]}, notes=(64,))[0]
    assert cents(median_f0(out[SR // 4:]), 440.0 * 2 ** ((64 - 69) / 12)) < 20


def test_three_harmony_lines_sound_the_held_chord():
    voice = vowel(220.0, 1.2)
    notes = (60, 64, 67)
    out = run(Harmonizer("h", voices=3, lead_db=-60.0), {"in": voice[None]}, notes=notes).sum(0)[SR // 4:]
    spec = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    freqs = np.fft.rfftfreq(out.size, 1 / SR)

    def peak(f):
        return spec[(freqs > f * 0.985) & (freqs < f * 1.015)].max()

    lead = peak(220.0)
    for note in notes:
        assert peak(440.0 * 2 ** ((note - 69) / 12)) > 10 * lead


def test_intervals_follow_the_voice_when_no_note_is_held():
    voice = vowel(200.0, 1.2)
    out = run(Harmonizer("h", voices=1, lead_db=-60.0, intervals=[7]), {"in": voice[None]})[0]
    assert cents(median_f0(out[SR // 4:]), 200.0 * 2 ** (7 / 12)) < 20


# -- patches, offline -----------------------------------------------------------------------------

@pytest.mark.parametrize("patch", ["vocoder", "harmonizer"])
def test_patches_render_offline_from_voice_and_midi(patch, tmp_path):
    engine = Engine(load_patch(patch))
    try:
        midi = [(0.0, [0x90, 60, 100]), (0.0, [0x90, 64, 100]), (0.0, [0x90, 67, 100]), (0.9, [0x80, 60, 0])]
        events = midi_to_events(midi, engine.midi_map, engine.sample_rate)
        voice = vowel(196.0, 1.0)[None]
        out = OfflineBackend(engine).render(voice.shape[1], voice, events)
    finally:
        engine.close()
    write_wav(tmp_path / "out.wav", out, engine.sample_rate)
    assert np.isfinite(out).all()
    assert np.sqrt(np.mean(out[:, SR // 4:] ** 2)) > 0.01


def test_mel_scale_and_filterbank_are_librosas():
    import librosa

    from cadenza.engine.dsp.units import hz_to_mel
    from cadenza.models.vocoder import features as F

    hz = np.geomspace(20.0, 20000.0, 2001)
    np.testing.assert_allclose(hz_to_mel(hz), librosa.hz_to_mel(hz, htk=False), rtol=0, atol=1e-12)
    assert [hz_to_mel(float(f)) for f in hz[::100]] == list(hz_to_mel(hz[::100]))  # scalars (numba) = arrays
    for sr in (24000, 48000):
        basis = F.mel_basis(sr, F.win_samples(sr))
        assert basis.dtype == np.float32 and basis.shape == (F.N_MELS, F.win_samples(sr) // 2 + 1)
        assert (basis.sum(1) > 0).all()  # no empty band at the node's rates
