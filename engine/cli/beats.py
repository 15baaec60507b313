"""``cadenza beats FILE.wav [--json]``: the streaming beat tracker run over a file.

The file is fed block by block through the same :class:`BeatTracker` object
and the same per-block code that runs live; the beat times printed are the
samples at which the events were emitted, and the predicted beats are those
announced ``lead`` seconds before (each at least one block ahead); the
downbeats are the beats the tracker marked as the first of a bar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.engine import harness
from cadenza.engine.events import Kind
from cadenza.instruments.listeners.beat import BeatTracker


@dataclass
class BeatTrack:
    """What the tracker emitted over a whole signal. Times in seconds from the start."""

    beats: np.ndarray  # emitted beat times
    beat_bpm: np.ndarray  # tempo carried by each beat event
    downbeats: np.ndarray  # emitted downbeat times (each also a beat)
    beats_per_bar: np.ndarray  # bar length carried by each downbeat event, beats
    predicted: np.ndarray  # predicted beat times (prediction event time + its value)
    issued: np.ndarray  # when each prediction was issued
    bpm: np.ndarray  # per-block tempo (last frame of each block)
    confidence: np.ndarray  # per-block confidence

    def tempo(self) -> float:
        """Median tempo of the emitted beats (BPM), 0 when there are none."""
        return float(np.median(self.beat_bpm)) if len(self.beat_bpm) else 0.0


def track(audio: np.ndarray, sample_rate: int, block: int = 128, **options) -> BeatTrack:
    """Run a fresh tracker over mono or (channels, frames) ``audio`` block by block (the last
    block padded with silence)."""
    x = np.asarray(audio, np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
    n_blocks = -(-x.shape[0] // block)
    result = harness.run(BeatTracker("beat", **options), x, sample_rate, block=block, frames=n_blocks * block)
    bpm = result.controls["bpm"][block - 1::block]  # per block: its last frame
    conf = result.controls["confidence"][block - 1::block]
    ev = result.events
    is_beat = ev["kind"] == Kind.BEAT
    is_down = ev["kind"] == Kind.DOWNBEAT
    is_pred = ev["kind"] == Kind.BEAT_PREDICTION
    t = ev["time"] / sample_rate
    return BeatTrack(beats=t[is_beat], beat_bpm=ev["value"][is_beat].astype(np.float64),
                     downbeats=t[is_down], beats_per_bar=ev["value"][is_down].astype(np.int64),
                     predicted=t[is_pred] + ev["value"][is_pred], issued=t[is_pred],
                     bpm=bpm, confidence=conf)


def add_arguments(parser) -> None:
    parser.add_argument("file", type=Path, help="audio file (WAV, FLAC, ...)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--block", type=int, default=128, help="block size, frames (default 128)")


def run(args) -> int:
    from cadenza.engine.audio_io import AudioFileError, file_rate, read_audio
    from cadenza.engine.cli import UserError

    if args.block < 16 or args.block > 8192:
        raise UserError(f"--block: found {args.block}, allowed 16..8192")
    sr = file_rate(args.file)
    audio = read_audio(args.file, sr)
    if audio.shape[1] == 0:
        raise AudioFileError(f"{args.file}: empty (0 frames), nothing to track")
    result = track(audio, sr, args.block)
    if args.json:
        print(json.dumps({
            "file": str(args.file), "sample_rate": sr, "block": args.block,
            "tempo_bpm": round(result.tempo(), 2),
            "beats_s": [round(float(t), 4) for t in result.beats],
            "downbeats_s": [round(float(t), 4) for t in result.downbeats],
            "beats_per_bar": [int(m) for m in result.beats_per_bar],
            "predicted_s": [round(float(t), 4) for t in result.predicted],
            "predicted_issued_s": [round(float(t), 4) for t in result.issued],
        }))
        return 0
    print(f"# {args.file}: {len(result.beats)} beats, tempo {result.tempo():.1f} BPM "
          f"(streaming, {args.block}-frame blocks at {sr} Hz)")
    print("# beats as emitted (s)")
    for t in result.beats:
        print(f"{t:.4f}")
    print("# downbeats (s): the beats that start a bar")
    for t in result.downbeats:
        print(f"{t:.4f}")
    print("# predicted beats (s), issued at least one block ahead")
    for t in result.predicted:
        print(f"{t:.4f}")
    return 0
