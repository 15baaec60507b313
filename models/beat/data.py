"""The beat benchmark's test set, built here: 30 s clips rendered with FluidSynth and their beats.

Music comes from music21's corpus (Bach chorales in 4/4 and 3/4; folk tunes
in 3/4 and 6/8 from the Essen and O'Neill collections, given a generated
oom-pah accompaniment; 12/8 clips play the 6/8 tunes two bars to a bar) and
from drum patterns generated here (straight, syncopated, jazz swing and
sixteenth-note funk families, many seeded variants). A tempo map turns score
time (quarter notes) into seconds: steady, an abrupt change at the first bar
after 15 s, gradual rubato (±12 % over 24 beats), or a tempo curve (a steady
accelerando or ritardando of up to 25 % over the clip). Swing delays every
second eighth (swing clips, ratio 0.58–0.70 of the beat) or every second
sixteenth (funk clips, 0.50–0.58 of the eighth), notes and drums alike.
Note onsets are humanised (5 ms jitter); the ground-truth beats are the tempo
map's beat times — the quarter note in 4/4 and 3/4, the dotted quarter in 6/8
and 12/8 — before jitter, and the downbeats every bar's first beat.

Two disjoint splits: ``tune`` and ``test``. Pieces and drum-pattern seeds
never cross the split. Clips are cached as WAV + JSON under ``data/beat/``
(gitignored); a clip is rendered only when missing.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.models.renders import cached_clip, play_timeline

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "data" / "beat"
SAMPLE_RATE = 44100
DURATION = 30.0
BEAT_QL = {"4/4": 1.0, "3/4": 1.0, "6/8": 1.5, "12/8": 1.5}  # the tapped beat, in quarter notes
BAR_QL = {"4/4": 4.0, "3/4": 3.0, "6/8": 3.0, "12/8": 6.0}
SCORE_METER = {"12/8": "6/8"}  # meters played from pieces written in another
DRUM_CH = 9
KICK, SNARE, HAT, OPEN_HAT, CRASH, PEDAL_HAT, RIDE = 36, 38, 42, 46, 49, 44, 51
VERSION = 3  # of the generator: cached clips of another version are rendered again (3: a fresh synth per clip)


def bar_beats(meter: str) -> int:
    """Beats (the tapped level) in one bar of ``meter``."""
    return int(round(BAR_QL[meter] / BEAT_QL[meter]))


@dataclass
class ClipSpec:
    """One clip: what it is made of. Tempi are of the tapped beat, BPM."""

    name: str
    split: str
    kind: str  # steady | change | rubato | no_drums | syncopated | noise | swing | funk | curve
    meter: str
    bpm: float
    piece: str  # corpus path[#number]
    pattern: str  # "" (no drums) or family:seed
    bpm2: float = 0.0  # tempo after an abrupt change
    noise_snr_db: float = 0.0  # 0: no noise
    melody_program: int = 0
    accomp_program: int = 0
    seed: int = 0
    swing: float = 0.0  # where the second half of each swing span starts, fraction of the span (0: straight)
    swing_span_ql: float = 1.0  # the span swung: a quarter (eighth-note swing) or an eighth (sixteenths)
    curve: float = 0.0  # tempo at the end of a tempo-curve clip relative to its start, minus 1


# ------------------------------------------------------------------ pieces


def _pieces() -> dict[str, list[str]]:
    """Corpus works per meter, in a fixed order; chosen once and cached (search is slow)."""
    cache = CACHE / "pieces.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from music21 import corpus

    chosen: dict[str, list[str]] = {}
    wanted = {"4/4": ("bach",), "3/4": ("bach", "essenFolksong", "oneills1850"),
              "6/8": ("oneills1850", "essenFolksong")}
    for meter, sources in wanted.items():
        found = corpus.search(meter, field="timeSignatureFirst")
        rows = []
        for entry in found:
            src = str(entry.sourcePath)
            md = entry.metadata
            if src.split("/")[0] not in sources or md.timeSignatures != [meter]:
                continue
            if not (24 <= (md.scoreQuarterLength or 0) <= 400) or (md.noteCount or 0) < 40:
                continue
            rows.append(f"{src}#{entry.number}" if entry.number and src.endswith(".abc") else src)
        rows = sorted(set(rows))
        rng = np.random.default_rng(len(meter) + sum(map(ord, meter)))
        rng.shuffle(rows)
        chosen[meter] = rows[:40]
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(chosen, indent=1))
    return chosen


def _load_score(piece: str):
    from music21 import corpus

    path, _, number = piece.partition("#")
    if number:
        return corpus.parse(path, number=int(number))
    return corpus.parse(path)


def _score_notes(piece: str, meter: str):
    """Notes (start ql, duration ql, midi, part) from the first full bar, and the loop length (ql):
    whole bars of ``meter`` (a piece written in ``SCORE_METER[meter]`` loops in whole bars of ``meter``)."""
    score = _load_score(piece)
    parts = score.parts if hasattr(score, "parts") and len(score.parts) else [score]
    bar = BAR_QL[SCORE_METER.get(meter, meter)]
    notes = []
    anchor = None
    for pi, part in enumerate(parts):
        measures = list(part.getElementsByClass("Measure"))
        if anchor is None and measures:
            first = measures[0]
            anchor = float(first.offset) + (float(first.duration.quarterLength)
                                             if float(first.duration.quarterLength) < bar - 1e-6 else 0.0)
        for n in part.flatten().notes:
            if n.duration.isGrace:
                continue
            for p in getattr(n, "pitches", []):
                notes.append((float(n.getOffsetInHierarchy(part)), float(n.duration.quarterLength), p.midi, pi))
    anchor = anchor or 0.0
    notes = [(s - anchor, d, m, p) for s, d, m, p in notes if s >= anchor - 1e-6]
    end = max(s + d for s, d, _, _ in notes)
    length = math.ceil(end / BAR_QL[meter] - 1e-6) * BAR_QL[meter]
    key = score.analyze("key") if len(parts) == 1 else None
    return notes, length, len(parts), key


def _accompaniment(notes, length, meter, key):
    """Bass and chords under a melody (oom-pah; boom-chick-chick in 6/8): per bar the I, IV or V
    triad that holds most of the melody."""
    tonic = key.tonic.midi % 12
    minor = key.mode == "minor"
    triads = [(0, 3 if minor else 4, 7), (5, 8 if minor else 9, 12), (7, 11, 14)]
    bar = BAR_QL[meter]
    out = []
    for b in range(int(length / bar)):
        t0 = b * bar
        weight = np.zeros(3)
        for s, d, m, _ in notes:
            if t0 <= s < t0 + bar:
                pc = (m - tonic) % 12
                for k, tri in enumerate(triads):
                    weight[k] += d * (pc in [x % 12 for x in tri])
        tri = triads[int(np.argmax(weight))]
        root = 36 + tonic + tri[0] % 12
        chord = [48 + tonic + x for x in tri]
        if meter == "4/4":
            hits = [(0.0, [root]), (1.0, chord), (2.0, [root + 7]), (3.0, chord)]
        elif meter == "3/4":
            hits = [(0.0, [root]), (1.0, chord), (2.0, chord)]
        else:  # 6/8; 12/8 plays it twice
            hits = [(0.0, [root]), (0.5, chord), (1.0, chord), (1.5, [root + 7]), (2.0, chord), (2.5, chord)]
            hits += [(3.0 + off, p) for off, p in hits] if meter == "12/8" else []
        for off, pitches in hits:
            for m in pitches:
                out.append((t0 + off, 0.45, m, 1))
    return out


# ------------------------------------------------------------------ drums


def drum_pattern(meter: str, family: str, seed: int):
    """One bar of drums as (step, note, velocity) with steps of a 16th (4/4, 3/4) or an 8th (6/8, 12/8).

    Families: straight, syncopated; in 4/4 also swing (a jazz ride pattern) and funk (sixteenths).
    """
    rng = np.random.default_rng(seed)
    hits = []
    if family == "swing":  # ride "spang-a-lang", hi-hat foot on 2 and 4, feathered kick, two comping snares
        hits += [(s, RIDE, 85 if s % 8 == 0 else 72) for s in (0, 4, 6, 8, 12, 14)]
        hits += [(s, PEDAL_HAT, 70) for s in (4, 12)] + [(s, KICK, 45) for s in (0, 4, 8, 12)]
        hits += [(int(s), SNARE, 55) for s in rng.choice([2, 6, 7, 10, 14], size=2, replace=False)]
        return 16, hits
    if family == "funk":  # backbeat, sixteenth hats, kicks and ghost notes off the beat, an open hat
        hits += [(0, KICK, 112), (4, SNARE, 105), (12, SNARE, 105)]
        hits += [(s, HAT, 85 if s % 4 == 0 else 65 if s % 2 == 0 else 50) for s in range(16)]
        hits += [(int(s), KICK, 95) for s in rng.choice([3, 6, 7, 10, 11, 14, 15], size=3, replace=False)]
        hits += [(int(s), SNARE, 35) for s in rng.choice(range(1, 16, 2), size=3, replace=False)]
        hits.append((int(rng.choice([2, 6, 10, 14])), OPEN_HAT, 80))
        return 16, hits
    if meter == "12/8":  # shuffle: kick on 1 and 3, snare on 2 and 4, every eighth on the hat
        hits += [(0, KICK, 110), (6, KICK, 95), (3, SNARE, 100), (9, SNARE, 100)]
        hits += [(s, HAT, 70 + 20 * (s % 3 == 0)) for s in range(12)]
        if family == "syncopated":
            hits += [(int(rng.choice([5, 8, 11])), KICK, 90), (int(rng.choice([1, 4, 7, 10])), SNARE, 45)]
        return 12, hits
    if meter == "6/8":
        steps = 6
        hits += [(0, KICK, 110), (3, SNARE, 100)]
        hits += [(s, HAT, 70 + 20 * (s % 3 == 0)) for s in range(6)]
        if family == "syncopated":
            hits += [(int(rng.choice([2, 5])), KICK, 90), (int(rng.choice([1, 4])), SNARE, 45)]
        elif rng.random() < 0.5:
            hits.append((5, KICK, 80))
        return steps, hits
    steps = 16 if meter == "4/4" else 12
    backbeats = [4, 12] if meter == "4/4" else [4, 8]
    hits += [(0, KICK, 112)] + [(s, SNARE, 100) for s in backbeats]
    sixteenths = rng.random() < 0.4
    for s in range(0, steps, 1 if sixteenths else 2):
        hits.append((s, HAT, 80 if s % 4 == 0 else (55 if s % 2 else 68)))
    if family == "straight":
        if meter == "4/4":
            hits.append((8, KICK, 100))
            if rng.random() < 0.5:
                hits.append((int(rng.choice([6, 10, 14])), KICK, 85))
        return steps, hits
    # syncopated: kicks and accents off the beat, ghost snares, an open hat on an off-beat
    offbeats = [s for s in range(steps) if s % 4 != 0]
    for s in rng.choice(offbeats, size=3 if meter == "4/4" else 2, replace=False):
        hits.append((int(s), KICK, 95))
    for s in rng.choice([s for s in offbeats if s % 2], size=2, replace=False):
        hits.append((int(s), SNARE, 40))
    hits.append((int(rng.choice([2, 6, 10, 14][: steps // 4])), OPEN_HAT, 85))
    return steps, hits


# ------------------------------------------------------------------ tempo map


def swung(q: float, ratio: float, span: float) -> float:
    """Score time ``q`` (ql) with the second half of every ``span`` ql moved to ``ratio`` of it
    (0: straight); span boundaries, so the beats, stay where they are."""
    if not ratio:
        return q
    k, f = divmod(q / span, 1.0)
    f = f * 2 * ratio if f < 0.5 else ratio + (f - 0.5) * 2 * (1 - ratio)
    return (k + f) * span


class TempoMap:
    """Beat index (float) ↔ seconds for a tempo given per beat."""

    def __init__(self, spec: ClipSpec, bar_beats: int, n_beats: int):
        res = 96
        b = np.arange(n_beats * res + 1) / res
        if spec.kind == "change":
            change_beat = self._change_beat(spec.bpm, bar_beats)
            bpm = np.where(b < change_beat, spec.bpm, spec.bpm2)
            self.change_s = change_beat * 60.0 / spec.bpm
        elif spec.kind == "rubato":
            phi = (spec.seed % 7) / 7 * 2 * np.pi
            bpm = spec.bpm * (1 + 0.12 * np.sin(2 * np.pi * b / 24 + phi))
            self.change_s = None
        elif spec.kind == "curve":
            bpm = spec.bpm * (1 + spec.curve * np.clip(b / (DURATION * spec.bpm / 60), 0.0, 1.0))
            self.change_s = None
        else:
            bpm = np.full(b.shape, spec.bpm)
            self.change_s = None
        dt = 60.0 / bpm[:-1] / res
        self.beats = b
        self.times = np.concatenate([[0.0], np.cumsum(dt)])

    @staticmethod
    def _change_beat(bpm: float, bar_beats: int) -> float:
        beat_15s = 15.0 * bpm / 60.0
        return math.ceil(beat_15s / bar_beats) * bar_beats

    def seconds(self, beat):
        return np.interp(beat, self.beats, self.times)


# ------------------------------------------------------------------ clip list


def clip_specs(split: str) -> list[ClipSpec]:
    """The 36 clips of a split: nine kinds × meters, tempi 60–180 BPM; pieces and seeds per split.

    The first 24 rows (six kinds) are those of the generator's first version; swing, funk
    and tempo-curve clips follow, so adding them left the earlier clips as they were.

    ``test`` is held out: its pieces (odd rows of the piece list) and drum seeds are
    used nowhere else. ``tune`` and ``train<k>`` (more clips for fitting a model)
    draw from the other half of the pieces, with their own seeds and tempi.
    """
    pieces = _pieces()
    if split == "test":
        half, rng_seed, seed0, start = {m: rows[1::2] for m, rows in pieces.items()}, 23, 500, 0
    elif split == "tune":
        half, rng_seed, seed0, start = {m: rows[0::2] for m, rows in pieces.items()}, 11, 100, 0
    elif split.startswith("train") and split[5:].isdigit():
        k = int(split[5:])
        half, rng_seed, seed0, start = {m: rows[0::2] for m, rows in pieces.items()}, 1000 + k, 1000 + 100 * k, 12 + 7 * k
    else:
        raise ValueError(f"split: found {split!r}, allowed 'test', 'tune' or 'train<k>'")
    rng = np.random.default_rng(rng_seed)
    used = {m: start for m in half}

    def piece(meter):
        used[meter] += 1
        return half[meter][(used[meter] - 1) % len(half[meter])]

    def tempo(meter, lo=60, hi=180):
        hi = min(hi, 125) if BEAT_QL[meter] == 1.5 else hi
        lo = max(lo, 70) if meter == "3/4" else lo
        return float(round(rng.uniform(lo, hi)))

    melody = [0, 73, 40, 71, 56, 24, 11]
    accomp = [0, 48, 4, 24, 19, 0]
    rows = [
        ("steady", "4/4", "straight"), ("steady", "3/4", "straight"), ("steady", "6/8", "straight"),
        ("steady", "4/4", "straight"),
        ("change", "4/4", "straight"), ("change", "4/4", "straight"), ("change", "3/4", "straight"),
        ("change", "6/8", "straight"),
        ("rubato", "4/4", "straight"), ("rubato", "3/4", "straight"), ("rubato", "4/4", ""),
        ("rubato", "6/8", ""),
        ("no_drums", "4/4", ""), ("no_drums", "3/4", ""), ("no_drums", "6/8", ""), ("no_drums", "4/4", ""),
        ("syncopated", "4/4", "syncopated"), ("syncopated", "4/4", "syncopated"),
        ("syncopated", "3/4", "syncopated"), ("syncopated", "6/8", "syncopated"),
        ("noise", "4/4", "straight"), ("noise", "3/4", "straight"), ("noise", "6/8", "straight"),
        ("noise", "4/4", ""),
        ("swing", "4/4", "swing"), ("swing", "4/4", "swing"), ("swing", "12/8", "straight"), ("swing", "4/4", ""),
        ("funk", "4/4", "funk"), ("funk", "4/4", "funk"), ("funk", "4/4", "funk"), ("funk", "12/8", "syncopated"),
        ("curve", "4/4", "straight"), ("curve", "3/4", "straight"), ("curve", "6/8", "straight"),
        ("curve", "12/8", "straight"),
    ]
    specs = []
    for i, (kind, meter, family) in enumerate(rows):
        seed = seed0 + i
        bpm = tempo(meter, 60, 90) if i == 3 else tempo(meter, 150, 180) if i == 15 else tempo(meter)
        bpm2 = 0.0
        if kind == "change":
            ratio = [1.3, 0.75, 1.25, 0.8][i % 4]
            bpm2 = float(np.clip(round(bpm * ratio), 60, 125 if meter == "6/8" else 180))
            if abs(bpm2 / bpm - 1) < 0.15:
                bpm2 = float(round(bpm / ratio))
        no_drums = family == ""
        spec = ClipSpec(
            name=f"{split}-{i:02d}-{kind}-{meter.replace('/', '')}", split=split, kind=kind, meter=meter,
            bpm=bpm, bpm2=bpm2, piece=piece(SCORE_METER.get(meter, meter)),
            pattern=f"{family}:{seed}" if family else "", noise_snr_db=10.0 if kind == "noise" else 0.0,
            melody_program=int(rng.choice([0, 48] if no_drums else melody)),
            accomp_program=int(rng.choice([48, 0] if no_drums else accomp)), seed=seed)
        if kind == "swing" and meter == "4/4":
            spec.swing = float(round(rng.uniform(0.58, 0.70), 3))
        elif kind == "funk" and meter == "4/4":
            spec.swing, spec.swing_span_ql = float(round(rng.uniform(0.50, 0.58), 3)), 0.5
        elif kind == "curve":  # towards the middle of the tempo range, so it stays inside it
            spec.curve = float(round(rng.uniform(0.15, 0.25), 3)) * (-1 if bpm > (115 if BEAT_QL[meter] == 1 else 95) else 1)
        specs.append(spec)
    return specs


# ------------------------------------------------------------------ rendering


def _events(spec: ClipSpec):
    """(seconds, channel, note, velocity, duration s) for the whole clip, and the beat times."""
    rng = np.random.default_rng(spec.seed)
    notes, length, n_parts, key = _score_notes(spec.piece, spec.meter)
    if n_parts == 1:
        notes = notes + _accompaniment(notes, length, spec.meter, key)
    beat_ql = BEAT_QL[spec.meter]
    n_bar = bar_beats(spec.meter)
    n_beats = int(DURATION * max(spec.bpm, spec.bpm2) / 60 * 1.3) + 8
    tmap = TempoMap(spec, n_bar, n_beats)

    def seconds(q):  # score time (ql, swung as the clip says) → s
        return float(tmap.seconds(swung(q, spec.swing, spec.swing_span_ql) / beat_ql))
    ev = []
    reps = int(n_beats * beat_ql / length) + 1
    for r in range(reps):
        for s, d, m, part in notes:
            q = r * length + s
            t = seconds(q)
            if t >= DURATION:
                continue
            t_end = seconds(q + d)
            ch = 0 if part == 0 else 1
            vel = int(np.clip((92 if part == 0 else 72) + 10 * (abs((q % BAR_QL[spec.meter])) < 1e-6)
                              + rng.normal(0, 6), 30, 127))
            ev.append((t + rng.normal(0, 0.005), ch, m, vel, max(t_end - t, 0.05) * 0.95))
    if spec.pattern:
        family, seed = spec.pattern.split(":")
        steps, hits = drum_pattern(spec.meter, family, int(seed))
        step_beats = n_bar / steps
        for bar in range(n_beats // n_bar + 1):
            for step, note, vel in hits:
                t = seconds((bar * n_bar + step * step_beats) * beat_ql)
                if t < DURATION:
                    v = int(np.clip(vel + rng.normal(0, 6), 20, 127))
                    ev.append((t + rng.normal(0, 0.004), DRUM_CH, note, v, 0.1))
            if bar % 8 == 0:
                ev.append((float(tmap.seconds(bar * n_bar)), DRUM_CH, CRASH, 100, 0.5))
    beats = tmap.seconds(np.arange(n_beats))
    beats = beats[beats < DURATION - 0.05]
    return sorted(ev), beats, tmap.change_s


def _render(spec: ClipSpec, synth_state) -> tuple[np.ndarray, np.ndarray, float | None]:
    fs, sfid = synth_state
    fs.system_reset()
    fs.program_select(0, sfid, 0, spec.melody_program)
    fs.program_select(1, sfid, 0, spec.accomp_program)
    fs.program_select(DRUM_CH, sfid, 128, 0)
    ev, beats, change_s = _events(spec)
    offs = sorted([(t + d, 0, ch, m, 0) for t, ch, m, v, d in ev] + [(max(t, 0.0), 1, ch, m, v) for t, ch, m, v, d in ev])
    n_total = int(DURATION * SAMPLE_RATE)
    out = play_timeline(synth_state, offs, n_total, SAMPLE_RATE)
    x = out.mean(axis=1)
    if spec.noise_snr_db:
        rng = np.random.default_rng(spec.seed + 1)
        white = rng.standard_normal(n_total + 4096)
        pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(len(white) // 2 + 1), 1)))
        pink = pink[:n_total]
        p_sig = np.mean(x ** 2)
        pink *= np.sqrt(p_sig / np.mean(pink ** 2) / 10 ** (spec.noise_snr_db / 10))
        x = x + pink.astype(np.float32)
    x = 0.1 * x / (np.sqrt(np.mean(x ** 2)) + 1e-9)  # -20 dBFS RMS
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    return x, beats, change_s


@dataclass
class Clip:
    spec: ClipSpec
    audio: np.ndarray  # mono float32 at SAMPLE_RATE
    beats: np.ndarray  # ground-truth beat times, s
    change_s: float | None  # time of the abrupt tempo change, s

    @property
    def downbeats(self) -> np.ndarray:
        """Ground-truth downbeat times, s: the first beat of every bar (clips start on a bar)."""
        return self.beats[::bar_beats(self.spec.meter)]


def load_clips(split: str, names: list[str] | None = None) -> list[Clip]:
    """The clips of a split (rendered now where missing)."""
    clips = []
    for spec in clip_specs(split):
        if names is None or spec.name in names:
            audio, info = cached_clip(CACHE, spec, VERSION, SAMPLE_RATE, functools.partial(_build, spec))
            clips.append(Clip(spec, audio, np.array(info["beats"]), info["change_s"]))
    return clips


def _build(spec: ClipSpec, synth_state) -> tuple[np.ndarray, dict]:
    audio, beats, change_s = _render(spec, synth_state)
    return audio, {"beats": beats.tolist(), "change_s": change_s}
