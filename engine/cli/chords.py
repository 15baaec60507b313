"""``cadenza chords FILE.wav [--json]``: the streaming chord and key listener run over a file.

The file is fed block by block through the same :class:`ChordListener` object
and per-block code that run live. One row per chord change: time (s), the
chord as mir_eval writes it (``C:maj``, ``A:min``, ``N``) and the key known
then (``-`` before the first). A row's time is when the listener emitted it
minus its fixed delay (``delay_s``, half its analysis window), so rows line up
with the audio; the first row, ``N`` at 0 s, is the state the stream starts in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from cadenza.instruments.listeners.chords import ChordTrack, track


def add_arguments(parser) -> None:
    parser.add_argument("file", type=Path, help="audio file (WAV, FLAC, ...; mixed to mono)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text rows")


def stamped(times: np.ndarray, delay_s: float) -> list[float]:
    """Emission times (s) less the listener's delay, never before the file starts, rounded to 0.1 ms."""
    return [round(max(float(t) - delay_s, 0.0), 4) for t in times]


def analyse_file(path: Path) -> ChordTrack:
    """Stream a file through a fresh listener at its own rate, in 128-frame blocks."""
    from cadenza.engine.audio_io import AudioFileError, file_rate, read_audio

    sr = file_rate(path)
    audio = read_audio(path, sr)
    if audio.shape[1] == 0:
        raise AudioFileError(f"{path}: empty (0 frames), nothing to listen to")
    return track(audio, sr)


def run(args) -> int:
    result = analyse_file(args.file)
    chord_t = stamped(result.chord_times, result.delay_s)
    key_t = stamped(result.key_times, result.delay_s)
    if args.json:
        json.dump({
            "file": str(args.file), "delay_s": result.delay_s,
            "chords": [{"time": t, "label": label} for t, label in zip(chord_t, result.chord_labels)],
            "key": [{"time": t, "label": label} for t, label in zip(key_t, result.key_labels)],
        }, sys.stdout)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"# time_s chord key   (delay {result.delay_s * 1e3:.1f} ms subtracted)\n")
    k = 0
    for t, label in zip(chord_t, result.chord_labels):
        while k < len(key_t) and key_t[k] <= t:
            k += 1
        out.write(f"{t:.4f} {label} {result.key_labels[k - 1] if k else '-'}\n")
    return 0
