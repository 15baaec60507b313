"""Training data for the DDSP decoder, made here: corpus melodies rendered with FluidSynth.

Melodies are the upper voices of music21's Bach chorales (soprano, alto),
split *by piece* (every 10th chorale, in sorted order, is held out for the
bench). Each line is played on one GM instrument of the FluidR3 SoundFont
with a random tempo, articulation, velocity, pitch-bend vibrato (delayed
onset, 4.5–6.5 Hz, 0–35 cents) and a smooth CC11 expression curve, so pitch
and dynamics move the way a player's do. Reverb and chorus are off.

The MIDI truth (f0 in Hz per control frame, bend included; 0 before the
first note) is kept beside the audio for cross-checking; the decoder's inputs
(f0, loudness) are computed from the audio by :mod:`cadenza.models.ddsp.features`.

Cache: ``data/ddsp/<instrument>_<split>.npz`` (gitignored) holding
``audio`` (int16, SAMPLE_RATE) and ``f0_midi`` (float32, one per HOP).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.engine.dsp.units import midi_to_hz

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "data" / "ddsp"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SAMPLE_RATE = 24000  # Hz, training rate; the synth's band limit is half of it
HOP = 64  # samples per control frame at SAMPLE_RATE (375 frames/s, 2.67 ms)
CHUNK = 120  # samples rendered between controller updates (5 ms)
BEND_RANGE = 2.0  # semitones, the GM default pitch-wheel sensitivity


@dataclass(frozen=True)
class Instrument:
    program: int  # GM program (0-based)
    low: int  # lowest MIDI note to play
    high: int  # highest MIDI note to play


INSTRUMENTS = {
    "violin": Instrument(40, 55, 88),
    "flute": Instrument(73, 60, 91),
    "cello": Instrument(42, 36, 76),
}
MINUTES = {"train": 40.0, "test": 6.0}


def chorale_paths() -> list[str]:
    """Bach chorale files of music21's corpus, sorted (the split is by position)."""
    from music21 import corpus

    return sorted(str(p) for p in corpus.getComposer("bach") if "bwv" in Path(str(p)).name)


def split_of(index: int) -> str:
    """Held-out pieces: every 10th in sorted order."""
    return "test" if index % 10 == 5 else "train"


def melodies(split: str, limit: int) -> list[list[tuple[float, float, int]]]:
    """Up to ``limit`` melodies (notes as (onset, duration) in quarter notes, MIDI pitch)."""
    from music21 import converter

    out = []
    for i, path in enumerate(chorale_paths()):
        if split_of(i) != split:
            continue
        try:
            score = converter.parse(path)
        except Exception:  # a corpus file music21 cannot read is skipped
            continue
        for part in list(score.parts)[:2]:
            notes = []
            for n in part.stripTies().flatten().notes:
                pitch = max(p.midi for p in n.pitches)
                if n.quarterLength > 0:
                    notes.append((float(n.offset), float(n.quarterLength), int(pitch)))
            if len(notes) >= 8:
                out.append(notes)
        if len(out) >= limit:
            break
    return out[:limit]


def _expression_curve(rng, seconds: float) -> callable:
    """A smooth CC11 curve over a phrase: a few slow swells, 35..127."""
    parts = [(rng.uniform(0.03, 0.25), rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 1.0)) for _ in range(3)]
    base = rng.uniform(0.55, 0.85)

    def value(t: float) -> int:
        s = base + sum(a * 0.25 * math.sin(2 * math.pi * f * t + p) for f, p, a in parts)
        return int(np.clip(35 + s * 92, 35, 127))

    return value


def render_melody(synth, notes, inst: Instrument, rng) -> tuple[np.ndarray, np.ndarray]:
    """Play one melody on channel 0 of ``synth``: (audio int16 mono, f0 per HOP frame in Hz)."""
    bpm = rng.uniform(60, 132)
    spq = 60.0 / bpm  # seconds per quarter
    lo, hi = min(p for _, _, p in notes), max(p for _, _, p in notes)
    shift = 12 * math.ceil((inst.low - lo) / 12) if lo < inst.low else 0
    while hi + shift > inst.high and lo + shift - 12 >= inst.low - 5:
        shift -= 12
    if rng.random() < 0.4 and hi + shift + 12 <= inst.high:
        shift += 12
    legato = rng.uniform(0.8, 1.0)
    events = []  # (time s, kind, pitch, velocity)
    for onset, dur, pitch in notes:
        t0 = onset * spq
        t1 = t0 + max(dur * spq * legato - 0.01, 0.03)
        key = int(np.clip(pitch + shift, 0, 127))
        events.append((max(t0, 0.0), 1, key, int(rng.integers(60, 121))))
        events.append((t1, 0, key, 0))
    events.sort(key=lambda e: (e[0], e[1]))
    end = events[-1][0] + 0.8
    n_chunks = int(end * SAMPLE_RATE / CHUNK) + 1
    vib_rate, vib_depth = rng.uniform(4.5, 6.5), rng.uniform(0.0, 0.35)  # Hz, semitones
    vib_delay = rng.uniform(0.1, 0.4)  # s after each note-on
    expression = _expression_curve(rng, end)
    audio = np.zeros(n_chunks * CHUNK, np.int16)
    f0_per_sample = np.zeros(n_chunks * CHUNK, np.float32)
    synth.cc(0, 11, expression(0.0))
    synth.pitch_bend(0, 0)
    e, current, note_on_t = 0, -1, 0.0
    for c in range(n_chunks):
        t = c * CHUNK / SAMPLE_RATE
        while e < len(events) and events[e][0] <= t:
            _, kind, key, vel = events[e]
            if kind == 1:
                synth.noteon(0, key, vel)
                current, note_on_t = key, events[e][0]
            else:
                synth.noteoff(0, key)
            e += 1
        ramp = min(max((t - note_on_t - vib_delay) / 0.3, 0.0), 1.0)
        bend = vib_depth * ramp * math.sin(2 * math.pi * vib_rate * t)  # semitones
        synth.pitch_bend(0, int(np.clip(bend / BEND_RANGE * 8192, -8192, 8191)))
        synth.cc(0, 11, expression(t))
        block = np.frombuffer(synth.get_samples(CHUNK), np.int16)[0::2]
        audio[c * CHUNK:(c + 1) * CHUNK] = block
        if current >= 0:  # f0 held through release and rests, as a tracker would hold it
            f0_per_sample[c * CHUNK:(c + 1) * CHUNK] = midi_to_hz(current + bend)
    synth.cc(0, 123, 0)  # all notes off
    n_frames = len(audio) // HOP
    f0 = f0_per_sample[HOP - 1: n_frames * HOP: HOP]
    return audio[: n_frames * HOP], f0


def build(instrument: str, split: str, minutes: float | None = None, seed: int = 0) -> Path:
    """Render (or reuse) the cached set for ``instrument`` and ``split``; returns its path."""
    import fluidsynth

    path = CACHE / f"{instrument}_{split}.npz"
    if path.exists():
        return path
    inst = INSTRUMENTS[instrument]
    minutes = minutes or MINUTES[split]
    rng = np.random.default_rng(seed + (0 if split == "train" else 1000) + inst.program)
    synth = fluidsynth.Synth(gain=0.6, samplerate=float(SAMPLE_RATE),
                             **{"synth.reverb.active": 0, "synth.chorus.active": 0})
    sfid = synth.sfload(str(SOUNDFONT))
    synth.program_select(0, sfid, 0, inst.program)
    audios, f0s, total = [], [], 0
    for notes in melodies(split, limit=400):
        audio, f0 = render_melody(synth, notes, inst, rng)
        gap = int(rng.uniform(0.2, 0.6) * SAMPLE_RATE / HOP)  # silent frames between phrases
        audios += [audio, np.zeros(gap * HOP, np.int16)]
        f0s += [f0, np.zeros(gap, np.float32)]
        for _ in range(16):  # let the release die away between phrases
            synth.get_samples(CHUNK)
        total += len(audio)
        if total >= minutes * 60 * SAMPLE_RATE:
            break
    synth.delete()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, audio=np.concatenate(audios), f0_midi=np.concatenate(f0s))
    (CACHE / f"{instrument}_{split}.json").write_text(json.dumps(
        {"minutes": total / SAMPLE_RATE / 60, "sample_rate": SAMPLE_RATE, "hop": HOP}))
    return path


def load(instrument: str, split: str) -> dict[str, np.ndarray]:
    """The cached set as float32 audio (−1..1) and MIDI f0 per frame."""
    with np.load(build(instrument, split)) as z:
        return {"audio": z["audio"].astype(np.float32) / 32768.0, "f0_midi": z["f0_midi"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Render the DDSP training set for one instrument")
    parser.add_argument("--instrument", default="violin", choices=sorted(INSTRUMENTS))
    args = parser.parse_args(argv)
    for split in ("train", "test"):
        print(build(args.instrument, split))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
