"""DDSP voice benchmark: ``python -m bench.ddsp [--quick]`` → ``bench/results/ddsp.json`` + a table.

Per trained instrument (``models/ddsp/<name>.pt``), on held-out rendered
phrases (chorales never used in training, :func:`cadenza.models.ddsp.data.split_of`):

* ``spectral_distance`` — multi-scale spectral distance (the training loss:
  Σ over FFT sizes 2048…64 of mean |ΔS| + mean |Δlog S|) between the decoder's
  output and the rendered phrase, averaged over phrases;
* ``baseline_saw`` — the same distance for a fixed sawtooth-like harmonic
  distribution (1/k) without noise, and ``baseline_avg`` for the training
  set's average harmonic distribution (measured from the training audio);
  both driven by the same f0 and loudness, with the loudness→amplitude gain
  fitted on training phrases (each baseline its own best gain);
* ``f0_error_cents`` — median |cents| between the f0 the output is re-tracked
  at (the project's listener) and the input f0, on frames voiced in both.

For the whole voice (tone-transfer node: decoder step + harmonic + noise
synth, 48 kHz, 128-frame blocks, one thread): ``voice_us`` p50 / p99 per
block. ``tone_transfer_delay_ms``: the ``tone_transfer_violin`` patch
(listener → voice) rendered offline on a harmonic tone stepping between
220 and 330 Hz; each step's time is where a centred, symmetric 10 ms
analysis flips between the two periods, in the input and in the output; the
delay is the median output − input over the steps.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from cadenza.engine.dsp.ddsp import noise_matrix, taper_hz
from cadenza.models.ddsp import data, features
from cadenza.models import ddsp_torch as st
from cadenza.models.ddsp.model import load, render
from cadenza.models.ddsp_torch import multiscale_spectral_loss
from cadenza.models.ddsp.train import prepared

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ddsp.json"
WEIGHTS = ROOT / "models" / "ddsp"
GOALS = {"ratio_vs_avg": 0.6, "f0_cents": 10.0, "voice_p99_us": 300.0, "delay_ms": 15.0}
PHRASE_S = 4.0


def phrases(sets, count: int, frames: int) -> list[int]:
    """Start frames of ``count`` evenly spread windows that are mostly voiced and not quiet."""
    voiced = (sets["voicing"] >= 0.5) & (sets["loudness"] > -60)
    starts = []
    for s in np.linspace(0, len(voiced) - frames - 1, count * 4).astype(int):
        if voiced[s:s + frames].mean() > 0.6 and (not starts or s - starts[-1] >= frames):
            starts.append(int(s))
    return starts[:count]


def _window(sets, s, frames):
    pick = lambda k: torch.tensor(sets[k][s:s + frames])[None]
    audio = torch.tensor(sets["audio"][s * data.HOP:(s + frames) * data.HOP])[None]
    return pick("f0"), pick("loudness"), pick("voicing"), audio


def average_distribution(sets, n_harm: int, frames: int = 3000) -> np.ndarray:
    """Mean normalised harmonic magnitudes of voiced training frames (2048-point FFT at each frame)."""
    rng = np.random.default_rng(0)
    ok = np.nonzero((sets["voicing"] >= 0.5) & (sets["loudness"] > -50) & (sets["f0"] > 0))[0]
    ok = ok[(ok * data.HOP > 2048)]
    total, count = np.zeros(n_harm), np.zeros(n_harm)
    win = np.hanning(2048)
    for t in rng.choice(ok, min(frames, len(ok)), replace=False):
        end = (t + 1) * data.HOP
        seg = sets["audio"][end - 2048:end] * win
        spec = np.abs(np.fft.rfft(seg))
        f0 = sets["f0"][t]
        k = np.arange(1, n_harm + 1)
        valid = k * f0 < data.SAMPLE_RATE / 2 * 0.96
        bins = np.round(k[valid] * f0 * 2048 / data.SAMPLE_RATE).astype(int)
        mags = np.array([spec[max(b - 1, 0):b + 2].max() for b in bins])
        mags /= max(mags.sum(), 1e-9)
        total[valid] += mags
        count[valid] += 1
    dist = total / np.maximum(count, 1)
    return (dist / dist.sum()).astype(np.float32)


def baseline_render(dist: np.ndarray, f0, loud, gain: float) -> torch.Tensor:
    """Fixed distribution, amplitude ``gain · 10^(loudness/20)``, no noise."""
    max_hz = data.SAMPLE_RATE / 2
    amp = gain * 10.0 ** (loud / 20.0)
    d = torch.tensor(dist).expand(f0.shape[0], f0.shape[1], -1)
    amps = st.harmonic_amplitudes(amp, d, f0, max_hz, taper_hz(max_hz))
    return st.harmonic_synth(f0, amps, data.HOP, data.SAMPLE_RATE, max_hz, taper_hz(max_hz))


def fit_gain(dist, train, starts, frames) -> float:
    """The loudness→amplitude gain that matches the training phrases' RMS (median frame ratio)."""
    ratios = []
    for s in starts:
        f0, loud, voicing, audio = _window(train, s, frames)
        y = baseline_render(dist, f0, loud, 1.0)[0].numpy().reshape(frames, data.HOP)
        x = audio[0].numpy().reshape(frames, data.HOP)
        ry, rx = np.sqrt((y ** 2).mean(1)), np.sqrt((x ** 2).mean(1))
        ok = (voicing[0].numpy() >= 0.5) & (ry > 1e-6) & (rx > 1e-5)
        ratios.append(rx[ok] / ry[ok])
    return float(np.median(np.concatenate(ratios)))


def score_instrument(name: str, quick: bool) -> dict:
    decoder, meta = load(WEIGHTS / f"{name}.pt")
    frames = int(PHRASE_S * data.SAMPLE_RATE / data.HOP)
    test = prepared(name, "test", 2.5 if quick else None)
    train = prepared(name, "train", meta.get("data_minutes"))
    starts = phrases(test, 4 if quick else 16, frames)
    train_starts = phrases(train, 4 if quick else 12, frames)
    n_harm = decoder.out[2].out_features - 1 - 65
    saw = (1.0 / np.arange(1, n_harm + 1)).astype(np.float32)
    avg = average_distribution(train, n_harm, 500 if quick else 3000)
    gains = {"saw": fit_gain(saw, train, train_starts, frames), "avg": fit_gain(avg, train, train_starts, frames)}
    mat = torch.tensor(noise_matrix(65, decoder.band_hz, data.SAMPLE_RATE))
    gen = torch.Generator().manual_seed(0)
    dist_model, dist_saw, dist_avg, cents = [], [], [], []
    with torch.no_grad():
        for s in starts:
            f0, loud, voicing, target = _window(test, s, frames)
            amp, dist, mags, _ = decoder(f0, loud, voicing)
            noise = torch.rand(target.shape, generator=gen) * 2 - 1
            out = render(decoder, f0, amp, dist, mags, noise, mat)
            dist_model.append(float(multiscale_spectral_loss(out, target)))
            dist_saw.append(float(multiscale_spectral_loss(baseline_render(saw, f0, loud, gains["saw"]), target)))
            dist_avg.append(float(multiscale_spectral_loss(baseline_render(avg, f0, loud, gains["avg"]), target)))
            heard = features.listen(out[0].numpy(), data.SAMPLE_RATE, data.HOP / data.SAMPLE_RATE)
            both = (heard["voicing"] >= 0.5) & (voicing[0].numpy() >= 0.5)
            cents.append(features.cents_error(heard["f0"], f0[0].numpy(), both))
    return {"spectral_distance": round(float(np.mean(dist_model)), 4),
            "baseline_saw": round(float(np.mean(dist_saw)), 4),
            "baseline_avg": round(float(np.mean(dist_avg)), 4),
            "f0_error_cents": round(float(np.median(np.concatenate(cents))), 2),
            "phrases": len(starts), "phrase_s": PHRASE_S, "train_steps": meta.get("steps"),
            "train_minutes": meta.get("train_minutes")}


def voice_timing(model: str, blocks: int) -> dict:
    """p50 / p99 µs per 128-frame block at 48 kHz of the tone-transfer voice, voiced input."""
    from cadenza.engine.harness import Runner
    from cadenza.instruments.voices.ddsp import DDSPVoice

    torch.set_num_threads(1)
    sr, block = 48000, 128
    runner = Runner(DDSPVoice("voice", model=model, listener="pitch"), sr, block)  # prepared here
    n_blocks = blocks + 200
    steps = (np.arange(n_blocks) // 100) % 12  # a scale, a step every 100 blocks
    controls = {"f0": np.repeat(220.0 * 2 ** (steps / 12), block).astype(np.float32),
                "voicing": np.ones(n_blocks * block, np.float32),
                "loudness": np.full(n_blocks * block, -25.0, np.float32)}
    realtime = _realtime(True)
    try:
        times = runner.process(controls=controls).block_us[200:]
    finally:
        _realtime(False)
    return {"p50": round(float(np.percentile(times, 50)), 1), "p99": round(float(np.percentile(times, 99)), 1),
            "sched_fifo": realtime}


def _realtime(on: bool) -> bool:
    """Run the timing loop as an audio thread runs (SCHED_FIFO, as under JACK -R) where allowed."""
    import os

    try:
        policy = os.SCHED_FIFO if on else os.SCHED_OTHER
        os.sched_setscheduler(0, policy, os.sched_param(50 if on else 0))
        return True
    except (PermissionError, OSError, AttributeError):
        return False


def _step_signal(sr: int, steps: int, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A harmonic tone (1/k, up to 5 kHz) alternating 220 / 330 Hz; returns audio and step times (s)."""
    n = int(steps * step_s * sr)
    f0 = np.where((np.arange(n) // int(step_s * sr)) % 2 == 0, 220.0, 330.0)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = np.zeros(n)
    for k in range(1, 23):
        x += np.where(k * f0 < 5000, np.sin(k * phase) / k, 0.0)
    x *= 0.2 / np.abs(x).max()
    fade = int(0.01 * sr)
    x[:fade] *= np.linspace(0, 1, fade)
    return x.astype(np.float32), np.arange(1, steps) * step_s


def _flips(x: np.ndarray, sr: int, t_expected: np.ndarray) -> np.ndarray:
    """Time (s) near each expected step where a centred 10 ms window switches from 220-like to 330-like
    periodicity (normalised autocorrelation at the two periods), at 0.25 ms resolution."""
    half = int(0.005 * sr)
    lags = (round(sr / 220.0), round(sr / 330.0))
    hop = int(0.00025 * sr)
    found = []
    for t in t_expected:
        centres = np.arange(int((t - 0.01) * sr), int((t + 0.04) * sr), hop)
        state = []
        for c in centres:
            seg = x[c - half:c + half + max(lags)]
            w = seg[: 2 * half]
            scores = [np.dot(w, seg[lag:lag + 2 * half]) / (np.linalg.norm(w) * np.linalg.norm(seg[lag:lag + 2 * half]) + 1e-12)
                      for lag in lags]
            state.append(0 if scores[0] > scores[1] else 1)
        state = np.array(state)
        before = state[0]
        change = np.nonzero(state != before)[0]
        found.append(centres[change[0]] / sr if len(change) else np.nan)
    return np.array(found)


def tone_transfer_delay(patch: str) -> float:
    """Median delay (ms) between input pitch steps and output pitch steps through ``patch``."""
    from cadenza.engine.backends.offline import OfflineBackend
    from cadenza.engine.cli import build_engine

    engine = build_engine(patch)
    try:
        sr = engine.sample_rate
        x, steps = _step_signal(sr, 12, 0.3)
        out = OfflineBackend(engine).render(len(x), x[None], None)[0]
    finally:
        engine.close()
    t_in = _flips(x, sr, steps)
    # the step direction alternates: flips of the output are searched the same way
    t_out = _flips(out.astype(np.float64), sr, steps)
    d = (t_out - t_in) * 1000.0
    return round(float(np.nanmedian(d)), 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="DDSP voice benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer phrases and blocks (under 3 minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = [n for n in ("violin", "flute", "cello") if (WEIGHTS / f"{n}.pt").exists()]
    if not names:
        raise SystemExit("no trained DDSP model in models/ddsp (python -m cadenza.models.ddsp.train --instrument violin)")
    result = {"instruments": {n: score_instrument(n, args.quick) for n in names},
              "voice_us": voice_timing(names[0], 2000 if args.quick else 10000),
              "tone_transfer_delay_ms": tone_transfer_delay(str(ROOT / "patches" / f"tone_transfer_{names[0]}.toml")),
              "quick": args.quick}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| instrument | spectral distance | saw baseline | avg-spectrum baseline | ratio vs avg (goal ≤ 0.6) "
          "| f0 error, cents (goal ≤ 10) |")
    print("|---|---|---|---|---|---|")
    for n, r in result["instruments"].items():
        print(f"| {n} | {r['spectral_distance']:.3f} | {r['baseline_saw']:.3f} | {r['baseline_avg']:.3f} "
              f"| {r['spectral_distance'] / r['baseline_avg']:.2f} | {r['f0_error_cents']:.1f} |")
    v = result["voice_us"]
    print(f"\n| whole voice, 128 frames @ 48 kHz | p50 {v['p50']:.0f} µs | p99 {v['p99']:.0f} µs (goal ≤ 300) |")
    print(f"| tone-transfer delay (pitch step in → step out) | {result['tone_transfer_delay_ms']:.1f} ms (goal ≤ 15) |")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
