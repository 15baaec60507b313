"""WAV in and out (soundfile), resampled to the engine's rate (scipy's polyphase filter)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from engine.errors import CadenzaError


class AudioFileError(CadenzaError, ValueError):
    """An audio file that cannot be read. The message is one line."""


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A sound file as float32 (channels, frames) at ``sample_rate`` Hz."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError) as exc:
        raise AudioFileError(f"{path}: cannot read audio ({exc})") from None
    audio = data.T
    if rate != sample_rate:
        ratio = Fraction(sample_rate, rate).limit_denominator(1000)
        audio = resample_poly(audio, ratio.numerator, ratio.denominator, axis=1).astype(np.float32)
    return np.ascontiguousarray(audio)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write (channels, frames) float audio as 24-bit WAV, atomically: no half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        sf.write(tmp, np.asarray(audio, np.float32).T, sample_rate, subtype="PCM_24", format="WAV")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
