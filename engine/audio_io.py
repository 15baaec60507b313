"""WAV in and out (soundfile), resampled to the engine's rate (scipy's polyphase filter)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from cadenza.engine.errors import CadenzaError


MIN_RATE, MAX_RATE = 4000, 768000  # sample rates accepted in a sound file, Hz


class AudioFileError(CadenzaError, ValueError):
    """An audio file that cannot be read or written. The message is one line."""


def file_rate(path: str | Path) -> int:
    """A sound file's own sample rate, Hz, checked to lie in ``MIN_RATE..MAX_RATE``."""
    try:
        rate = sf.info(str(path)).samplerate
    except (RuntimeError, OSError) as exc:  # sf.LibsndfileError is a RuntimeError
        raise AudioFileError(f"{path}: cannot read audio ({_one_line(exc)})") from None
    _check_rate(path, rate)
    return rate


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A sound file as float32 (channels, frames) at ``sample_rate`` Hz (0 frames for an empty file)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as exc:
        raise AudioFileError(f"{path}: cannot read audio ({_one_line(exc)})") from None
    _check_rate(path, rate)
    audio = data.T
    if rate != sample_rate:
        ratio = Fraction(sample_rate, rate).limit_denominator(1000)
        audio = resample_poly(audio, ratio.numerator, ratio.denominator, axis=1).astype(np.float32)
    return np.ascontiguousarray(audio)


def _check_rate(path, rate: int) -> None:
    """AudioFileError unless ``rate`` (Hz) is one a sound file may sensibly have."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFileError(f"{path}: sample rate {rate} Hz, allowed {MIN_RATE}..{MAX_RATE} Hz")


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write (channels, frames) float audio as 24-bit WAV, atomically: no half-written file.

    AudioFileError, naming ``path``, when it is a directory or cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory; give a file name, e.g. {path / 'out.wav'}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:  # opened here, so a failure says why (libsndfile says "System error")
            sf.write(f, np.asarray(audio, np.float32).T, sample_rate, subtype="PCM_24", format="WAV")
        os.replace(tmp, path)
    except (RuntimeError, OSError) as exc:
        raise AudioFileError(f"{path}: cannot write WAV ({_one_line(exc)})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
