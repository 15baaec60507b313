"""``cadenza pitch FILE.wav [--json]``: the streaming pitch listener run over a file.

One row per hop: time (s), f0 (Hz, 0 when unvoiced), voicing probability,
loudness (dB, A-weighted). A row's time is the moment it would be emitted live
minus the listener's fixed delay (``cadenza.engine.dsp.pitch.DELAY_S``); rows that
would be stamped before the file starts are left out.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from cadenza.engine.cli import UserError
from cadenza.engine.dsp.pitch import PitchFrames, PitchTracker

NATIVE_RATES = (44100, 48000)
BLOCK = 128  # frames per streaming call, as the engine's default block


def add_arguments(parser) -> None:
    parser.add_argument("file", help="audio file (mixed to mono; 44.1 / 48 kHz used as is, others resampled to 48 kHz)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text rows")
    parser.add_argument("--fmin", type=float, default=None, help="lowest f0, Hz")
    parser.add_argument("--fmax", type=float, default=None, help="highest f0, Hz")
    parser.add_argument("--rules", action="store_true",
                        help="YIN's rules alone, without the learned head (which covers 55-1600 Hz)")


def analyse_file(path, fmin=None, fmax=None, learned=True) -> tuple[PitchFrames, PitchTracker]:
    """Stream a file through a fresh tracker, in engine-sized blocks."""
    from cadenza.engine.audio_io import AudioFileError, file_rate, read_audio

    rate = file_rate(path)
    rate = rate if rate in NATIVE_RATES else 48000
    audio = read_audio(path, rate).mean(axis=0).astype(np.float32)
    if audio.shape[0] == 0:
        raise AudioFileError(f"{path}: empty (0 frames), nothing to track")
    kwargs = {k: v for k, v in (("fmin", fmin), ("fmax", fmax)) if v is not None}
    try:
        if learned:
            from cadenza.models.pitch.model import numba_weights

            kwargs["head"] = numba_weights()
        tracker = PitchTracker(rate, **kwargs)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    frames = tracker.process_file(audio, BLOCK)
    keep = frames.time_s >= 0.0
    return PitchFrames(*(col[keep] for col in frames)), tracker


def run(args) -> int:
    frames, tracker = analyse_file(args.file, args.fmin, args.fmax, not args.rules)
    f0 = np.where(frames.voiced, frames.f0_hz, 0.0)
    if args.json:
        json.dump({
            "file": str(args.file), "sample_rate": tracker.sample_rate,
            "hop_s": tracker.hop / tracker.sample_rate, "delay_s": tracker.delay_s,
            "time_s": np.round(frames.time_s, 6).tolist(), "f0_hz": np.round(f0, 3).tolist(),
            "voicing": np.round(frames.voicing, 4).tolist(),
            "loudness_db": np.round(frames.loudness_db, 2).tolist(),
        }, sys.stdout)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"# time_s f0_hz voicing loudness_db   (delay {tracker.delay_s * 1e3:g} ms subtracted)\n")
    for row in zip(frames.time_s, f0, frames.voicing, frames.loudness_db):
        out.write("%.4f %.2f %.3f %.1f\n" % row)
    return 0
