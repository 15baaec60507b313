"""Rendered clips for training and benches: a fresh FluidSynth per clip, its notes played, the WAV + JSON cache.

Every set the project renders with FluidSynth (the beat tracker's, the chord
listener's, the band's) caches a clip as ``NAME.wav`` and ``NAME.json`` (the
generator's version, the clip's spec and what the render made: its truth), and
renders it again only when either is missing or made by another version or spec.
Each render gets a synth of its own: a synth carries reverb, chorus and voices
from one render into the next, so a shared one made a clip depend on which
clips were rendered before it in the same process.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf

SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


@contextlib.contextmanager
def fluid_synth(sample_rate: int):
    """A fresh FluidSynth at ``sample_rate`` with FluidR3 GM loaded, as (synth, SoundFont id); deleted after."""
    import fluidsynth

    fs = fluidsynth.Synth(samplerate=float(sample_rate))
    try:
        yield fs, fs.sfload(str(SF2))
    finally:
        fs.delete()


def play_timeline(synth, timeline: list[tuple], total: int, sample_rate: int) -> np.ndarray:
    """Play a time-sorted ``timeline`` of (time s, 1 note-on / 0 note-off, channel, MIDI, velocity) through
    ``synth`` (a :func:`fluid_synth` pair, programs already chosen) for ``total`` frames; stereo (total, 2)
    float32, FluidSynth's 16-bit samples / 32768. Events land on the nearest frame; ones after the end are
    left out."""
    fs, _ = synth
    out = np.zeros((total, 2), np.float32)
    pos = 0
    for t, on, ch, m, v in timeline:
        i = min(int(round(t * sample_rate)), total)
        if i > pos:
            out[pos:i] = fs.get_samples(i - pos).reshape(-1, 2) / 32768.0
            pos = i
        if on:
            fs.noteon(ch, m, v)
        else:
            fs.noteoff(ch, m)
    if pos < total:
        out[pos:] = fs.get_samples(total - pos).reshape(-1, 2) / 32768.0
    return out


def cached_clip(folder: Path, spec, version: int, sample_rate: int, build) -> tuple[np.ndarray, dict]:
    """(audio, info) of the clip ``spec`` (a dataclass with a ``name``) cached in ``folder`` as a float WAV
    at ``sample_rate`` and a JSON of ``info``; rendered now by ``build(synth) -> (audio, info)`` (``synth``
    from :func:`fluid_synth`) where missing or made by another ``version`` of the generator or another spec."""
    folder.mkdir(parents=True, exist_ok=True)
    wav, meta = folder / f"{spec.name}.wav", folder / f"{spec.name}.json"
    info = json.loads(meta.read_text()) if meta.exists() and wav.exists() else {}
    if info.get("version") != version or info.get("spec") != asdict(spec):
        with fluid_synth(sample_rate) as synth:
            audio, made = build(synth)
        sf.write(str(wav), audio, sample_rate, subtype="FLOAT")
        info = {"version": version, "spec": asdict(spec)} | made
        meta.write_text(json.dumps(info))
    audio, _ = sf.read(str(wav), dtype="float32")
    return audio, info
