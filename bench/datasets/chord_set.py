"""The chord benchmark's set, built here: FluidSynth renders with chord and key truth.

Two sources, each split into a ``train`` part (the chord listener's model
learns from it: :mod:`cadenza.models.chords.train`), a ``tune`` part (options
are chosen on it) and a held-out ``test`` part, which share no piece and no seed:

- ``chorale``: Bach chorales from music21's corpus (every part, one GM
  ensemble per clip: organ, strings, choir, piano, brass, reeds), 60-96 BPM,
  the first ``MAX_S`` seconds. **Chord truth**: music21's ``chordify()``, per
  quarter-note beat reduced to its triad — the major or minor triad whose root
  and third sound in the beat and whose fifth sounds too or whose root is the
  bass (weighted by how long its tones sound; sevenths and passing tones
  reduce away); a beat with no such triad (diminished, bare fifths, rests) is
  ``N``. **Key truth**: the key signature's major or relative minor, whichever
  the final chord's root is the tonic of; a chorale whose final chord is on
  neither (a modal ending) has no key truth and is left out of the key score.
- ``pop``: generated progressions in their own key (common four-chord loops,
  major and minor, one or two chords a bar, a dominant seventh now and then),
  block or arpeggiated comping, a bass line, a chord-tone melody with passing
  notes, and drums (:func:`cadenza.models.beat.data.drum_pattern`), 80-132 BPM,
  ``POP_BARS`` bars. Truth: the progression's triads (a seventh chord counts as
  its triad) and its key.

Audio is mono float32 at :data:`SR`, -20 dBFS RMS. Clips are cached under
``data/chords/`` (gitignored) as WAV + JSON (:func:`cadenza.models.renders.cached_clip`,
a fresh synth per clip); a clip is rendered only when missing or when the
generator's :data:`VERSION` changed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.engine.harmony import chord_label, key_label
from cadenza.models.renders import cached_clip, play_timeline

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "data" / "chords"
SR = 48000
VERSION = 3  # 3: one fresh synth per clip, so a clip is the same whatever was rendered before it
MAX_S = 90.0  # a chorale clip's length at most, s (whole chorales: the key truth needs the ending)
POP_BARS = 16
DRUM_CH = 9
ENSEMBLES = {"organ": (19, 19, 19, 19), "strings": (48, 48, 48, 48), "choir": (52, 52, 52, 52),
             "piano": (0, 0, 0, 0), "brass": (56, 60, 57, 58), "reeds": (68, 71, 70, 70)}
COUNTS = {"test": (16, 8), "tune": (12, 8), "train": (40, 24)}  # (chorales, pop clips) per split
QUICK_COUNTS = {"test": (6, 3), "tune": (4, 3), "train": (40, 24)}
SEEDS = {"test": 17, "tune": 71, "train": 7}

# pop progressions: (scale degree semitones above the tonic, quality 0 maj / 1 min) per chord
MAJOR_LOOPS = [[(0, 0), (7, 0), (9, 1), (5, 0)], [(9, 1), (5, 0), (0, 0), (7, 0)], [(0, 0), (9, 1), (5, 0), (7, 0)],
               [(0, 0), (5, 0), (7, 0), (5, 0)], [(2, 1), (7, 0), (0, 0), (9, 1)], [(0, 0), (4, 1), (5, 0), (7, 0)]]
MINOR_LOOPS = [[(0, 1), (8, 0), (3, 0), (10, 0)], [(0, 1), (5, 1), (7, 0), (0, 1)], [(0, 1), (10, 0), (8, 0), (10, 0)],
               [(0, 1), (8, 0), (5, 1), (7, 0)]]


@dataclass
class Clip:
    """One rendered clip and its truth. Times in seconds."""

    name: str
    source: str  # "chorale" | "pop"
    audio: np.ndarray  # mono float32 at SR
    intervals: np.ndarray  # (n, 2) chord segments
    labels: list[str]  # mir_eval chord labels per segment
    key: str  # "C major" ..., "" when the clip has no key truth


# ------------------------------------------------------------------ truth from a score


def beat_triad(weights: np.ndarray, bass: int) -> str:
    """The triad label of one beat from its pitch-class weights (how long each sounds) and bass pitch class."""
    best, label = 0.0, "N"
    for q, third in enumerate((4, 3)):
        for r in range(12):
            w_root, w_third, w_fifth = weights[r], weights[(r + third) % 12], weights[(r + 7) % 12]
            if w_root <= 0 or w_third <= 0 or (w_fifth <= 0 and bass != r):
                continue
            score = w_root + w_third + w_fifth + (1.0 if bass == r else 0.0)
            if score > best:
                best, label = score, chord_label(r, q)
    return label


def segments(beat_labels: list[str], beat_s: float) -> tuple[np.ndarray, list[str]]:
    """Runs of equal beat labels as (intervals, labels)."""
    starts = [0] + [i for i in range(1, len(beat_labels)) if beat_labels[i] != beat_labels[i - 1]]
    ends = starts[1:] + [len(beat_labels)]
    return np.array([[s * beat_s, e * beat_s] for s, e in zip(starts, ends)]), [beat_labels[s] for s in starts]


def chorale_truth(score, n_beats: int) -> tuple[list[str], str]:
    """Per-beat triad labels (``chordify()`` per quarter note) and the key label ("" for a modal ending)."""
    chords = list(score.chordify().recurse().getElementsByClass("Chord"))
    weights = np.zeros((n_beats, 12))
    bass = np.full(n_beats, -1)
    for ch in chords:
        start = float(ch.getOffsetInHierarchy(score))
        end = start + float(ch.duration.quarterLength)
        pcs = {p.pitchClass for p in ch.pitches}
        for b in range(int(start), min(int(np.ceil(end)), n_beats)):
            overlap = min(end, b + 1) - max(start, b)
            if overlap <= 0:
                continue
            for pc in pcs:
                weights[b, pc] += overlap
            if bass[b] < 0 or start <= b:
                bass[b] = ch.bass().pitchClass
    labels = [beat_triad(weights[b], int(bass[b])) for b in range(n_beats)]
    sharps = score.recurse().getElementsByClass("KeySignature")[0].sharps
    major = (7 * sharps) % 12
    final = chords[-1].root().pitchClass
    key = key_label(major, 0) if final == major else key_label((major + 9) % 12, 1) if final == (major + 9) % 12 else ""
    return labels, key


# ------------------------------------------------------------------ notes


def chorale_notes(path: str, bpm: float, rng) -> tuple[list, list[str], str, float]:
    """(start s, duration s, channel, MIDI, velocity) of a chorale's parts, its beat labels, key, length s."""
    from music21 import corpus

    score = corpus.parse(path)
    beat_s = 60.0 / bpm
    n_beats = int(min(float(score.highestTime), MAX_S / beat_s))
    notes = []
    for ch, part in enumerate(score.parts[:4]):
        for n in part.flatten().notes:
            start = float(n.getOffsetInHierarchy(part))
            if start >= n_beats:
                continue
            dur = min(float(n.duration.quarterLength), n_beats - start)
            for p in n.pitches:
                notes.append((start * beat_s + rng.normal(0, 0.004), dur * beat_s * 0.97, ch, p.midi,
                              int(np.clip(78 + rng.normal(0, 6), 40, 120))))
    labels, key = chorale_truth(score, n_beats)
    return notes, labels, key, n_beats * beat_s


def pop_notes(tonic: int, minor: bool, bpm: float, rng) -> tuple[list, list[str], float]:
    """A generated progression: comping (ch 1), bass (ch 2), melody (ch 0), drums (ch 9); beat labels; length s."""
    from cadenza.models.beat.data import drum_pattern

    loops = MINOR_LOOPS if minor else MAJOR_LOOPS
    loop = loops[int(rng.integers(len(loops)))]
    per_bar = int(rng.choice([1, 1, 2]))
    arpeggio = bool(rng.random() < 0.4)
    beat_s = 60.0 / bpm
    scale = np.array([0, 2, 3, 5, 7, 8, 10] if minor else [0, 2, 4, 5, 7, 9, 11])
    steps, hits = drum_pattern("4/4", str(rng.choice(["straight", "syncopated"])), int(rng.integers(1 << 20)))
    notes, labels = [], []
    n_chords = POP_BARS * per_bar
    chord_beats = 4 // per_bar
    for i in range(n_chords):
        degree, quality = loop[i % len(loop)]
        root = (tonic + degree) % 12
        tones = [root, root + (3 if quality else 4), root + 7]
        if degree == 7 and quality == 0 and rng.random() < 0.4:
            tones.append(root + 10)  # dominant seventh: truth stays the triad
        t0 = i * chord_beats * beat_s
        labels += [chord_label(root, quality)] * chord_beats
        voicing = sorted(55 + (t - 55) % 12 for t in tones)
        if arpeggio:
            for k in range(chord_beats * 2):
                m = voicing[k % len(voicing)] + (12 if k % 4 == 3 else 0)
                notes.append((t0 + k * beat_s / 2, beat_s * 0.9, 1, m, 70))
        else:
            for k in range(chord_beats):
                for m in voicing:
                    notes.append((t0 + k * beat_s, beat_s * 0.85, 1, m, 64 + 8 * (k == 0)))
        for k in range(0, chord_beats, 2):
            m = 36 + root if k == 0 or rng.random() < 0.5 else 36 + (root + 7) % 12
            notes.append((t0 + k * beat_s, beat_s * 1.8, 2, m, 90))
        for k in range(chord_beats * 2):  # eighths: chord tones on beats, scale steps between
            if rng.random() < 0.3:
                continue
            pc = int(rng.choice(tones)) if k % 2 == 0 else int((tonic + rng.choice(scale)) % 12)
            notes.append((t0 + k * beat_s / 2, beat_s * 0.45, 0, 72 + pc % 12, 82))
    for bar in range(POP_BARS):
        for step, note, vel in hits:
            notes.append(((bar * 4 + step * 4 / steps) * beat_s, 0.1, DRUM_CH, note, vel))
    jitter = rng.normal(0, 0.004, len(notes))
    notes = [(max(t + j, 0.0), d, ch, m, int(np.clip(v + rng.normal(0, 5), 30, 127)))
             for (t, d, ch, m, v), j in zip(notes, jitter)]
    return notes, labels, POP_BARS * 4 * beat_s


# ------------------------------------------------------------------ rendering


def render(notes: list, programs: dict[int, int], seconds: float, synth) -> np.ndarray:
    """Render (start s, duration s, channel, MIDI, velocity) notes with channel → GM program (ch 9: drums)
    for ``seconds`` + 1 s of release; mono float32 at SR, -20 dBFS RMS."""
    fs, sfid = synth
    fs.system_reset()
    for ch, program in programs.items():
        fs.program_select(ch, sfid, 128 if ch == DRUM_CH else 0, program)
    timeline = sorted([(t, 1, ch, m, v) for t, d, ch, m, v in notes] + [(t + d, 0, ch, m, 0) for t, d, ch, m, v in notes])
    out = play_timeline(synth, timeline, int((seconds + 1.0) * SR), SR)[:, 0]
    return (0.1 * out / (np.sqrt(np.mean(out ** 2)) + 1e-9)).clip(-1.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------ the set


@dataclass
class ClipSpec:
    name: str
    source: str
    piece: str  # chorale: corpus path; pop: ""
    bpm: float
    seed: int
    ensemble: str = ""
    tonic: int = 0
    minor: bool = False


def chorale_paths() -> list[str]:
    """Bach chorales in the corpus, sorted by name (as corpus paths)."""
    from music21 import corpus

    return sorted(str(p) for p in corpus.getComposer("bach") if p.name.startswith("bwv") and p.suffix == ".mxl")


def clip_specs(split: str, quick: bool = False) -> list[ClipSpec]:
    """The clips of a split: chorales at odd (test) or even (tune; train: those tune leaves) places of the
    sorted list, pop seeds apart."""
    if split not in COUNTS:
        raise ValueError(f"split: found {split!r}, allowed 'train', 'tune' or 'test'")
    n_chorales, n_pop = (QUICK_COUNTS if quick else COUNTS)[split]
    rng = np.random.default_rng(SEEDS[split])
    paths = chorale_paths()[1 if split == "test" else 0::2]
    if split == "train":
        tune = {spec.piece for spec in clip_specs("tune")}
        paths = [p for p in paths if p not in tune]
    picks = rng.choice(len(paths), size=COUNTS[split][0], replace=False)[:n_chorales]
    specs = []
    for p in picks:
        specs.append(ClipSpec(f"{split}-chorale-{Path(paths[p]).stem}", "chorale", paths[p],
                              float(rng.integers(60, 97)), int(rng.integers(1 << 30)),
                              ensemble=str(rng.choice(list(ENSEMBLES)))))
    for i in range(COUNTS[split][1]):
        spec = ClipSpec(f"{split}-pop-{i:02d}", "pop", "", float(rng.integers(80, 133)), int(rng.integers(1 << 30)),
                        tonic=int(rng.integers(12)), minor=bool(rng.random() < 0.35))
        if i < n_pop:
            specs.append(spec)
    return specs


def _build(spec: ClipSpec, synth) -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng(spec.seed)
    if spec.source == "chorale":
        notes, beat_labels, key, seconds = chorale_notes(spec.piece, spec.bpm, rng)
        programs = dict(enumerate(ENSEMBLES[spec.ensemble]))
    else:
        notes, beat_labels, seconds = pop_notes(spec.tonic, spec.minor, spec.bpm, rng)
        key = key_label(spec.tonic, int(spec.minor))
        programs = {0: int(rng.choice([73, 65, 80, 11])), 1: int(rng.choice([0, 4, 16, 24, 48])),
                    2: int(rng.choice([32, 33, 34, 38])), DRUM_CH: 0}
    return render(notes, programs, seconds, synth), {"beat_labels": beat_labels, "beat_s": 60.0 / spec.bpm,
                                                     "key": key}


def load_clips(split: str, quick: bool = False) -> list[Clip]:
    """The clips of a split, rendered now where missing."""
    clips = []
    for spec in clip_specs(split, quick):
        audio, info = cached_clip(CACHE, spec, VERSION, SR, functools.partial(_build, spec))
        intervals, labels = segments(info["beat_labels"], info["beat_s"])
        clips.append(Clip(spec.name, spec.source, audio, intervals, labels, info["key"]))
    return clips

