"""Vocoder bench: resynthesis quality, cost per block and delay.

    python -m bench.vocoder [--quick]

- **Resynthesis** of the held-out speech and singing of ``models.vocoder.data``
  (24 kHz, no pitch shift): the neural vocoder (the ``harmonizer`` node with
  no harmony line, streamed in 64-frame blocks) next to two anchors at their
  documented best: Griffin-Lim from the *same* causal 80-band mel (librosa:
  NNLS mel inversion, 100 iterations, momentum 0.99) and WORLD analysis /
  synthesis of the audio itself (pyworld: Harvest f0, CheapTrick, D4C).
  Multi-scale spectral distance: DDSP's loss (L1 of linear + log magnitudes,
  FFT 2048 … 64), averaged over clips, after each output is aligned by its
  known delay. f0 error: median |cents| between pyworld DIO + StoneMask f0 of
  the output and of the reference, over frames voiced in both.
- **Cost** per 128-frame block at 48 kHz (p50 / p99 µs, each block timed
  around the node's ``process``, garbage collector off): the channel vocoder
  (20 bands) and pyo's own ``Vocoder`` (20 stages, same band range) on the
  same modulator (held-out speech) and carrier (a held synth chord); the
  neural vocoder and the harmonizer with 4 voices (3 held notes) on held-out
  singing.
- **Delay** (DESIGN.md): a sharp step in the input (silence → a steady
  sound); delay = time the output's 1 ms RMS reaches half its steady level
  minus the time the input's does.

Writes ``bench/results/vocoder.json``, prints a markdown table, and, as a
listening check, ``vocoder-speech.png`` and ``vocoder-singing.png`` beside
the JSON (``vocoder-quick-*.png`` with ``--quick``): log spectrograms of the
first held-out clip of each kind, the original beside each resynthesis. The timing
part holds ``/tmp/cadenza-bench.lock`` so it never overlaps another benchmark;
timings still share the CPU with whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly

from cadenza.engine.events import EVENT_DTYPE, Kind
from cadenza.engine.harness import run
from cadenza.instruments.voices.harmonizer import Harmonizer
from cadenza.instruments.voices.synth import PolySynth
from cadenza.instruments.voices.vocoder import ChannelVocoder
from cadenza.models.vocoder import data
from cadenza.models.vocoder import features as F
from cadenza.models.vocoder.train import spectral_loss

RESULTS = Path(__file__).resolve().parent / "results" / "vocoder.json"
LOCK = "/tmp/cadenza-bench.lock"  # shared by the benchmarks that time things
SR = data.SAMPLE_RATE
LIVE_SR, BLOCK = 48000, 128
GL_ITERS = 100
BANDS = 20


def stream(node, inputs: dict[str, np.ndarray], sr: int, block: int, events=None):
    """Run ``node`` over whole input signals in blocks; returns (output (2, n), µs per block)."""
    n = next(iter(inputs.values())).shape[-1] // block * block
    gc.collect()
    gc.disable()
    try:
        result = run(node, {port: x[:, :n] for port, x in inputs.items()}, sr, events, block)
    finally:
        gc.enable()
    return result.audio, result.block_us


def neural(audio: np.ndarray) -> np.ndarray:
    """Neural vocoder resynthesis at SR, aligned to the input."""
    node = Harmonizer("neural", voices=0)
    out, _ = stream(node, {"in": audio[None]}, SR, 64)
    d = node.latency_samples
    return np.pad(out[0, d:], (0, audio.shape[0] - out.shape[1] + d))


def griffin_lim(audio: np.ndarray) -> np.ndarray:
    """Griffin-Lim from the vocoder's own causal mel frames, aligned to the input."""
    import librosa

    mel = F.MelAnalyser(SR)
    mags = np.maximum(np.exp(mel.frames(audio)) - F.LOG_FLOOR, 0.0)
    # the analyser's window is normalised to sum 1; librosa's STFT uses the plain Hann (sum win / 2)
    spec = librosa.util.nnls(mel.basis.astype(np.float64), mags.T.astype(np.float64)) * (mel.win / 2)
    y = librosa.griffinlim(spec, n_iter=GL_ITERS, hop_length=mel.hop, win_length=mel.win, n_fft=mel.n_fft,
                           window="hann", center=False, momentum=0.99, init="random", random_state=0)
    y = y[mel.win - mel.hop:]  # frames were cut from the input with win - hop zeros in front
    return np.pad(y, (0, max(0, audio.shape[0] - y.shape[0])))[: audio.shape[0]].astype(np.float32)


def world(audio: np.ndarray) -> np.ndarray:
    """WORLD analysis / synthesis (Harvest, CheapTrick, D4C)."""
    import pyworld as pw

    x = audio.astype(np.float64)
    f0, t = pw.harvest(x, SR)
    y = pw.synthesize(f0, pw.cheaptrick(x, f0, t, SR), pw.d4c(x, f0, t, SR), SR)
    return np.pad(y, (0, max(0, audio.shape[0] - y.shape[0])))[: audio.shape[0]].astype(np.float32)


def f0_track(audio: np.ndarray) -> np.ndarray:
    import pyworld as pw

    x = audio.astype(np.float64)
    f0, t = pw.dio(x, SR)
    return pw.stonemask(x, f0, t, SR)


def cents_errors(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """|cents| between the f0 of ``out`` and of ``ref`` over frames voiced in both."""
    a, b = f0_track(ref), f0_track(out)
    n = min(a.shape[0], b.shape[0])
    a, b = a[:n], b[:n]
    both = (a > 0) & (b > 0)
    return np.abs(1200.0 * np.log2(b[both] / a[both]))


def resynthesis(clips, examples: dict | None = None) -> dict:
    """Distances and f0 errors per system over ``clips``; the outputs for the first clip of each kind
    go into ``examples`` (kind → {"original": audio, system: output}) when given."""
    systems = {"neural": neural, "griffin_lim": griffin_lim, "world": world}
    dist = {k: [] for k in systems}
    cents = {k: [] for k in systems}
    for kind, audio in clips:
        ref = torch.from_numpy(audio[None])
        keep = examples is not None and kind not in examples
        if keep:
            examples[kind] = {"original": audio}
        for name, fn in systems.items():
            y = fn(audio)
            dist[name].append(spectral_loss(torch.from_numpy(y[None]), ref).item())
            cents[name].append(cents_errors(audio, y))
            if keep:
                examples[kind][name] = y
    return {name: {"spectral_distance": float(np.mean(dist[name])),
                   "f0_error_cents": float(np.median(np.concatenate(cents[name])))} for name in systems}


def plot_spectrograms(signals: dict, title: str, path: Path) -> None:
    """Log-magnitude spectrograms (1024-point FFT, hop 256) of the original and each resynthesis, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"original": "original", "neural": "neural vocoder", "griffin_lim": "Griffin-Lim (same mel)",
             "world": "WORLD"}
    fig, axes = plt.subplots(1, len(signals), figsize=(4 * len(signals), 3.6), sharey=True)
    win = torch.hann_window(1024)
    top = None  # one colour scale for all panels: the original's peak
    for ax, (name, x) in zip(axes, signals.items()):
        mag = torch.stft(torch.from_numpy(np.ascontiguousarray(x, np.float32)), 1024, 256, window=win,
                         return_complex=True).abs().numpy()
        db = 20.0 * np.log10(mag + 1e-5)
        top = db.max() if top is None else top
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=top - 90.0, vmax=top,
                  extent=(0.0, x.shape[0] / SR, 0.0, SR / 2000.0))
        ax.set_title(names.get(name, name), fontsize=9)
        ax.set_xlabel("s")
    axes[0].set_ylabel("kHz")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def to_live(audio: np.ndarray) -> np.ndarray:
    return resample_poly(audio, LIVE_SR, SR).astype(np.float32)


def chord_carrier(seconds: float) -> np.ndarray:
    """The built-in synth holding C3-G3-E4 (saw), stereo at LIVE_SR."""
    synth = PolySynth("synth")
    ev = np.zeros(3, EVENT_DTYPE)
    for i, note in enumerate((48, 55, 64)):
        ev[i] = (0, Kind.NOTE_ON, 0, 0, note, 100, 0.0)
    n = int(seconds * LIVE_SR) // BLOCK * BLOCK
    return run(synth, None, LIVE_SR, ev, BLOCK, frames=n).audio


def pyo_vocoder_times(modulator: np.ndarray, carrier: np.ndarray) -> np.ndarray:
    """µs per block of pyo's Vocoder (20 stages, 100 Hz … 10 kHz) on the same signals."""
    from cadenza.instruments.effects.pyo_rack import PyoServer

    host = PyoServer(LIVE_SR, BLOCK)
    with host.current() as pyo:
        mod = pyo.Input(chnl=0)
        car = pyo.Input(chnl=1)
        spread = np.log(10000.0 / 100.0) / np.log(BANDS)  # centres freq · (i + 1) ** spread
        voc = pyo.Vocoder(mod, car, freq=100.0, spread=float(spread), q=20, slope=0.5, stages=BANDS).out(0)
    n = modulator.shape[0] // BLOCK
    times = np.zeros(n)
    gc.collect()
    gc.disable()
    try:
        for b in range(n):
            t0 = time.perf_counter_ns()
            host.inp[:, 0] = modulator[b * BLOCK:(b + 1) * BLOCK]
            host.inp[:, 1] = carrier[b * BLOCK:(b + 1) * BLOCK]
            host.process()
            _ = host.out[:, 0].copy()
            times[b] = (time.perf_counter_ns() - t0) * 1e-3
    finally:
        gc.enable()
    for obj in (voc, car, mod):
        obj.stop()
    host.shutdown()
    return times


def summary(times: np.ndarray, warm: int = 20) -> dict:
    t = times[warm:]
    return {"p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99))}


def costs(speech: np.ndarray, singing: np.ndarray, seconds: float) -> dict:
    n = int(seconds * LIVE_SR)
    mod = to_live(np.resize(speech, int(seconds * SR)))[:n]
    sung = to_live(np.resize(singing, int(seconds * SR)))[:n]
    carrier = chord_carrier(seconds)[:, :n]
    _, t_channel = stream(ChannelVocoder("channel", bands=BANDS), {"modulator": mod[None], "carrier": carrier},
                          LIVE_SR, BLOCK)
    t_pyo = pyo_vocoder_times(mod, carrier[0])
    _, t_neural = stream(Harmonizer("neural", voices=0), {"in": sung[None]}, LIVE_SR, BLOCK)
    notes = np.zeros(3, EVENT_DTYPE)
    for i, note in enumerate((60, 64, 67)):
        notes[i] = (0, Kind.NOTE_ON, 0, 0, note, 100, 0.0)
    _, t_harm = stream(Harmonizer("harm", voices=3), {"in": sung[None]}, LIVE_SR, BLOCK, events=notes)
    return {"channel": summary(t_channel), "pyo_vocoder": summary(t_pyo), "neural": summary(t_neural),
            "harmonizer_4_voices": summary(t_harm)}


def rms_env(x: np.ndarray, sr: int) -> np.ndarray:
    """Causal 1 ms moving RMS."""
    w = max(1, int(0.001 * sr))
    c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    return np.sqrt(np.maximum((c[w:] - c[:-w]) / w, 0.0))


def crossing_s(x: np.ndarray, sr: int, step: int) -> float:
    """Time (s) after which the 1 ms RMS of ``x`` first reaches half its level 0.2–0.4 s after ``step``."""
    env = rms_env(x, sr)
    steady = np.median(env[step + int(0.2 * sr): step + int(0.4 * sr)])
    return float(np.argmax(env[step:] >= 0.5 * steady)) / sr


def delays() -> dict:
    """Step response: silence, then a steady "ah"-like harmonic tone at 220 Hz (the modulator / the voice)."""
    sr = LIVE_SR
    step = sr // 2
    t = np.arange(sr - step) / sr
    vowel = np.zeros(sr, np.float32)
    vowel[step:] = sum(0.3 / k * np.sin(2 * np.pi * 220 * k * t) * (1.0 if k < 6 else 0.3) for k in range(1, 30))
    voc, _ = stream(ChannelVocoder("channel", bands=BANDS, carrier="saw"),
                    {"modulator": vowel[None], "carrier": np.zeros((2, sr), np.float32)}, sr, BLOCK)
    out, _ = stream(Harmonizer("neural", voices=0), {"in": vowel[None]}, sr, BLOCK)
    start = crossing_s(vowel, sr, step)
    return {"channel": (crossing_s(voc[0], sr, step) - start) * 1e3,
            "neural": (crossing_s(out[0], sr, step) - start) * 1e3}


def table(res: dict) -> str:
    rs, cost, dl = res["resynthesis"], res["cost_us"], res["delay_ms"]
    lines = ["| resynthesis (held-out speech + singing) | spectral distance | f0 error (median cents) |",
             "|---|---|---|"]
    for name in ("neural", "griffin_lim", "world"):
        lines.append(f"| {name} | {rs[name]['spectral_distance']:.3f} | {rs[name]['f0_error_cents']:.1f} |")
    lines += ["", "| cost per 128-frame block at 48 kHz | p50 µs | p99 µs | delay ms |", "|---|---|---|---|"]
    for name in ("channel", "pyo_vocoder", "neural", "harmonizer_4_voices"):
        d = f"{dl[name]:.2f}" if name in dl else "–"
        lines.append(f"| {name} | {cost[name]['p50']:.1f} | {cost[name]['p99']:.1f} | {d} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few clips and 3 s of timing (under 3 minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    clips = data.load("test")
    speech = [c for c in clips if c[0] == 0]
    singing = [c for c in clips if c[0] == 1]
    if args.quick:
        speech, singing = speech[::10], singing[::4]
    examples: dict = {}
    res = {"resynthesis": resynthesis(speech + singing, examples)}
    for kind, label in ((0, "speech"), (1, "singing")):
        if kind in examples:
            plot_spectrograms(examples[kind], f"held-out {label}: original and resyntheses",
                              RESULTS.with_name(f"vocoder{'-quick' if args.quick else ''}-{label}.png"))
    with open(LOCK, "a") as lock:  # timings never overlap another benchmark's
        fcntl.flock(lock, fcntl.LOCK_EX)
        res["cost_us"] = costs(np.concatenate([a for _, a in speech]), np.concatenate([a for _, a in singing]),
                               3.0 if args.quick else 20.0)
    res |= {"delay_ms": delays(),
            "setup": {"clips": {"speech": len(speech), "singing": len(singing)}, "resynthesis_rate_hz": SR,
                      "cost_rate_hz": LIVE_SR, "block": BLOCK, "channel_bands": BANDS,
                      "griffin_lim_iterations": GL_ITERS, "quick": args.quick}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=1))
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
