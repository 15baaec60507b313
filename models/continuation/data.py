"""Continuation training data: monophonic lines from music21's bundled corpus, on a sixteenth-note grid.

Nothing is downloaded. Each line is one part of a Bach score (every part of the
413 files in ``corpus/bach``: chorale voices, instrumental lines) or one Essen
folk tune (every ``essenFolksong/*.abc`` collection but the ``test*`` files).
A line (:class:`Line`) holds, per note,

- ``step``     onset in grid steps (sixteenth notes: quarter length × 4, rounded),
- ``pitch``    MIDI note number, 21..108,
- ``duration`` grid steps, ≥ 1,

and, per line, the key of its piece from music21's Krumhansl analysis
(``score.analyze('key')``): ``tonic`` pitch class 0..11 and ``mode`` (0 major,
1 minor — the order of ``engine.harmony.MODES``). Grace notes are dropped; tied
notes are merged. The scores carry no velocity: :func:`velocities` gives a
metrical one, humanised by :func:`augment`.

The split into train / valid / test is by *piece* (all parts of a Bach score go
together), from a hash of the piece id, so it never changes (:func:`split_of`).
The parsed corpus is cached in ``data/continuation/`` (gitignored).

Augmentation (:func:`augment`): transpose ±6 semitones (kept on the keyboard;
the key moves with it), a per-line velocity offset (uniform ±24) and velocity
jitter (Gaussian, σ 6). No time stretch: the events are on the grid, tempo-free.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cadenza.models.corpus import bach_files, corpus_root, parse_files

LOWEST = 21  # A0
HIGHEST = 108  # C8
STEPS_PER_QUARTER = 4
CACHE = Path(__file__).resolve().parents[2] / "data" / "continuation" / "corpus_v1.npz"
MIN_NOTES = 16


@dataclass
class Line:
    """One monophonic (or nearly) line: notes sorted by step then pitch, and the key of its piece."""

    piece_id: str
    step: np.ndarray  # int64 grid steps
    pitch: np.ndarray  # int64 MIDI
    duration: np.ndarray  # int64 grid steps, >= 1
    tonic: int  # pitch class 0..11
    mode: int  # 0 major, 1 minor

    def __len__(self) -> int:
        return len(self.pitch)


def split_of(piece_id: str) -> str:
    """The fixed split of a piece: ~80 % train, 10 % valid, 10 % test (by sha1 of the piece id)."""
    bucket = int(hashlib.sha1(("continuation:" + piece_id).encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def velocities(step: np.ndarray) -> np.ndarray:
    """A metrical velocity per onset step: 88 on a bar line (16 steps), 80 on half bars, 72 on beats, 64 off."""
    return np.where(step % 16 == 0, 88, np.where(step % 8 == 0, 80, np.where(step % 4 == 0, 72, 64)))


def _line_of(stream, piece_id: str, tonic: int, mode: int) -> Line | None:
    """Quantise one part (or tune) to the grid; None if it has fewer than MIN_NOTES notes."""
    rows = {}
    for element in stream.stripTies(inPlace=False).flatten().notes:
        length = float(element.quarterLength)
        if length <= 0.0:  # grace note
            continue
        step = int(round(float(element.offset) * STEPS_PER_QUARTER))
        duration = max(1, int(round(length * STEPS_PER_QUARTER)))
        for p in element.pitches:
            if LOWEST <= p.midi <= HIGHEST:
                rows[(step, p.midi)] = duration
    if len(rows) < MIN_NOTES:
        return None
    keys = sorted(rows)
    arr = np.array([(s, p, rows[(s, p)]) for s, p in keys], dtype=np.int64)
    return Line(piece_id, arr[:, 0] - arr[0, 0] // 16 * 16, arr[:, 1], arr[:, 2], tonic, mode)


def _parse_job(job: tuple[str, str, str]) -> list[Line]:
    """Parse one corpus file (a Bach score: one line per part; an Essen opus: one line per tune)."""
    from music21 import corpus

    kind, path, rel = job
    try:
        parsed = corpus.parse(path)
        scores = list(parsed.scores) if kind == "essen" else [parsed]
        lines = []
        for i, score in enumerate(scores):
            piece_id = rel if kind == "bach" else f"{rel}#{i}"
            key = score.analyze("key")
            tonic, mode = key.tonic.pitchClass, int(key.mode == "minor")
            parts = list(score.parts) if kind == "bach" and score.parts else [score]
            for j, part in enumerate(parts):
                line = _line_of(part, f"{piece_id}/{j}" if kind == "bach" else piece_id, tonic, mode)
                if line is not None:
                    lines.append(line)
        return lines
    except Exception:  # a handful of corpus files do not parse (or have no key); skip them
        return []


def piece_of(line_id: str) -> str:
    """The piece a line belongs to (a Bach part's id less its ``/part``)."""
    return line_id.rsplit("/", 1)[0] if line_id.startswith("bach/") else line_id


def _parse_corpus(progress: bool = True, workers: int = 2) -> list[Line]:
    """Parse the chosen corpus files in ``workers`` processes, keeping the file order."""
    root = corpus_root()
    essen = sorted(p for p in (root / "essenFolksong").glob("*.abc") if not p.name.startswith("test"))
    jobs = [("bach", p) for p in bach_files()] + [("essen", p) for p in essen]
    jobs = [(kind, str(path), path.relative_to(root).as_posix()) for kind, path in jobs]
    return parse_files(_parse_job, jobs, workers, progress)


def _save(lines: list[Line], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        ids=np.array([x.piece_id for x in lines]),
        lengths=np.array([len(x) for x in lines], dtype=np.int64),
        keys=np.array([(x.tonic, x.mode) for x in lines], dtype=np.int64).reshape(-1, 2),
        step=np.concatenate([x.step for x in lines]),
        pitch=np.concatenate([x.pitch for x in lines]),
        duration=np.concatenate([x.duration for x in lines]),
    )


def _load(path: Path) -> list[Line]:
    with np.load(path) as z:
        bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
        cols = [z[k] for k in ("step", "pitch", "duration")]
        return [Line(str(pid), *(c[a:b] for c in cols), int(key[0]), int(key[1]))
                for pid, a, b, key in zip(z["ids"], bounds[:-1], bounds[1:], z["keys"])]


def load_lines(split: str | None = None, cache: Path = CACHE, progress: bool = True) -> list[Line]:
    """All lines (or one split's), parsing music21's corpus on first use and caching it."""
    if not cache.exists():
        _save(_parse_corpus(progress), cache)
    lines = _load(cache)
    return lines if split is None else [x for x in lines if split_of(piece_of(x.piece_id)) == split]


def transpose(line: Line, shift: int) -> Line:
    """``line`` moved by ``shift`` semitones, its key with it."""
    return replace(line, pitch=line.pitch + shift, tonic=(line.tonic + shift) % 12)


def augment(line: Line, rng: np.random.Generator) -> tuple[Line, np.ndarray]:
    """A randomly transposed copy (±6, kept on the keyboard) and humanised velocities 1..127 for it."""
    lo, hi = int(line.pitch.min()), int(line.pitch.max())
    shifts = [s for s in range(-6, 7) if lo + s >= LOWEST and hi + s <= HIGHEST]
    moved = transpose(line, int(rng.choice(shifts)) if shifts else 0)
    velocity = velocities(line.step) + rng.uniform(-24.0, 24.0) + rng.normal(0.0, 6.0, len(line))
    return moved, np.clip(np.round(velocity), 1, 127).astype(np.int64)


if __name__ == "__main__":
    every = load_lines()
    for name in ("train", "valid", "test"):
        chosen = [x for x in every if split_of(piece_of(x.piece_id)) == name]
        print(f"{name}: {len(chosen)} lines, {len({piece_of(x.piece_id) for x in chosen})} pieces, "
              f"{sum(len(x) for x in chosen)} notes")


def window(line: Line, velocity: np.ndarray, first: int, length: int) -> tuple[list[int], list[int]]:
    """Tokens and positions of ``line`` from note ``first`` on: ``START`` then up to ``length`` events.

    The cursor starts on the beat at or before that note (so the first event may be a shift).
    """
    from cadenza.models.continuation import events

    start = int(line.step[first]) // events.BEAT * events.BEAT
    stop = first + length  # a note is at least two tokens: enough notes for ``length`` tokens
    tokens, positions, _ = events.encode(line.step[first:stop], line.pitch[first:stop], velocity[first:stop],
                                         line.duration[first:stop], start)
    return [events.START] + tokens[:length], [start % events.BEAT] + positions[:length]


def batch(lines: list[Line], length: int, size: int, rng: np.random.Generator,
          do_augment: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A training batch: ``tokens``, ``positions`` and ``targets`` (-100 = padding), int64 (size, length).

    Lines are drawn with probability proportional to their note count, each
    augmented and cut at a random note.
    """
    sizes = np.array([len(x) for x in lines], dtype=np.float64)
    tokens = np.zeros((size, length), dtype=np.int64)
    positions = np.zeros((size, length), dtype=np.int64)
    targets = np.full((size, length), -100, dtype=np.int64)
    for row, index in enumerate(rng.choice(len(lines), size=size, p=sizes / sizes.sum())):
        line = lines[int(index)]
        if do_augment:
            line, velocity = augment(line, rng)
        else:
            velocity = velocities(line.step)
        seq, pos = window(line, velocity, int(rng.integers(0, len(line) - MIN_NOTES // 2)), length)
        n = len(seq) - 1
        tokens[row, :n], positions[row, :n], targets[row, :n] = seq[:-1], pos[:-1], seq[1:]
    return tokens, positions, targets


@dataclass
class Case:
    """A held-out continuation: the phrase before bar line ``bar`` and the bar after it, as events.

    ``target`` follows the phrase (a velocity token only where the bin changes);
    ``alone`` is the same bar read with nothing before it (its first note sends a
    velocity token). Scores compare the two on their non-velocity tokens, which are the same.
    """

    line: Line
    bar: int  # grid step of the bar line
    phrase: tuple[list[int], list[int]]  # tokens, positions of the phrase (cursor shifted on to ``bar``)
    target: tuple[list[int], list[int]]  # tokens, positions of the next bar (cursor shifted on to bar + 16)
    alone: tuple[list[int], list[int]]  # the same bar's tokens, positions with no phrase before it


def cases(lines: list[Line], context: int = 64, bar: int = 16, per_line: int = 4) -> list[Case]:
    """Up to ``per_line`` held-out continuations per line: ``context`` steps of phrase, then one bar.

    Bar lines are every ``bar`` steps from the line's first bar; a case needs a
    note in its phrase and one in its bar, unaugmented (metrical velocities).
    """
    from cadenza.models.continuation import events

    out = []
    for line in lines:
        velocity = velocities(line.step)
        found = 0
        for b in range(context, int(line.step[-1]) + 1, bar):
            before = (line.step >= b - context) & (line.step < b)
            inside = (line.step >= b) & (line.step < b + bar)
            if not before.any() or not inside.any():
                continue
            first = int(line.step[before][0]) // events.BEAT * events.BEAT
            phrase = events.encode(line.step[before], line.pitch[before], velocity[before],
                                   line.duration[before], first, b)
            target = events.encode(line.step[inside], line.pitch[inside], velocity[inside],
                                   line.duration[inside], b, b + bar, phrase[2])
            alone = events.encode(line.step[inside], line.pitch[inside], velocity[inside],
                                  line.duration[inside], b, b + bar)
            out.append(Case(line, b, phrase[:2], target[:2], alone[:2]))
            found += 1
            if found == per_line:
                break
    return out
