"""Training data of the pitch head, made by the pitch bench's own builders with other seeds.

    python -m cadenza.models.pitch.data      # builds the cache (also done on first use by train)

Dry clips come from :mod:`cadenza.models.pitch.clips`, the pitch bench's builders (4 s at 48 kHz, exact f0
truth): harmonic tones (``synth_clip``), glottal-pulse voices in the low and
mid registers (``voice_clip``) and FluidSynth melodies of the four training
instruments only (flute, violin, trumpet, clarinet; choir, alto sax and cello
stay unseen). Seeds start at :data:`SEED_BASE` (the bench's test part uses
1000-1999, its tuning part 0-999). Each dry clip gets one random condition:
clean (15 %), noise at 0-25 dB SNR (35 %: white, pink, babble or crowd from
the *training* half of the talker pool, power measured over the voiced part as
the bench does), a room of RT60 0.2-1.6 s (30 %), or a room and then noise
(20 %); then a random peak level 0.05-0.9.

Per clip the tracker's own kernel gives the head's inputs per 2 ms hop
(:meth:`cadenza.engine.dsp.pitch.PitchTracker.head_features`), and the truth
is read at each hop's time stamp: f0 (Hz, 0 unvoiced) and the bench's
``scored`` mask (releases' uncertain spans are not scored). Cached in the
gitignored ``data/pitch_head/`` (inputs as float16).
"""

from __future__ import annotations

from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from cadenza.engine.dsp.pitch import PitchTracker
from cadenza.models.pitch import clips as S

ROOT = Path(__file__).resolve().parents[2]

VERSION = 2  # bump when the recipe below changes: the cache is keyed by it
CACHE = ROOT / "data" / "pitch_head"
SEED_BASE = 20000
SPLITS = {"train": (SEED_BASE, 500, 500, 30), "val": (SEED_BASE + 5000, 20, 20, 3)}  # base, synth, voice, fluid/inst
CONDITIONS = ("clean", "noise", "room", "room+noise")
CONDITION_P = (0.15, 0.35, 0.30, 0.20)


def specs(split: str) -> list[tuple]:
    """(kind, seed, arg) of every dry clip of ``split``."""
    base, n_synth, n_voice, n_fluid = SPLITS[split]
    out = [("synth", base + i, None) for i in range(n_synth)]
    out += [("voice", base + 1000 + i, ("low", "mid")[i % 2]) for i in range(n_voice)]
    out += [("fluid", base + 2000 + 100 * k + i, inst) for k, inst in enumerate(S.TRAIN_INSTRUMENTS)
            for i in range(n_fluid)]
    return out


def dry_clip(kind: str, seed: int, arg) -> S.Clip:
    if kind == "synth":
        return S.synth_clip(seed)
    if kind == "voice":
        return S.voice_clip(seed, arg)
    return S.fluid_clip(arg, seed)


def augment(clip: S.Clip, seed: int) -> tuple[np.ndarray, str]:
    """The clip's audio in one random condition (module docstring) and the condition's name."""
    rng = np.random.default_rng(seed + 7)
    x = clip.audio.astype(np.float64)
    condition = str(rng.choice(CONDITIONS, p=CONDITION_P))
    name = condition
    if "room" in condition:
        rt60 = rng.uniform(0.2, 1.6)
        x = fftconvolve(x, S.room_ir(rng, rt60))[: len(x)]
        name += f" rt60={rt60:.2f}"
    if "noise" in condition:
        kind, snr = str(rng.choice(S.NOISES)), rng.uniform(0.0, 25.0)
        voiced = np.interp(np.arange(len(x)) / S.SR, clip.times, (clip.f0 > 0).astype(float)) > 0.5
        if not voiced.any():
            voiced[:] = True
        d = S.noise(kind, rng, len(x), "train")
        x = x + d * np.sqrt(np.mean(x[voiced] ** 2) / np.mean(d[voiced] ** 2) / 10 ** (snr / 10))
        name += f" {kind} {snr:.1f}dB"
    x = rng.uniform(0.05, 0.9) * x / max(np.max(np.abs(x)), 1e-9)
    return x.astype(np.float32), name


def example(spec: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """One clip: inputs (hops, N_INPUTS) float16, truth f0 (hops,) Hz, scored (hops,) bool, condition."""
    kind, seed, arg = spec
    clip = dry_clip(kind, seed, arg)
    audio, condition = augment(clip, seed)
    feats, times = PitchTracker(S.SR, features=True).head_features(audio)
    idx = np.clip(np.round(times / S.GRID_S).astype(int), 0, len(clip.times) - 1)
    inside = times >= 0.0
    return (feats.astype(np.float16), np.where(inside, clip.f0[idx], 0.0).astype(np.float32),
            inside & clip.scored[idx], f"{kind} {seed} {condition}")


def load(split: str) -> dict[str, np.ndarray]:
    """The cached split (built on first use): inputs (clips, hops, N_INPUTS) float16, f0 (clips, hops),
    scored (clips, hops), names (clips,)."""
    path = CACHE / f"{split}_v{VERSION}.npz"
    if not path.exists():
        S.babble_pool()  # build the talker cache once, before the workers need it
        with Pool(2) as pool:
            rows = pool.map(example, specs(split), chunksize=4)
        n = min(r[0].shape[0] for r in rows)
        CACHE.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part.npz")
        np.savez(part, inputs=np.stack([r[0][:n] for r in rows]), f0=np.stack([r[1][:n] for r in rows]),
                 scored=np.stack([r[2][:n] for r in rows]), names=np.array([r[3] for r in rows]))
        part.replace(path)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


if __name__ == "__main__":
    for split in SPLITS:
        d = load(split)
        print(split, d["inputs"].shape, f"{d['f0'].astype(bool).mean():.2f} voiced")
