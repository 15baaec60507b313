"""Training data for the neural vocoder, made here: speech and singing at 24 kHz.

- **Speech**: Debian's espeak-ng reads short sentences in English, German,
  French, Spanish and Italian with several voices (male and female
  variants), pitches and speeds.
- **Singing**: FluidSynth renders of the FluidR3 GM "Choir Aahs" (program 52)
  and "Voice Oohs" (53): random legato melodies in bass, tenor, alto and
  soprano ranges with pitch-bend vibrato.

Split: sentence 0 of every language (all its voices) and every 8th melody are
held out (``test``) for the bench and the tests; the rest is ``train``.

Cache: ``data/vocoder/<split>.npz`` (gitignored) with ``audio`` (int16, one
concatenation at SAMPLE_RATE), ``starts`` (clip start samples) and ``kinds``
(0 speech, 1 singing). Run ``python -m cadenza.models.vocoder.data`` to build it.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "data" / "vocoder"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SAMPLE_RATE = 24000  # Hz

SENTENCES = {
    "en": ["The quick brown fox jumps over the lazy dog.",
           "She sells sea shells by the sea shore every summer.",
           "Please call Stella and ask her to bring these things with her.",
           "We sing together when the lights go down on the stage.",
           "A vocoder turns one voice into a choir of many colours.",
           "Thirty three thieves thought that they thrilled the throne."],
    "de": ["Der schnelle braune Fuchs springt über den faulen Hund.",
           "Wir singen heute Abend zusammen auf der großen Bühne.",
           "Zwölf Boxkämpfer jagen Viktor quer über den Sylter Deich.",
           "Die Musik klingt hell und warm im alten Saal."],
    "fr": ["Le vif renard brun saute par dessus le chien paresseux.",
           "Nous chantons ensemble quand la lumière descend sur la scène.",
           "Les sanglots longs des violons de l'automne blessent mon cœur.",
           "Une voix seule devient un chœur entier."],
    "es": ["El veloz murciélago hindú comía feliz cardillo y kiwi.",
           "Cantamos juntos cuando se apagan las luces del escenario.",
           "La música suena clara y cálida en la sala antigua.",
           "Siete señoras cosen sábanas de seda."],
    "it": ["Quel vituperabile xenofobo zelante assaggia il whisky ed esclama alleluia.",
           "Cantiamo insieme quando le luci si spengono sul palco.",
           "La musica suona chiara e calda nella vecchia sala.",
           "Sopra la panca la capra campa."],
}
VOICES = {
    "en": ["en", "en+f3", "en+m3", "en-us+f2", "en+f4"],
    "de": ["de", "de+f3"],
    "fr": ["fr", "fr+f2"],
    "es": ["es", "es+f3"],
    "it": ["it", "it+m3"],
}
SPEECH_TAKES = 3  # pitch / speed variants per sentence and voice
CHOIR_PROGRAMS = (52, 53)  # GM Choir Aahs, Voice Oohs (0-based)
RANGES = ((40, 60), (48, 67), (55, 74), (60, 81))  # bass, tenor, alto, soprano (MIDI)
MELODIES_PER_PROGRAM = 48
BEND_RANGE = 2.0  # semitones (GM default)


def speak(text: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    """espeak-ng speech as float32 at SAMPLE_RATE."""
    from scipy.signal import resample_poly
    import soundfile as sf

    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", tmp.name, text],
                       check=True, capture_output=True)
        audio, sr = sf.read(tmp.name, dtype="float32")
    if sr != SAMPLE_RATE:
        audio = resample_poly(audio, SAMPLE_RATE, sr).astype(np.float32)
    return audio


def sing(program: int, seed: int) -> np.ndarray:
    """One random legato melody on a FluidR3 voice patch, float32 at SAMPLE_RATE (about 8 s)."""
    import fluidsynth

    rng = np.random.default_rng(seed)
    low, high = RANGES[seed % len(RANGES)]
    synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE))
    synth.setting("synth.reverb.active", 0)
    synth.setting("synth.chorus.active", 0)
    sfid = synth.sfload(str(SOUNDFONT))
    synth.program_select(0, sfid, 0, program)
    chunk = 120  # samples between controller updates (5 ms)
    out = []
    note = int(rng.integers(low + 4, high - 4))
    vib_hz, vib_cents = rng.uniform(4.5, 6.5), rng.uniform(0.0, 40.0)
    t = 0
    for _ in range(int(rng.integers(8, 14))):
        note = int(np.clip(note + rng.choice([-4, -3, -2, -1, 0, 1, 2, 3, 5]), low, high))
        synth.noteon(0, note, int(rng.integers(60, 120)))
        n_chunks = int(rng.uniform(0.3, 1.2) * SAMPLE_RATE / chunk)
        for c in range(n_chunks):
            depth = min(1.0, c * chunk / (0.3 * SAMPLE_RATE))  # vibrato fades in
            cents = depth * vib_cents * np.sin(2 * np.pi * vib_hz * t / SAMPLE_RATE)
            synth.pitch_bend(0, int(np.clip(cents / (BEND_RANGE * 100) * 8192, -8192, 8191)))
            out.append(synth.get_samples(chunk)[::2])
            t += chunk
        synth.noteoff(0, note)
        if rng.random() < 0.3:  # a short breath between phrases
            out.append(synth.get_samples(int(0.15 * SAMPLE_RATE))[::2])
            t += int(0.15 * SAMPLE_RATE)
    out.append(synth.get_samples(int(0.4 * SAMPLE_RATE))[::2])
    synth.delete()
    return np.concatenate(out).astype(np.float32) / 32768.0


def clips(split: str):
    """Yield (kind, float32 audio) for the split: 0 speech, 1 singing. Deterministic."""
    rng = np.random.default_rng(7)
    for lang, sentences in SENTENCES.items():
        for i, text in enumerate(sentences):
            for voice in VOICES[lang]:
                for _ in range(SPEECH_TAKES):
                    pitch, speed = int(rng.integers(20, 80)), int(rng.integers(130, 190))
                    if (i == 0) == (split == "test"):
                        yield 0, speak(text, voice, pitch, speed)
    for program in CHOIR_PROGRAMS:
        for m in range(MELODIES_PER_PROGRAM):
            if (m % 8 == 3) == (split == "test"):
                yield 1, sing(program, 1000 * program + m)


def build(split: str) -> Path:
    """Render the split's clips, peak-normalise each to a random level, and cache them."""
    from tqdm import tqdm

    rng = np.random.default_rng(11 if split == "train" else 12)
    audio, starts, kinds, pos = [], [], [], 0
    for kind, clip in tqdm(clips(split), desc=f"vocoder data {split}", unit="clip"):
        clip = clip / max(float(np.abs(clip).max()), 1e-6) * rng.uniform(0.3, 0.9)
        audio.append(np.round(clip * 32767).astype(np.int16))
        starts.append(pos)
        kinds.append(kind)
        pos += clip.shape[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{split}.npz"
    np.savez(path, audio=np.concatenate(audio), starts=np.array(starts), kinds=np.array(kinds))
    return path


def load(split: str) -> list[tuple[int, np.ndarray]]:
    """Cached clips of a split as (kind, float32 audio), building the cache if missing."""
    path = CACHE / f"{split}.npz"
    if not path.exists():
        build(split)
    data = np.load(path)
    audio = data["audio"].astype(np.float32) / 32767.0
    bounds = list(data["starts"]) + [audio.shape[0]]
    return [(int(k), audio[a:b]) for k, a, b in zip(data["kinds"], bounds[:-1], bounds[1:])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("train", "test", "both"), default="both")
    args = parser.parse_args(argv)
    for split in ("train", "test") if args.split == "both" else (args.split,):
        print(build(split))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
