"""Load: time in the whole graph per block ÷ block period, for every patch in patches/.

Each patch is driven the same way: a voice-like harmonic glide with noise on its
audio input, and a Bach chorale as MIDI through the patch's own [midi] routing
(notes that are mapped to buttons become button presses). Blocks are timed one
by one around ``Engine.process`` at 48 kHz with 64 and 128 frames.

    python -m bench.load [--quick]

Writes bench/results/load.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np

from cadenza.engine.cli.demo import chorale_messages
from cadenza.engine.engine import Engine
from cadenza.engine.midi import midi_to_events
from cadenza.engine.patch import PATCH_DIR, load_patch

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
SAMPLE_RATE = 48000
BLOCKS = (64, 128)


def voice_like_input(seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A sung-like line: harmonic glide 150-400 Hz with vibrato, syllable envelope and breath noise."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 150 * 2 ** (1.4 * (0.5 - 0.5 * np.cos(2 * np.pi * t / 4))) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * t / 1.5), 0, None) ** 0.5
    x = 0.2 * envelope * voice + 0.005 * rng.standard_normal(t.size)
    return np.tile(x.astype(np.float32), (2, 1))


def measure(patch_name: str, block: int, seconds: float) -> dict:
    engine = Engine(load_patch(patch_name), SAMPLE_RATE, block)
    try:
        adc = voice_like_input(seconds)
        engine.schedule(midi_to_events(chorale_messages(seconds), engine.midi_map, SAMPLE_RATE))
        n_in = engine.graph.adc.shape[0]
        n_blocks = int(seconds * SAMPLE_RATE) // block
        times = np.zeros(n_blocks)
        gc.collect()
        gc.freeze()
        gc.disable()
        for b in range(n_blocks):
            chunk = adc[:n_in, b * block:(b + 1) * block]
            t0 = time.perf_counter_ns()
            engine.process(chunk)
            times[b] = time.perf_counter_ns() - t0
        gc.enable()
        gc.unfreeze()
    finally:
        engine.close()
    us = times * 1e-3
    period = block / SAMPLE_RATE * 1e6
    return {"block": block, "period_us": round(period, 1),
            "p50_us": round(float(np.percentile(us, 50)), 1),
            "p99_us": round(float(np.percentile(us, 99)), 1),
            "max_us": round(float(us.max()), 1),
            "p99_load": round(float(np.percentile(us, 99)) / period, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per patch and block size instead of 30 s")
    parser.add_argument("--patch", action="append", help="only these patches (default: all)")
    args = parser.parse_args(argv)
    seconds = 5.0 if args.quick else 30.0
    names = args.patch or [p.stem for p in sorted(PATCH_DIR.glob("*.toml"))]
    results: dict[str, dict] = {}
    for name in names:
        for block in BLOCKS:
            results[f"{name}@{block}"] = measure(name, block, seconds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if args.patch and RESULTS.exists():  # a run of some patches updates their rows, keeps the others'
        kept = json.loads(RESULTS.read_text())
        if kept.get("seconds") == seconds:
            results = kept["patches"] | results
    RESULTS.write_text(json.dumps({"sample_rate": SAMPLE_RATE, "seconds": seconds, "patches": results},
                                  indent=2) + "\n")
    print("| patch | block | period µs | p50 µs | p99 µs | max µs | p99 load |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, r in results.items():
        print(f"| {key.split('@')[0]} | {r['block']} | {r['period_us']} | {r['p50_us']} | {r['p99_us']} "
              f"| {r['max_us']} | {r['p99_load'] * 100:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
