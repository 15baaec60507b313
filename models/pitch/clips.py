"""The pitch clips, built here with exact ground truth: the pitch benchmark's test and tuning parts
(``bench/pitch.py``) and, with other seeds, the learned head's training data (:mod:`.data`).

Three sources, 4 s clips at 48 kHz:

- ``synth``: harmonic tones 60-1500 Hz with vibrato, glides, weak fundamentals,
  formant envelopes, legato and detached notes (truth: the synthesis f0);
- ``fluid``: FluidSynth (FluidR3 GM) monophonic melodies with pitch-bend
  vibrato and scoops (truth: the MIDI note + bend, on FluidSynth's 64-sample
  event grid, so the renderer adds no event delay, plus each sample's measured
  tuning offset — FluidR3 samples sit up to tens of cents off their nominal
  pitch; see :func:`sample_tuning`). Releases are cut to a quarter and a
  legato change stops the old note (notes alternate between two channels), as
  a monophonic player would; a sampler's long release would otherwise ring the
  old pitch under the new one;
- ``voice``: a sung line from a Rosenberg glottal pulse train through a
  cascade of five formant resonators (:func:`voice_clip`). Clips alternate a
  ``low`` register (MIDI 35-50, 62-147 Hz, adult male vowels) and a ``mid``
  one (MIDI 45-67, 110-392 Hz, adult female vowels); each note sings its own
  vowel (a, e, i, o, u; formants glide 40 ms into it) and its own phonation:
  modal, breathy (open quotient 0.8-0.9, a smooth closure and pulsed
  aspiration noise 8-14 dB below the pulses) or pressed (open quotient
  0.35-0.45, a sharp closure). Some detached notes start with a 60 ms
  aspirated "h" (unvoiced in the truth). Jitter (0.3 % rms f0, ~5 cents) and
  shimmer (4 % rms amplitude) change at 2.5 ms knots; the truth is the f0
  that drives the pulse train, jitter excluded.

Each dry clip is scored in five conditions:

- ``clean``;
- ``snr20`` and ``snr10``: noise at 20 / 10 dB SNR, both powers measured over
  the truth's voiced part. The noise kind cycles per clip over ``white``,
  ``pink`` (1/f power, FFT-shaped), ``babble`` (4-6 espeak-ng talkers in ten
  languages, male and female, pitches and rates varied) and ``crowd`` (15-20
  talkers low-passed at 2 kHz, pink noise 6 dB below them, 1-3 hand claps
  ~10 dB above them): clip k gets kind k mod 4 at 20 dB and k + 1 mod 4 at
  10 dB. The kind is in the clip's name (``..._snr10-babble``) and in
  ``Clip.noise``. Train and test draw talkers from disjoint halves of the
  utterance pool (each half: two of the four voice variants of every
  language, male and female; built once with espeak-ng, cached in
  ``data/``);
- ``reverb`` and ``room``: convolved with a synthetic room (:func:`room_ir`,
  direct path, early reflections, exponential noise tail about 4 dB below
  the direct sound) of RT60 0.4-0.9 s and 1.0-1.5 s.

Truth is a 2 ms grid of f0 (Hz, 0 unvoiced) and a ``scored`` mask: a note's
audible release (dry level within 30 dB of the note's peak) counts as voiced
at its last pitch, and the 30 ms before to 150 ms after the release fades out
are not scored — the sound there is neither clearly on nor off. Reverb tails
beyond that span are scored as unvoiced (they count as false alarms).

The training part (tuning) and the test part use disjoint seeds; the test
part also has instruments the tuning never saw.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt, sosfiltfilt

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
CONDITIONS = ("clean", "snr20", "snr10", "reverb", "room")
SNR_DB = {"snr20": 20.0, "snr10": 10.0}
RT60_S = {"reverb": (0.4, 0.9), "room": (1.0, 1.5)}  # uniform range
NOISES = ("white", "pink", "babble", "crowd")


@dataclass
class Clip:
    name: str
    source: str  # "synth" | "fluid" | "voice"
    audio: np.ndarray  # float32 mono at SR
    times: np.ndarray  # truth grid, s
    f0: np.ndarray  # truth f0, Hz, 0 unvoiced
    scored: np.ndarray  # bool, frames that count
    condition: str = "clean"  # one of CONDITIONS, or "probe" (a delay probe, in no subset)
    noise: str = ""  # the noise kind of snr20 / snr10, else ""


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


# -- voice ------------------------------------------------------------------------------------

VOICE_RANGES = {"low": (35.0, 50.0), "mid": (45.0, 67.0)}  # MIDI: 62-147 Hz, 110-392 Hz
VOWELS = {  # F1-F5, Hz (Peterson & Barney's men / women for F1-F3)
    "low": {"a": (730, 1090, 2440, 3400, 4200), "e": (530, 1840, 2480, 3450, 4250),
            "i": (270, 2290, 3010, 3500, 4300), "o": (570, 840, 2410, 3350, 4150),
            "u": (300, 870, 2240, 3300, 4100)},
    "mid": {"a": (850, 1220, 2810, 3800, 4700), "e": (610, 2330, 2990, 3900, 4800),
            "i": (310, 2790, 3310, 4000, 4900), "o": (590, 920, 2710, 3750, 4650),
            "u": (370, 950, 2670, 3700, 4600)},
}
BANDWIDTHS = np.array([60.0, 80.0, 110.0, 150.0, 200.0])  # formant bandwidths, Hz
PHONATIONS = {  # open quotient range, closing share of the open phase, aspiration dB below the pulses
    "modal": ((0.55, 0.65), 0.33, 30.0),
    "breathy": ((0.8, 0.9), 0.5, 11.0),
    "pressed": ((0.35, 0.45), 0.12, 40.0),
}
JITTER, SHIMMER = 0.003, 0.04  # rms relative f0 / amplitude deviation, drawn at 2.5 ms knots
FILTER_BLOCK = 120  # formant coefficients change every 2.5 ms


def rosenberg(frac: np.ndarray, oq: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Rosenberg glottal flow (0-1) at period fraction ``frac``: opens over ``oq * (1 - share)``,
    closes over ``oq * share``, shut for the rest of the period."""
    tp, tn = oq * (1 - share), oq * share
    opening = 0.5 * (1 - np.cos(np.pi * frac / tp))
    closing = np.cos(0.5 * np.pi * (frac - tp) / tn)
    return np.where(frac < tp, opening, np.where(frac < oq, closing, 0.0))


def formant_filter(src: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """A cascade of two-pole resonators (unity gain at DC), ``formants`` (5, n) Hz, updated per block."""
    out = np.zeros_like(src)
    zi = np.zeros((len(bandwidths), 2))
    r = np.exp(-np.pi * bandwidths / SR)
    for b0 in range(0, len(src), FILTER_BLOCK):
        c = 2 * r * np.cos(2 * np.pi * formants[:, b0] / SR)
        sos = np.column_stack([1 - c + r * r, np.zeros_like(c), np.zeros_like(c), np.ones_like(c), -c, r * r])
        out[b0:b0 + FILTER_BLOCK], zi = sosfilt(sos, src[b0:b0 + FILTER_BLOCK], zi=zi)
    return out


def voice_clip(seed: int, register: str) -> Clip:
    """A sung line: glottal pulses driven by the melody's f0 through per-note vowel formants."""
    rng = np.random.default_rng(seed)
    notes = melody(rng, *VOICE_RANGES[register])
    n = int(CLIP_S * SR)
    t = np.arange(n) / SR
    midi, on = pitch_curve(notes, t)
    f0 = np.where(on, midi_to_hz(np.where(on, midi, 60.0)), 0.0)
    knots = np.arange(0.0, CLIP_S + 0.005, 0.0025)
    jitter = np.interp(t, knots, rng.normal(0, JITTER, len(knots)))
    shimmer = np.interp(t, knots, rng.normal(0, SHIMMER, len(knots)))
    frac = np.cumsum(f0 * (1 + jitter)) / SR % 1.0  # phase, periods (held through silence)

    oq, share, asp_db, env = np.full(n, 0.6), np.full(n, 0.33), np.full(n, 30.0), np.zeros(n)
    breath = np.zeros(n)  # aspirated onsets before a note, unvoiced
    vowels = list(VOWELS[register].values())
    tract = rng.uniform(0.92, 1.08)  # vocal tract length: scales every formant
    f_knots, f_vals = [0.0], [vowels[int(rng.integers(5))]]
    for i, note in enumerate(notes):
        i0, i1 = int(note.start * SR), int(note.end * SR)
        (oq_lo, oq_hi), sh, asp = PHONATIONS[rng.choice(list(PHONATIONS))]
        oq[i0:i1], share[i0:i1], asp_db[i0:i1] = rng.uniform(oq_lo, oq_hi), sh, asp + rng.uniform(-3, 3)
        legato_in = i > 0 and notes[i - 1].end >= note.start - 1e-9
        legato_out = i + 1 < len(notes) and notes[i + 1].start <= note.end + 1e-9
        seg = np.full(i1 - i0, note.velocity / 127) * (1 + shimmer[i0:i1])
        if not legato_in:
            a = int(rng.uniform(0.01, 0.05) * SR)
            seg[:a] *= np.linspace(0, 1, a)
            gap = note.start - (notes[i - 1].end if i else 0.0)
            if gap > 0.1 and rng.random() < 0.4:
                h = int(0.06 * SR)
                breath[i0 - h:i0] = note.velocity / 127 * np.linspace(0, 1, h)
        if not legato_out:
            r = int(rng.uniform(0.02, 0.04) * SR)
            seg[-r:] *= np.linspace(1, 0, r)
        env[i0:i1] = seg
        f_knots += [note.start, note.start + 0.04]
        f_vals += [f_vals[-1], vowels[int(rng.integers(5))]]
    formants = tract * np.array([np.interp(t, f_knots, [v[k] for v in f_vals]) for k in range(5)])

    flow = rosenberg(frac, oq, share)
    pulses = np.diff(flow, prepend=flow[0]) * SR / np.maximum(f0, 1.0)  # flow derivative per period
    pulses *= env
    ref_level = np.sqrt(np.mean(pulses[env > 0] ** 2))
    hiss = sosfilt(butter(2, 500, "highpass", fs=SR, output="sos"), rng.standard_normal(n))
    hiss *= ref_level * (env * 10 ** (-asp_db / 20) * (0.3 + 0.7 * flow) + breath * 10 ** (-10 / 20))
    x = formant_filter(pulses + hiss, formants, BANDWIDTHS * rng.uniform(0.8, 1.3))
    x = 0.3 * x / max(np.max(np.abs(x)), 1e-9)
    times = np.arange(0, CLIP_S, GRID_S)
    ref_midi, ref_on = pitch_curve(notes, times)
    ref = np.where(ref_on, midi_to_hz(np.where(ref_on, ref_midi, 60.0)), 0.0)
    return Clip(f"voice-{register}{seed}", "voice", x.astype(np.float32), times,
                *release_truth(x, notes, times, ref))


# -- noise --------------------------------------------------------------------------------------

BABBLE_VERSION = 1  # bump when the utterances below change: the cache is keyed by it
BABBLE_CACHE = Path(__file__).resolve().parents[2] / "data" / f"pitch_babble_v{BABBLE_VERSION}.npz"
BABBLE_TEXTS = {
    "en-us": "The quick brown fox jumps over the lazy dog while the band keeps playing.",
    "en-gb": "We were waiting by the bar when the second set began, and nobody could hear a thing.",
    "de": "Heute Abend spielen wir ein neues Lied, und alle singen laut mit.",
    "fr-fr": "Ce soir nous jouons une nouvelle chanson, et tout le monde chante avec nous.",
    "es": "Esta noche tocamos una canción nueva y todos cantan con nosotros.",
    "it": "Stasera suoniamo una canzone nuova e tutti cantano insieme a noi.",
    "pt": "Hoje à noite tocamos uma canção nova e todos cantam juntos.",
    "nl": "Vanavond spelen we een nieuw lied en iedereen zingt hard mee.",
    "pl": "Dziś wieczorem gramy nową piosenkę i wszyscy śpiewają razem.",
    "fi": "Tänä iltana soitamme uuden laulun ja kaikki laulavat mukana.",
}
BABBLE_VARIANTS = (("m1", 35, 150), ("f2", 55, 170), ("m3", 60, 185), ("f4", 40, 140))  # variant, pitch, wpm


def babble_pool() -> list[np.ndarray]:
    """Utterances (float32 at SR, unit rms): every text in every voice variant, built once by espeak-ng."""
    if not BABBLE_CACHE.exists():
        import tempfile

        import soundfile as sf
        import soxr

        pool = []
        with tempfile.TemporaryDirectory() as tmp:
            for lang, text in BABBLE_TEXTS.items():
                for variant, pitch, wpm in BABBLE_VARIANTS:
                    wav = f"{tmp}/u.wav"
                    subprocess.run(["espeak-ng", "-w", wav, "-v", f"{lang}+{variant}", "-p", str(pitch),
                                    "-s", str(wpm), text], check=True, capture_output=True)
                    y, sr = sf.read(wav, dtype="float32")
                    y = soxr.resample(y, sr, SR)
                    pool.append(y / np.sqrt(np.mean(y ** 2)))
        BABBLE_CACHE.parent.mkdir(parents=True, exist_ok=True)
        np.savez(BABBLE_CACHE, *pool)
    with np.load(BABBLE_CACHE) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def talkers(rng, pool: list[np.ndarray], count: int, n: int) -> np.ndarray:
    """``count`` talkers, each a run of random utterances with 50-400 ms pauses, ±3 dB, summed."""
    out = np.zeros(n)
    for _ in range(count):
        parts, total = [], 0
        while total < 2 * n:
            u = pool[int(rng.integers(len(pool)))]
            parts += [u, np.zeros(int(rng.uniform(0.05, 0.4) * SR))]
            total += len(u) + len(parts[-1])
        s = np.concatenate(parts)
        off = int(rng.integers(0, len(s) - n))
        out += s[off:off + n] * 10 ** (rng.uniform(-3, 3) / 20)
    return out


def pink(rng, n: int) -> np.ndarray:
    """1/f (pink) noise: white noise's spectrum shaped by 1/sqrt(f), unit rms."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[0] = 0.0
    spec[1:] /= np.sqrt(f[1:])
    y = np.fft.irfft(spec, n)
    return y / np.sqrt(np.mean(y ** 2))


def crowd(rng, pool: list[np.ndarray], n: int) -> np.ndarray:
    """15-20 talkers low-passed at 2 kHz, pink noise 6 dB below them, 1-3 claps ~10 dB above them."""
    y = sosfiltfilt(butter(4, 2000, fs=SR, output="sos"), talkers(rng, pool, int(rng.integers(15, 21)), n))
    level = np.sqrt(np.mean(y ** 2))
    y += pink(rng, n) * level * 10 ** (-6 / 20)
    band = butter(2, (800, 5000), "bandpass", fs=SR, output="sos")
    k = int(0.04 * SR)
    for _ in range(int(rng.integers(1, 4))):
        clap = sosfilt(band, rng.standard_normal(k)) * np.exp(-np.arange(k) / (0.008 * SR))
        at = int(rng.integers(0, n - k))
        y[at:at + k] += clap * level * 10 ** (10 / 20) / np.sqrt(np.mean(clap[: k // 4] ** 2))
    return y


def noise(kind: str, rng, n: int, part: str) -> np.ndarray:
    """``kind`` noise, n samples. Babble and crowd use the part's half of the utterance pool: two
    of the four voice variants of every language, alternating, so each half has male and female."""
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return pink(rng, n)
    per = len(BABBLE_VARIANTS)  # the pool runs language by language, variant by variant
    pool = [u for i, u in enumerate(babble_pool()) if (i // per + i % per) % 2 == (part != "train")]
    if kind == "babble":
        return talkers(rng, pool, int(rng.integers(4, 7)), n)
    return crowd(rng, pool, n)


def noise_kind(seed: int, condition: str) -> str:
    """The noise kind clip ``seed`` gets: cycles with the seed, one step further at 10 dB."""
    return NOISES[(seed + (condition == "snr10")) % len(NOISES)]


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


def degrade(clip: Clip, condition: str, seed: int, part: str = "test") -> Clip:
    """``clip`` in ``condition`` (see the module docstring), peak-normalised to 0.3."""
    rng = np.random.default_rng(seed + 7919)
    x = clip.audio.astype(np.float64)
    kind = ""
    if condition in SNR_DB:
        kind = noise_kind(seed, condition)
        voiced = np.interp(np.arange(len(x)) / SR, clip.times, (clip.f0 > 0).astype(float)) > 0.5
        if not voiced.any():
            voiced[:] = True
        d = noise(kind, rng, len(x), part)
        x = x + d * np.sqrt(np.mean(x[voiced] ** 2) / np.mean(d[voiced] ** 2) / 10 ** (SNR_DB[condition] / 10))
    elif condition in RT60_S:
        x = fftconvolve(x, room_ir(rng, rng.uniform(*RT60_S[condition])))[: len(x)]
    x = 0.3 * x / max(np.max(np.abs(x)), 1e-9)
    name = f"{clip.name}_{condition}" + (f"-{kind}" if kind else "")
    return Clip(name, clip.source, x.astype(np.float32), clip.times, clip.f0, clip.scored, condition, kind)


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
    return Clip(f"low{int(f0_hz)}", "synth", x.astype(np.float32), times, ref, times > 0.1, "probe")


def build(part: str, n_synth: int, n_per_instrument: int, n_voice: int = 0, instruments=None) -> list[Clip]:
    """The ``train`` or ``test`` part: every clip in every condition; voices alternate low and mid."""
    base = 0 if part == "train" else 1000
    instruments = instruments or (TRAIN_INSTRUMENTS if part == "train" else tuple(INSTRUMENTS))
    dry = [synth_clip(base + i) for i in range(n_synth)]
    dry += [fluid_clip(inst, base + 100 + 10 * list(INSTRUMENTS).index(inst) + i) for inst in instruments
            for i in range(n_per_instrument)]
    dry += [voice_clip(base + 500 + i, ("low", "mid")[i % 2]) for i in range(n_voice)]
    return [degrade(c, cond, base + k, part) for k, c in enumerate(dry) for cond in CONDITIONS]
