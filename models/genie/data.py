"""Piano Genie training data: note sequences from music21's bundled corpus.

Nothing is downloaded: the pieces come from the corpus inside music21's wheel
(Bach chorales and other Bach scores, plus a few Essen folk-song collections).
Each piece becomes one note sequence sorted by onset then pitch, with

- ``onset``    onset time, seconds (quarter length × 60 / bpm of the piece),
- ``pitch``    MIDI note number, 21..108 (the 88 piano keys),
- ``velocity`` 1..127 (the scores carry none: 84 on even beats, 76 on odd, 68 off the beat),
- ``duration`` seconds.

The split into train / valid / test is by piece and derived from a hash of the
piece id, so it never changes (``split_of``). The parsed corpus is cached in
``data/genie/`` (gitignored) at the repository root; parsing takes a few minutes.

Augmentation (``augment``), as in Donahue et al. 2019 plus humanisation because
the scores are quantised: transpose ±6 semitones, time stretch ±5 %, onset jitter
(Gaussian, 10 ms) and velocity jitter (Gaussian, 8).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.models.corpus import bach_files, corpus_root, parse_files

LOWEST_KEY = 21  # A0
NUM_KEYS = 88
DEFAULT_BPM = 100.0
CACHE = Path(__file__).resolve().parents[2] / "data" / "genie" / "corpus_v1.npz"

# Essen folk-song collections used (each an opus of many tunes).
ESSEN = ("kinder0", "altdeu10", "han1")


@dataclass
class Piece:
    """One piece's notes (arrays of equal length, sorted by onset then pitch)."""

    piece_id: str
    onset: np.ndarray  # float64 seconds
    pitch: np.ndarray  # int64 MIDI
    velocity: np.ndarray  # int64 1..127
    duration: np.ndarray  # float64 seconds

    def __len__(self) -> int:
        return len(self.pitch)


def split_of(piece_id: str) -> str:
    """The fixed split of a piece: ~80 % train, 10 % valid, 10 % test (by hash of the id)."""
    bucket = int(hashlib.sha1(piece_id.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def _score_notes(score, piece_id: str) -> Piece | None:
    """Flatten a music21 score into a :class:`Piece`; None if it has under 16 keys."""
    from music21 import tempo

    flat = score.stripTies(inPlace=False).flatten()
    marks = list(flat.getElementsByClass(tempo.MetronomeMark))
    bpm = DEFAULT_BPM
    if marks and marks[0].number:
        bpm = float(marks[0].getQuarterBPM() or marks[0].number)
    sec_per_quarter = 60.0 / bpm
    rows = []
    for element in flat.notes:
        offset = float(element.offset)
        velocity = 84 if offset % 2.0 == 0.0 else 76 if offset % 1.0 == 0.0 else 68
        start = offset * sec_per_quarter
        length = max(float(element.quarterLength), 0.125) * sec_per_quarter
        for p in element.pitches:
            if LOWEST_KEY <= p.midi < LOWEST_KEY + NUM_KEYS:
                rows.append((start, p.midi, velocity, length))
    if len(rows) < 16:
        return None
    rows.sort(key=lambda r: (r[0], r[1]))
    arr = np.array(rows, dtype=np.float64)
    return Piece(piece_id, arr[:, 0], arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64), arr[:, 3])


def _parse_job(job: tuple[str, Path, str]) -> list[Piece]:
    """Parse one corpus file (a score, or an opus of folk tunes) into pieces."""
    from music21 import corpus

    kind, path, rel = job
    try:
        parsed = corpus.parse(str(path))
    except Exception:  # a handful of corpus files do not parse; skip them
        return []
    scores = list(parsed.scores) if kind == "essen" else [parsed]
    pieces = [_score_notes(score, rel if kind == "file" else f"{rel}#{i}") for i, score in enumerate(scores)]
    return [p for p in pieces if p is not None]


def _parse_corpus(progress: bool = True, workers: int = 3) -> list[Piece]:
    """Parse the chosen corpus files in ``workers`` processes, keeping the file order."""
    root = corpus_root()
    jobs = [("file", p) for p in bach_files()] + [("essen", root / "essenFolksong" / f"{n}.abc") for n in ESSEN]
    jobs = [(kind, path, path.relative_to(root).as_posix()) for kind, path in jobs]
    return parse_files(_parse_job, jobs, workers, progress)


def _save(pieces: list[Piece], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    np.savez_compressed(
        path,
        ids=np.array([p.piece_id for p in pieces]),
        lengths=lengths,
        onset=np.concatenate([p.onset for p in pieces]),
        pitch=np.concatenate([p.pitch for p in pieces]),
        velocity=np.concatenate([p.velocity for p in pieces]),
        duration=np.concatenate([p.duration for p in pieces]),
    )


def _load(path: Path) -> list[Piece]:
    with np.load(path) as z:
        bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
        cols = {k: z[k] for k in ("onset", "pitch", "velocity", "duration")}
        return [Piece(str(pid), *(cols[k][a:b] for k in ("onset", "pitch", "velocity", "duration")))
                for pid, a, b in zip(z["ids"], bounds[:-1], bounds[1:])]


def load_pieces(split: str | None = None, cache: Path = CACHE, progress: bool = True) -> list[Piece]:
    """All pieces (or one split's), parsing music21's corpus on first use and caching it."""
    if not cache.exists():
        _save(_parse_corpus(progress), cache)
    pieces = _load(cache)
    return pieces if split is None else [p for p in pieces if split_of(p.piece_id) == split]


def augment(piece: Piece, rng: np.random.Generator) -> Piece:
    """A randomly transposed (±6, kept on the keyboard), stretched (±5 %) and humanised copy."""
    lo, hi = int(piece.pitch.min()), int(piece.pitch.max())
    shifts = [s for s in range(-6, 7) if lo + s >= LOWEST_KEY and hi + s < LOWEST_KEY + NUM_KEYS]
    shift = int(rng.choice(shifts)) if shifts else 0
    stretch = rng.uniform(0.95, 1.05)
    onset = piece.onset * stretch + rng.normal(0.0, 0.010, len(piece))
    onset = np.maximum(onset, 0.0)
    order = np.lexsort((piece.pitch, onset))
    velocity = np.clip(np.round(piece.velocity + rng.normal(0.0, 8.0, len(piece))), 1, 127).astype(np.int64)
    return Piece(piece.piece_id, onset[order], (piece.pitch + shift)[order], velocity[order],
                 (piece.duration * stretch)[order])


def delta_times(onset: np.ndarray) -> np.ndarray:
    """Seconds since the previous onset (the first note gets 1 s: 'after a pause')."""
    dt = np.diff(onset, prepend=onset[0] - 1.0)
    return np.maximum(dt, 0.0)


def windows(pieces: list[Piece], length: int, batch: int, rng: np.random.Generator,
            do_augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A training batch: ``keys`` int64 (batch, length) in 0..87 and ``dt`` float32 seconds.

    Pieces are drawn with probability proportional to their note count, then a
    random window of ``length`` notes (shorter pieces are drawn again).
    """
    sizes = np.array([len(p) for p in pieces], dtype=np.float64)
    usable = np.flatnonzero(sizes >= length)
    prob = sizes[usable] / sizes[usable].sum()
    keys = np.empty((batch, length), dtype=np.int64)
    dts = np.empty((batch, length), dtype=np.float32)
    for row in range(batch):
        piece = pieces[int(rng.choice(usable, p=prob))]
        if do_augment:
            piece = augment(piece, rng)
        start = int(rng.integers(0, len(piece) - length + 1))
        keys[row] = piece.pitch[start:start + length] - LOWEST_KEY
        dt = delta_times(piece.onset)
        dts[row] = dt[start:start + length]
    return keys, dts


def eval_windows(pieces: list[Piece], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Every piece cut into consecutive, non-overlapping windows of ``length`` notes, unaugmented."""
    keys, dts = [], []
    for piece in pieces:
        dt = delta_times(piece.onset)
        for start in range(0, len(piece) - length + 1, length):
            keys.append(piece.pitch[start:start + length] - LOWEST_KEY)
            dts.append(dt[start:start + length])
    return np.array(keys, dtype=np.int64), np.array(dts, dtype=np.float32)


if __name__ == "__main__":
    all_pieces = load_pieces()
    for name in ("train", "valid", "test"):
        chosen = [p for p in all_pieces if split_of(p.piece_id) == name]
        print(f"{name}: {len(chosen)} pieces, {sum(len(p) for p in chosen)} notes")
