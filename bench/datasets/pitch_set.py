"""The pitch benchmark's test set, built here with exact ground truth.

Two sources, each rendered clean, with white noise at 20 dB SNR and with reverb:

- ``synth``: harmonic tones 60-1500 Hz with vibrato, glides, weak fundamentals,
  formant envelopes, legato and detached notes (truth: the synthesis f0);
- ``fluid``: FluidSynth (FluidR3 GM) monophonic melodies with pitch-bend
  vibrato and scoops (truth: the MIDI note + bend, on FluidSynth's 64-sample
  event grid, so the renderer adds no event delay, plus each sample's measured
  tuning offset — FluidR3 samples sit up to tens of cents off their nominal
  pitch; see :func:`sample_tuning`). Releases are cut to a quarter and a
  legato change stops the old note (notes alternate between two channels), as
  a monophonic player would; a sampler's long release would otherwise ring the
  old pitch under the new one.

Truth is a 2 ms grid of f0 (Hz, 0 unvoiced) and a ``scored`` mask: a note's
audible release (dry level within 30 dB of the note's peak) counts as voiced
at its last pitch, and the 30 ms before to 150 ms after the release fades out
are not scored — the sound there is neither clearly on nor off (reverb tails
in that span are not counted as false alarms).

The training part (tuning) and the test part use disjoint seeds; the test
part also has instruments the tuning never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

SR = 48000
GRID_S = 0.002  # truth grid, s
CLIP_S = 4.0
RELEASE_S = 0.15  # scoring skips this long after a release fades out (or until the next onset)
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

# GM program, MIDI note range
INSTRUMENTS = {
    "flute": (73, 62, 93), "violin": (40, 55, 91), "trumpet": (56, 55, 82),
    "clarinet": (71, 50, 86), "choir": (52, 48, 77), "alto_sax": (65, 49, 80),
    "cello": (42, 36, 69),
}
TRAIN_INSTRUMENTS = ("flute", "violin", "trumpet", "clarinet")
UNSEEN_INSTRUMENTS = ("choir", "alto_sax", "cello")
CONDITIONS = ("clean", "snr20", "reverb")


@dataclass
class Clip:
    name: str
    source: str  # "synth" | "fluid"
    audio: np.ndarray  # float32 mono at SR
    times: np.ndarray  # truth grid, s
    f0: np.ndarray  # truth f0, Hz, 0 unvoiced
    scored: np.ndarray  # bool, frames that count


@dataclass
class Note:
    start: float  # s
    end: float  # s
    midi: float  # start pitch (fractional MIDI)
    glide_from: float  # semitones offset at the onset, decaying to 0 over glide_s
    glide_s: float
    vib_rate: float  # Hz
    vib_cents: float  # depth, ± cents
    velocity: int


def melody(rng, lo, hi, seconds=CLIP_S) -> list[Note]:
    """A random monophonic line: steps and leaps, legato or detached, vibrato and scoops."""
    notes, t = [], rng.uniform(0.05, 0.3)
    m = rng.uniform(lo + 3, hi - 3)
    while t < seconds - 0.3:
        dur = rng.uniform(0.2, 0.8)
        end = min(t + dur, seconds - 0.1)
        glide = rng.choice([0.0, 0.0, rng.uniform(-1.5, 1.5)])
        notes.append(Note(t, end, round(m), glide, rng.uniform(0.05, 0.15), rng.uniform(4.5, 7.0),
                          rng.choice([0.0, rng.uniform(10, 60)]), int(rng.integers(60, 120))))
        t = end if rng.random() < 0.4 else end + rng.uniform(0.04, 0.3)
        step = rng.choice([-2, -1, 1, 2, 3, -3, 5, -5, 7, -7, 12, -12])
        m = float(np.clip(m + step, lo, hi))
    return notes


def pitch_curve(notes: list[Note], t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MIDI pitch (fractional) and voiced flag at times ``t``; vibrato starts 0.15 s into a note."""
    midi = np.zeros_like(t)
    on = np.zeros(t.shape, bool)
    for n in notes:
        sel = (t >= n.start) & (t < n.end)
        tt = t[sel] - n.start
        vib = n.vib_cents / 100.0 * np.sin(2 * np.pi * n.vib_rate * tt) * np.clip((tt - 0.15) / 0.1, 0, 1)
        midi[sel] = n.midi + n.glide_from * np.clip(1 - tt / n.glide_s, 0, 1) + vib
        on[sel] = True
    return midi, on


def release_truth(x: np.ndarray, notes: list[Note], times: np.ndarray, ref: np.ndarray):
    """Extend the truth into each note's audible release; return (ref, scored).

    After a note-off the instrument still sounds at the note's last pitch until
    its level (10 ms RMS of the dry render) falls 30 dB below the note's peak,
    or the next note starts: those frames are voiced in the truth. Frames from
    30 ms before to ``RELEASE_S`` after that point are not scored.
    """
    power = np.convolve(x.astype(np.float64) ** 2, np.ones(480) / 480, mode="same")
    level = 10 * np.log10(power[np.minimum((times * SR).astype(int), len(x) - 1)] + 1e-12)
    ref = ref.copy()
    scored = np.ones(times.shape, bool)
    starts = np.array(sorted(n.start for n in notes))
    for n in notes:
        nxt = min([s for s in starts if s >= n.end - 1e-9] + [times[-1] + GRID_S])
        during = (times >= n.start) & (times < n.end)
        if not during.any():
            continue
        peak = level[during].max()
        last = ref[during][-1]
        after = np.where((times >= n.end) & (times < nxt))[0]
        quiet = after[level[after] < peak - 30.0]
        stop = times[quiet[0]] if len(quiet) else nxt
        ref[(times >= n.end) & (times < stop)] = last
        scored[(times >= stop - 0.03) & (times < min(stop + RELEASE_S, nxt))] = False
    return ref, scored


def midi_to_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m) - 69.0) / 12.0)


def synth_clip(seed: int) -> Clip:
    """Harmonic tones with per-note timbre: slope, formants, weak fundamental, vibrato, glides."""
    rng = np.random.default_rng(seed)
    lo, hi = 35.0, 90.0  # ~62-1480 Hz
    notes = melody(rng, lo, hi)
    t = np.arange(int(CLIP_S * SR)) / SR
    midi, on = pitch_curve(notes, t)
    f0 = np.where(on, midi_to_hz(np.where(on, midi, 60.0)), 0.0)
    x = np.zeros_like(t)
    for n in notes:
        i0, i1 = int(n.start * SR), int(n.end * SR)
        seg_f = f0[i0:i1]
        phase = 2 * np.pi * np.cumsum(seg_f) / SR + rng.uniform(0, 2 * np.pi)
        slope = rng.uniform(3, 12)  # dB per octave roll-off
        formants = rng.uniform(300, 3500, size=int(rng.integers(0, 4)))
        weak_f1 = rng.random() < 0.3
        f_base = midi_to_hz(n.midi)
        n_harm = int(min(40, (0.45 * SR) // (f_base * 1.1)))
        env = np.ones(i1 - i0)
        a, r = int(rng.uniform(0.005, 0.04) * SR), int(0.02 * SR)
        env[:a] = np.linspace(0, 1, a)
        env[-r:] *= np.linspace(1, 0, r)
        seg = np.zeros(i1 - i0)
        for h in range(1, n_harm + 1):
            fh = h * f_base
            amp = 10 ** (-slope * np.log2(h) / 20)
            for fc in formants:
                amp *= 1 + 4 * np.exp(-0.5 * ((fh - fc) / (0.12 * fc)) ** 2)
            if h == 1 and weak_f1:
                amp *= 10 ** (-rng.uniform(15, 35) / 20)
            amp *= rng.uniform(0.7, 1.3)
            seg += amp * np.sin(h * phase) * (h * seg_f < 0.45 * SR)
        seg *= env * (n.velocity / 127) / max(np.max(np.abs(seg)), 1e-9)
        x[i0:i1] += seg
    x = 0.3 * x / max(np.max(np.abs(x)), 1e-9)
    times = np.arange(0, CLIP_S, GRID_S)
    ref_midi, ref_on = pitch_curve(notes, times)
    ref = np.where(ref_on, midi_to_hz(np.where(ref_on, ref_midi, 60.0)), 0.0)
    return Clip(f"synth{seed}", "synth", x.astype(np.float32), times, *release_truth(x, notes, times, ref))


_TUNING: dict[tuple[int, int], float] = {}


def sample_tuning(program: int, note: int) -> float:
    """How far FluidR3 plays ``note`` from its nominal pitch, in semitones.

    A 1.5 s steady render (no bend) is analysed with librosa's YIN over 85 ms
    windows; the median over its last second is the offset (0 when beyond
    ±1 semitone: no calibration then). The truth adds it to every frame of
    that note, so no tracker is scored against a sample's own mistuning.
    """
    import fluidsynth
    import librosa

    key = (program, note)
    if key not in _TUNING:
        fs = fluidsynth.Synth(samplerate=float(SR), gain=0.5)
        fs.program_select(0, fs.sfload(SOUNDFONT), 0, program)
        fs.cc(0, 91, 0)
        fs.cc(0, 93, 0)
        fs.noteon(0, note, 100)
        x = fs.get_samples(int(1.5 * SR))[::2].astype(np.float32) / 32768.0
        fs.delete()
        f_nom = float(midi_to_hz(note))
        f0 = librosa.yin(x[int(0.5 * SR):], fmin=f_nom / 1.5, fmax=f_nom * 1.5, sr=SR, frame_length=4096,
                         hop_length=512)
        off = 12 * np.log2(np.median(f0) / f_nom)
        _TUNING[key] = float(off) if abs(off) < 1.0 else 0.0
    return _TUNING[key]


GEN_VOLENVRELEASE = 38  # SoundFont generator: volume envelope release, timecents


def shorten_release(fs, channel: int, timecents: float = -2400.0) -> None:
    """Cut the release of ``channel`` to a quarter (a monophonic player does not let
    a note ring on as long as a sampler's release does)."""
    import ctypes

    import fluidsynth

    set_gen = fluidsynth._fl.fluid_synth_set_gen
    set_gen.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_float]
    set_gen(fs.synth, channel, GEN_VOLENVRELEASE, timecents)


def fluid_clip(instrument: str, seed: int) -> Clip:
    """A FluidSynth melody with pitch-bend vibrato; events land on its 64-sample grid."""
    import fluidsynth

    program, lo, hi = INSTRUMENTS[instrument]
    rng = np.random.default_rng(seed)
    notes = melody(rng, lo, hi)
    step = 64  # FluidSynth's internal block: events apply at its boundaries
    fs = fluidsynth.Synth(samplerate=float(SR), gain=0.5)
    sfid = fs.sfload(SOUNDFONT)
    for ch in (0, 1):  # successive notes alternate channels, so a legato change can cut the old one
        fs.program_select(ch, sfid, 0, program)
        fs.cc(ch, 91, 0)  # no built-in reverb / chorus: the dry instrument
        fs.cc(ch, 93, 0)
        shorten_release(fs, ch)
    n_steps = int(CLIP_S * SR) // step
    grid = np.arange(n_steps) * step / SR
    midi, on = pitch_curve(notes, grid)
    chunks = []
    sounding = None
    for k in range(n_steps):
        t0 = grid[k]
        for i, n in enumerate(notes):
            if sounding is not None and sounding[1] is n and t0 >= n.end:
                ch = sounding[0]
                fs.noteoff(ch, int(n.midi))
                if i + 1 < len(notes) and notes[i + 1].start <= n.end + 1e-9:
                    fs.cc(ch, 120, 0)  # legato: the old note stops as the next begins
                sounding = None
            if sounding is None and n.start <= t0 < n.end:
                ch = i % 2
                fs.pitch_bend(ch, int(np.clip(round((midi[k] - n.midi) / 2 * 8192), -8192, 8191)))
                fs.noteon(ch, int(n.midi), n.velocity)
                sounding = (ch, n)
        if sounding is not None:
            ch, n = sounding
            fs.pitch_bend(ch, int(np.clip(round((midi[k] - n.midi) / 2 * 8192), -8192, 8191)))
        chunks.append(fs.get_samples(step)[::2])
    fs.delete()
    x = np.concatenate(chunks).astype(np.float32) / 32768.0
    # the truth follows what was sent on the same 64-sample grid (bend held within a step)
    times = np.arange(0, CLIP_S, GRID_S)
    k = np.minimum((times * SR) // step, n_steps - 1).astype(int)
    tuning = np.zeros(n_steps)
    for n in notes:
        tuning[(grid >= n.start) & (grid < n.end)] = sample_tuning(program, int(n.midi))
    ref = np.where(on[k], midi_to_hz(np.where(on[k], midi[k] + tuning[k], 60.0)), 0.0)
    peak = max(np.max(np.abs(x)), 1e-9)
    return Clip(f"{instrument}{seed}", "fluid", (0.3 * x / peak).astype(np.float32), times,
                *release_truth(x, notes, times, ref))


def room_ir(rng, rt60: float) -> np.ndarray:
    """A synthetic room: direct path, early reflections, exponentially decaying noise tail."""
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.008 * SR)] = 0.0
    for _ in range(6):
        tail[int(rng.uniform(0.003, 0.03) * SR)] += rng.uniform(-0.5, 0.5)
    tail *= 0.6 / np.sqrt(np.sum(tail ** 2))  # direct-to-reverberant ~ +4 dB
    tail[0] = 1.0
    return tail


def degrade(clip: Clip, condition: str, seed: int) -> Clip:
    rng = np.random.default_rng(seed + 7919)
    x = clip.audio.astype(np.float64)
    if condition == "snr20":
        voiced = np.interp(np.arange(len(x)) / SR, clip.times, (clip.f0 > 0).astype(float)) > 0.5
        power = np.mean(x[voiced] ** 2) if voiced.any() else np.mean(x ** 2)
        x = x + rng.standard_normal(len(x)) * np.sqrt(power / 100.0)
    elif condition == "reverb":
        x = fftconvolve(x, room_ir(rng, rng.uniform(0.4, 0.9)))[: len(x)]
    x = 0.3 * x / max(np.max(np.abs(x)), 1e-9)
    return Clip(f"{clip.name}_{condition}", clip.source, x.astype(np.float32), clip.times, clip.f0, clip.scored)


def low_note_clip(f0_hz: float = 65.0, seed: int = 5) -> Clip:
    """One sustained harmonic note at ``f0_hz`` with 6 Hz, ±40 cent vibrato: the low-pitch delay probe."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(2.0 * SR)) / SR
    f = f0_hz * 2 ** (0.4 / 12 * np.sin(2 * np.pi * 6.0 * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum((1 / h) * np.sin(h * phase + rng.uniform(0, 6.28)) for h in range(1, 30))
    x = 0.3 * x / np.max(np.abs(x))
    times = np.arange(0, 2.0, GRID_S)
    ref = np.interp(times, t, f)
    return Clip(f"low{int(f0_hz)}", "synth", x.astype(np.float32), times, ref, times > 0.1)


def build(part: str, n_synth: int, n_per_instrument: int, instruments=None) -> list[Clip]:
    """The ``train`` or ``test`` part: every clip in every condition."""
    base = 0 if part == "train" else 1000
    instruments = instruments or (TRAIN_INSTRUMENTS if part == "train" else tuple(INSTRUMENTS))
    dry = [synth_clip(base + i) for i in range(n_synth)]
    dry += [fluid_clip(inst, base + 100 + 10 * list(INSTRUMENTS).index(inst) + i) for inst in instruments
            for i in range(n_per_instrument)]
    return [degrade(c, cond, base + k) for k, c in enumerate(dry) for cond in CONDITIONS]
