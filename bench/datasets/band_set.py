"""Band clips for ``bench.band``: drums, bass and chords rendered with FluidSynth, with their true grid and chords.

Each clip is 16 bars of 4/4 from a generated pop or jazz progression (one chord a bar,
the loops of :mod:`bench.datasets.chord_set`), at 70-170 BPM, in one of four kinds:

- ``steady``: one tempo;
- ``swing``: one tempo, the off-beat eighths (and the sixteenths between) pushed late to
  a swing ratio of 0.60-0.70 of the beat, a jazz ride pattern;
- ``ramp``: one tempo for six bars, then a linear change of 8-15 % (up or down) over two
  bars, then the new tempo;
- ``rubato``: the tempo breathing +-9 % around its centre (two slow sines).

The truth of a clip: every sixteenth's time (``grid_s``, swung in swing clips; its beats
are every fourth), the bar's chord (``chords``: root pitch class, quality 0 major / 1
minor, start s) and, for a ramp, when it ends (``ramp_end_s``). Players are humanised
by a 2 ms timing spread. The test part and the tune part use different seeds.
Rendered once into ``data/band`` (mono float WAV at 48 kHz + JSON), again when the
generator's ``VERSION`` changes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.datasets.chord_set import DRUM_CH, MAJOR_LOOPS, MINOR_LOOPS, SR, render
from cadenza.models.renders import cached_clip

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "data" / "band"
VERSION = 2  # 2: one fresh synth per clip (models.renders.fluid_synth)
KINDS = ("steady", "swing", "ramp", "rubato")
BARS = 16
RAMP_BARS = (6, 8)  # the ramp runs from the start of bar 6 to the start of bar 8 (0-based)
COUNTS = {"test": 3, "tune": 2}  # clips per kind
QUICK_COUNT = 1
TIMING_SPREAD_S = 0.002


@dataclass
class ClipSpec:
    name: str
    kind: str
    bpm: float
    seed: int
    tonic: int
    minor: bool
    swing: float = 0.5
    ramp: float = 1.0  # the tempo after the ramp, as a multiple of bpm


@dataclass
class Clip:
    spec: ClipSpec
    audio: np.ndarray
    grid_s: np.ndarray  # every sixteenth, s
    chords: list  # (start s, root pitch class, quality)
    ramp_end_s: float

    @property
    def beats_s(self) -> np.ndarray:
        return self.grid_s[::4]


def swung(sixteenth: np.ndarray, swing: float) -> np.ndarray:
    """Beat positions of sixteenth-note steps with the off-beat eighth at ``swing`` of the beat."""
    beat, frac = np.divmod(sixteenth / 4.0, 1.0)
    return beat + np.where(frac < 0.5, frac * 2.0 * swing, swing + (frac - 0.5) * 2.0 * (1.0 - swing))


def tempo_curve(spec: ClipSpec, beats: np.ndarray) -> np.ndarray:
    """BPM at each beat position."""
    if spec.kind == "ramp":
        lo, hi = RAMP_BARS[0] * 4, RAMP_BARS[1] * 4
        return spec.bpm * (1.0 + (spec.ramp - 1.0) * np.clip((beats - lo) / (hi - lo), 0.0, 1.0))
    if spec.kind == "rubato":
        phase = spec.seed % 628 / 100.0
        return spec.bpm * (1.0 + 0.06 * np.sin(2 * np.pi * beats / 12.0 + phase) + 0.03 * np.sin(2 * np.pi * beats / 5.0))
    return np.full_like(beats, spec.bpm)


def time_map(spec: ClipSpec):
    """A function from beat positions to seconds, integrating the tempo curve."""
    fine = np.arange(0.0, BARS * 4 + 2.0, 1.0 / 64)
    seconds = np.concatenate([[0.0], np.cumsum(60.0 / tempo_curve(spec, fine[:-1] + 1.0 / 128) / 64)])
    return lambda beats: np.interp(beats, fine, seconds)


def band_notes(spec: ClipSpec, rng) -> tuple[list, list]:
    """(start s, duration s, channel, MIDI, velocity) notes of the clip, and its chords (start s, root, quality)."""
    from cadenza.models.beat.data import drum_pattern

    at = time_map(spec)
    loops = MINOR_LOOPS if spec.minor else MAJOR_LOOPS
    loop = loops[int(rng.integers(len(loops)))]
    family = "swing" if spec.kind == "swing" else str(rng.choice(["straight", "syncopated"]))
    steps, hits = drum_pattern("4/4", family, int(rng.integers(1 << 20)))
    comp_arp = bool(rng.random() < 0.4)
    notes, chords = [], []

    def add(sixteenth: float, length_16: float, channel: int, note: int, velocity: int) -> None:
        start, end = at(swung(np.array([sixteenth, sixteenth + length_16]), spec.swing))
        notes.append((float(start), float(end - start), channel, note, velocity))

    for bar in range(BARS):
        degree, quality = loop[bar % len(loop)]
        root = (spec.tonic + degree) % 12
        tones = [root, root + (3 if quality else 4), root + 7]
        chords.append((float(at(bar * 4.0)), root, quality))
        s0 = bar * 16
        voicing = sorted(55 + (t - 55) % 12 for t in tones)
        if comp_arp:
            for k in range(8):
                add(s0 + 2 * k, 1.8, 1, voicing[k % 3] + 12 * (k % 4 == 3), 68)
        else:
            for k in range(4):
                for m in voicing:
                    add(s0 + 4 * k, 3.4, 1, m, 62 + 8 * (k == 0))
        for k, interval in enumerate((0, 7, 0, 7) if rng.random() < 0.5 else (0, 0, 7, 0)):
            add(s0 + 4 * k, 3.6, 2, 36 + (root + interval) % 12, 92)
        for step, note, velocity in hits:
            add(s0 + step * 16 / steps, 1.0, DRUM_CH, note, velocity)
    jitter = rng.normal(0.0, TIMING_SPREAD_S, len(notes))
    notes = [(max(t + j, 0.0), d, ch, m, v) for (t, d, ch, m, v), j in zip(notes, jitter)]
    return notes, chords


def clip_specs(part: str, quick: bool = False) -> list[ClipSpec]:
    """The clips of a part (``test``: held out, ``tune``), ``quick``: one per kind."""
    if part not in COUNTS:
        raise ValueError(f"part: found {part!r}, allowed 'test' or 'tune'")
    rng = np.random.default_rng(2718 if part == "test" else 3141)
    specs = []
    for kind in KINDS:
        for i in range(COUNTS[part]):
            spec = ClipSpec(f"{part}-{kind}-{i}", kind, float(rng.integers(70, 171)), int(rng.integers(1 << 30)),
                            int(rng.integers(12)), bool(rng.random() < 0.35),
                            swing=float(rng.uniform(0.6, 0.7)) if kind == "swing" else 0.5,
                            ramp=float(1.0 + rng.choice([-1, 1]) * rng.uniform(0.08, 0.15)) if kind == "ramp" else 1.0)
            if kind == "ramp":  # keep both tempos inside 70-170 BPM
                spec.bpm = float(np.clip(spec.bpm, 70.0 / min(spec.ramp, 1.0), 170.0 / max(spec.ramp, 1.0)))
            if i < (QUICK_COUNT if quick else COUNTS[part]):
                specs.append(spec)
    return specs


def _truth(spec: ClipSpec) -> tuple[np.ndarray, float]:
    at = time_map(spec)
    grid = at(swung(np.arange(BARS * 16 + 1, dtype=np.float64), spec.swing))
    ramp_end = float(at(RAMP_BARS[1] * 4.0)) if spec.kind == "ramp" else 0.0
    return grid, ramp_end


def _build(spec: ClipSpec, synth) -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng(spec.seed)
    notes, chords = band_notes(spec, rng)
    programs = {1: int(rng.choice([0, 4, 16, 24])), 2: int(rng.choice([32, 33, 34])), DRUM_CH: 0}
    return render(notes, programs, float(time_map(spec)(BARS * 4.0)), synth), {"chords": chords}


def load_clips(part: str, quick: bool = False) -> list[Clip]:
    """The clips of a part, rendered now where missing."""
    clips = []
    for spec in clip_specs(part, quick):
        audio, info = cached_clip(CACHE, spec, VERSION, SR, functools.partial(_build, spec))
        grid, ramp_end = _truth(spec)
        clips.append(Clip(spec, audio, grid, [tuple(c) for c in info["chords"]], ramp_end))
    return clips
