"""DDSP: synth kernels vs their torch twins, the decoder weights, the voice node."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cadenza.engine.dsp.ddsp import (harmonic_amplitudes, harmonic_render, noise_matrix,
                                      noise_render, taper_hz)
from cadenza.engine.dsp.noise import noise_state, white_noise
from cadenza.models import ddsp_torch as st


def _render_kernels(f0, amps, mags, noise, hop, sr, max_hz, mat):
    """Hop-by-hop numba render of frames (the way the live voice calls the kernels)."""
    t_frames = len(f0)
    out = np.zeros(t_frames * hop, np.float32)
    phase = np.zeros(1)
    taps = mat.shape[0]
    ir, work, tail = (np.zeros(taps, np.float32), np.zeros(hop + taps, np.float32),
                      np.zeros(taps - 1, np.float32))
    for t in range(t_frames):
        seg = out[t * hop:(t + 1) * hop]
        prev = max(t - 1, 0)
        harmonic_render(seg, f0[prev], f0[t], amps[prev], amps[t], phase, sr, max_hz, taper_hz(max_hz))
        noise_render(seg, noise[t * hop:(t + 1) * hop], mags[t], mat, ir, work, tail)
    return out


def test_torch_twin_agrees_with_numba_kernels():
    rng = np.random.default_rng(1)
    sr, hop, n_harm, n_bands, max_hz, t_frames = 24000, 64, 60, 65, 12000.0, 40
    f0 = np.geomspace(60.0, 3000.0, t_frames).astype(np.float32)
    f0[7] = 0.0  # unvoiced frame in the middle
    amp = (rng.random(t_frames) * 0.3).astype(np.float32)
    dist = rng.random((t_frames, n_harm)).astype(np.float32)
    mags = (rng.random((t_frames, n_bands)) * 0.02).astype(np.float32)
    noise = (rng.random(t_frames * hop) * 2 - 1).astype(np.float32)
    mat = noise_matrix(n_bands, max_hz, sr)
    amps = np.zeros((t_frames, n_harm), np.float32)
    for t in range(t_frames):
        harmonic_amplitudes(amp[t], dist[t], f0[t], max_hz, taper_hz(max_hz), amps[t])
    ours = _render_kernels(f0, amps, mags, noise, hop, sr, max_hz, mat)

    amps_t = st.harmonic_amplitudes(torch.tensor(amp)[None], torch.tensor(dist)[None],
                                    torch.tensor(f0)[None], max_hz, taper_hz(max_hz))
    np.testing.assert_allclose(amps_t[0].numpy(), amps, atol=1e-7)
    twin = (st.harmonic_synth(torch.tensor(f0)[None], amps_t, hop, sr, max_hz, taper_hz(max_hz))
            + st.noise_synth(torch.tensor(mags)[None], torch.tensor(noise)[None], torch.tensor(mat), hop))
    assert np.abs(ours).max() > 0.05
    np.testing.assert_allclose(twin[0].numpy(), ours, atol=2e-5)


def _spectrum(x, sr):
    win = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * win))
    return np.fft.rfftfreq(len(x), 1 / sr), mag


def test_harmonics_land_on_exact_multiples_and_nothing_above_nyquist():
    sr, hop, n_harm = 48000, 128, 60
    f0 = 1000.0  # 60 harmonics would reach 60 kHz: everything from 24 kHz up must be silent
    amps = np.full(n_harm, 1.0 / n_harm, np.float32)
    out = np.zeros(hop * 375, np.float32)  # 1 s
    phase = np.zeros(1)
    max_hz = sr / 2
    for t in range(375):
        harmonic_render(out[t * hop:(t + 1) * hop], f0, f0, amps, amps, phase, sr, max_hz, taper_hz(max_hz))
    freqs, mag = _spectrum(out, sr)
    peaks = [freqs[i] for i in range(1, len(mag) - 1)
             if mag[i] > mag[i - 1] and mag[i] > mag[i + 1] and mag[i] > 0.01 * mag.max()]
    assert len(peaks) == 23  # 1..23 kHz; the 24th sits at Nyquist and is tapered to zero
    np.testing.assert_allclose(peaks, 1000.0 * np.arange(1, 24), atol=1.0)
    # Aliases would land between the harmonics: nothing there above -80 dB of the peak.
    between = (np.abs((freqs / 1000.0) - np.round(freqs / 1000.0)) > 0.05)
    assert mag[between].max() < 1e-4 * mag.max()


def test_noise_stays_in_its_bands():
    sr, hop = 48000, 128
    mat = noise_matrix(65, 12000.0, sr)
    mags = np.zeros(65, np.float32)
    mags[20:30] = 1.0  # 3.75 .. 5.44 kHz
    out = np.zeros(hop * 200, np.float32)
    noise = np.zeros(hop, np.float32)
    gen = noise_state(7)
    taps = mat.shape[0]
    ir, work, tail = (np.zeros(taps, np.float32), np.zeros(hop + taps, np.float32),
                      np.zeros(taps - 1, np.float32))
    for t in range(200):
        white_noise(noise, gen)
        noise_render(out[t * hop:(t + 1) * hop], noise, mags, mat, ir, work, tail)
    freqs, mag = _spectrum(out, sr)
    inside = (freqs > 3900) & (freqs < 5300)
    far = (freqs < 2000) | (freqs > 8000)
    assert np.mean(mag[inside] ** 2) > 100 * np.mean(mag[far] ** 2)


# ---- the trained decoder and the live voice -------------------------------------------------

from pathlib import Path  # noqa: E402

from cadenza.engine import harness  # noqa: E402
from cadenza.engine.events import Kind, make_events  # noqa: E402
from cadenza.instruments.voices.ddsp import DDSPVoice, NumbaDecoder, decoder_step  # noqa: E402
from cadenza.engine.dsp.pitch import PitchTracker  # noqa: E402
from cadenza.instruments.listeners.pitch import PitchListener  # noqa: E402
from cadenza.models.ddsp.model import load, scale_inputs  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "ddsp" / "violin.pt"
SR, BLOCK = 48000, 128


def test_committed_weights_load_with_weights_only():
    blob = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert {"state_dict", "hidden", "sample_rate", "hop", "meta"} <= set(blob)
    decoder, meta = load(WEIGHTS)
    assert meta["instrument"] == "violin" and meta["steps"] > 0
    assert sum(p.numel() for p in decoder.parameters()) < 1_000_000


def test_numba_decoder_step_matches_torch():
    decoder, _ = load(WEIGHTS)
    port = NumbaDecoder(WEIGHTS)
    t = 60
    f0 = torch.logspace(math.log10(150.0), math.log10(1500.0), t)[None]
    loud = torch.linspace(-90.0, -10.0, t)[None]
    voicing = (torch.arange(t) % 7 != 0).float()[None]
    with torch.no_grad():
        x = scale_inputs(f0, loud, voicing)
        y, _ = decoder.gru(decoder.inp(x))
        want = decoder.out(torch.cat([y, x], -1))[0].numpy()
    h = np.zeros(port.hidden, np.float32)
    raw = np.zeros(port.n_out, np.float32)
    scratch = port.scratch()
    xs = x[0].numpy()
    got = np.zeros_like(want)
    for i in range(t):
        decoder_step(xs[i], h, *port.weights_a, *port.weights_b, *scratch, raw)
        got[i] = raw
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


class _Harness:
    """A voice node streamed through the engine's harness, one 128-frame block per call."""

    def __init__(self, **options):
        self.runner = harness.Runner(DDSPVoice("voice", model="violin", **options), SR, BLOCK)
        self.node, self.io = self.runner.node, self.runner.io

    def block(self, f0=0.0, voicing=0.0, loudness=-120.0, events=()) -> np.ndarray:
        rows = make_events(len(events))
        for row, (kind, a, b) in zip(rows, events):
            row["time"], row["kind"], row["a"], row["b"] = self.runner.time, kind, a, b
        controls = {"f0": np.full(BLOCK, f0, np.float32), "voicing": np.full(BLOCK, voicing, np.float32),
                    "loudness": np.full(BLOCK, loudness, np.float32)}
        return self.runner.process(None, rows, controls, frames=BLOCK).audio[0]


def _sung_vowel(f0_track: np.ndarray, sr: int) -> np.ndarray:
    """A synthetic sung 'ah': glottal-like harmonics (−12 dB/octave) through three formant peaks."""
    phase = 2 * np.pi * np.cumsum(f0_track) / sr
    x = np.zeros(len(f0_track))
    for k in range(1, 40):
        fk = k * f0_track
        formants = sum(a / (1 + ((fk - fc) / bw) ** 2) for fc, bw, a in
                       ((700, 130, 1.0), (1220, 150, 0.5), (2600, 250, 0.25)))
        x += np.where(fk < 6000, np.sin(k * phase) / k ** 2 * (0.2 + formants), 0.0)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_voice_input_gives_output_that_follows_its_pitch():
    notes = np.repeat([220.0, 247.0, 294.0, 262.0], SR // 2)  # 2 s, steps every 0.5 s
    vibrato = 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.0 * np.arange(len(notes)) / SR))
    voice = _sung_vowel(notes * vibrato, SR)
    heard = harness.run(PitchListener("pitch"), voice, SR, block=BLOCK).controls
    sung = {f"pitch.{name}": signal for name, signal in heard.items()}  # what the voice reads
    out = harness.run(DDSPVoice("voice", model="violin", listener="pitch"), None, SR, block=BLOCK,
                      controls=sung).audio[0]
    assert np.isfinite(out).all() and np.abs(out).max() > 1e-3
    tracked = PitchTracker(SR).process_file(out)
    truth = np.interp(tracked.time_s, np.arange(len(notes)) / SR, notes * vibrato)
    after = tracked.time_s > 0.1
    assert tracked.voiced[after].mean() > 0.8
    ok = tracked.voiced & after
    cents = np.abs(1200 * np.log2(tracked.f0_hz[ok] / truth[ok]))
    assert np.median(cents) < 25.0


def test_silence_in_gives_silence_out():
    h = _Harness(listener="pitch")
    for _ in range(50):
        h.block(220.0, 1.0, -30.0)  # a sung note ...
    tails = [h.block(220.0, 0.0, -120.0) for _ in range(20)]  # ... then digital silence
    assert np.abs(tails[0]).max() > 0.0
    assert all(np.abs(t).max() == 0.0 for t in tails[8:])
    unvoiced = [h.block(0.0, 0.0, -25.0) for _ in range(20)]  # breath / consonant: no tone
    assert all(np.abs(t).max() == 0.0 for t in unvoiced)


def test_no_nan_with_extreme_inputs():
    h = _Harness(listener="pitch")
    for f0 in (0.0, 20.0, 20000.0, 1e6):
        for loud in (-120.0, 20.0, -30.0):
            out = np.concatenate([h.block(f0, 1.0, loud) for _ in range(8)])
            assert np.isfinite(out).all() and np.abs(out).max() < 10.0
    m = _Harness(voices=4)
    out = np.concatenate([m.block(events=[(Kind.NOTE_ON, n, 127) for n in (0, 60, 127)])]
                         + [m.block() for _ in range(40)])
    assert np.isfinite(out).all() and np.abs(out).max() < 10.0


def test_notes_play_at_their_pitch_and_stop():
    m = _Harness()
    first = m.block(events=[(Kind.NOTE_ON, 69, 100)])
    held = np.concatenate([first] + [m.block() for _ in range(150)])  # 0.4 s of A4
    f = PitchTracker(SR).process_file(held)
    after = f.time_s > 0.1
    assert f.voiced[after].mean() > 0.9
    late = f.voiced & after
    cents = 1200 * np.log2(f.f0_hz[late] / 440.0)
    assert np.median(np.abs(cents)) < 25.0  # vibrato ±15 cents around A4
    m.block(events=[(Kind.NOTE_OFF, 69, 0)])
    after = [m.block() for _ in range(200)]  # release 0.15 s, then nothing
    assert all(np.abs(b).max() == 0.0 for b in after[100:])


def test_numba_training_basis_equals_torch_basis():
    from cadenza.engine.dsp.ddsp import harmonic_basis

    f0 = np.geomspace(80.0, 2500.0, 30).astype(np.float32)
    f0[4] = 0.0
    out = np.zeros((30 * 64, 60), np.float32)
    harmonic_basis(f0.astype(np.float64), float(f0[0]), 64, 24000.0, 12000.0, taper_hz(12000.0), out)
    want = st.harmonic_basis(torch.tensor(f0)[None], 60, 64, 24000.0, 12000.0, taper_hz(12000.0))[0]
    np.testing.assert_allclose(out, want.numpy(), atol=1e-4)


def test_tone_transfer_patch_renders_offline(tmp_path):
    from cadenza.engine.cli import render

    voice = _sung_vowel(np.repeat([196.0, 262.0], SR // 4), SR)
    import soundfile as sf

    sf.write(tmp_path / "voice.wav", voice, SR)
    root = Path(__file__).resolve().parents[1]
    audio = render(root / "patches" / "tone_transfer_violin.toml", tmp_path / "violin.wav",
                   input_wav=tmp_path / "voice.wav", tail_s=0.2, quiet=True)
    assert (tmp_path / "violin.wav").exists()
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3


def test_every_shipped_ddsp_voice_hears_its_listener_as_it_was_trained():
    """A pitch node that drives a DDSP voice runs with the settings the decoders were trained under."""
    from cadenza.engine.dsp.pitch import MODEL_INPUT_SETTINGS
    from cadenza.engine.node import Context
    from cadenza.engine.patch import load_patch
    from cadenza.instruments.listeners.pitch import PitchListener

    root = Path(__file__).resolve().parents[1]
    driven = 0
    for path in sorted((root / "patches").glob("*.toml")):
        patch = load_patch(path)
        nodes = {n.id: n for n in patch.nodes}
        for node in patch.nodes:
            if node.type == "ddsp" and node.options.get("listener"):
                listener = PitchListener(node.options["listener"], **nodes[node.options["listener"]].options)
                listener.open(Context(SR, BLOCK))
                assert listener.tracker.settings == MODEL_INPUT_SETTINGS, path.name
                driven += 1
    assert driven >= 2  # the violin and flute tone-transfer patches


def test_transpose_and_auto_octave_move_the_played_pitch():
    h = _Harness(listener="pitch", auto_octave=True)
    for _ in range(5):
        h.block(110.0, 1.0, -30.0)  # a low A2 sung: shifted by octaves into the violin's range
    low, high = h.node.midi_lo, h.node.midi_hi
    played = float(h.io.published["f0_hz"][0])
    midi = 69 + 12 * math.log2(played / 440.0)
    assert low - 6 <= midi <= high + 6 and abs(midi - round(midi)) < 1e-3 and (midi - 45) % 12 == 0
    t = _Harness(listener="pitch", transpose=7.0)
    for _ in range(5):
        t.block(440.0, 1.0, -30.0)
    assert float(t.io.published["f0_hz"][0]) == pytest.approx(440.0 * 2 ** (7 / 12), rel=1e-4)
