"""The neural vocoder's input features: causal 80-band log-mel frames, and f0 from the pitch listener.

Defined in seconds, so the same features come out at any sample rate: a
frame every ``HOP_S`` (2.67 ms: 64 samples at 24 kHz, 128 at 48 kHz) from a
Hann window of ``WIN_S`` (21.3 ms) that *ends* at the frame's last sample
(causal). Magnitudes are divided by the window's sum, so a sine of amplitude
A reads about A/2 in its bin at every rate. Mel filters are librosa's Slaney-style
triangles (area-normalised) from ``FMIN_HZ`` to ``FMAX_HZ``, built once per analyser.

f0 comes from :class:`cadenza.engine.dsp.pitch.PitchTracker` (the same streaming
tracker the live node runs): per frame, the held f0 (Hz, last voiced value)
and the voicing probability as the tracker reported them at the frame's end.
"""

from __future__ import annotations

import librosa
import numpy as np

HOP_S = 64 / 24000  # s between frames
WIN_S = 512 / 24000  # s, analysis window
N_MELS = 80
FMIN_HZ = 40.0
FMAX_HZ = 12000.0
LOG_FLOOR = 1e-5  # added to mel magnitudes before the log


def hop_samples(sr: float) -> int:
    """Samples per frame at ``sr`` Hz."""
    return int(round(HOP_S * sr))


def win_samples(sr: float) -> int:
    """Samples per analysis window at ``sr`` Hz."""
    return int(round(WIN_S * sr))


def mel_centres() -> np.ndarray:
    """(N_MELS,) centre frequencies of the mel bands, Hz."""
    return librosa.mel_frequencies(N_MELS + 2, fmin=FMIN_HZ, fmax=FMAX_HZ, htk=False)[1:-1]


def mel_basis(sr: float, n_fft: int) -> np.ndarray:
    """(N_MELS, n_fft // 2 + 1) float32 Slaney mel filterbank at ``sr`` Hz (librosa's; build time only)."""
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=N_MELS, fmin=FMIN_HZ, fmax=FMAX_HZ, htk=False,
                               norm="slaney", dtype=np.float32)


class MelAnalyser:
    """Causal log-mel frames at ``sr`` Hz, offline (:meth:`frames`) or one hop at a time (:meth:`push`)."""

    def __init__(self, sr: float):
        self.sr = float(sr)
        self.hop = hop_samples(sr)
        self.win = win_samples(sr)
        self.n_fft = self.win
        self.window = (np.hanning(self.win + 1)[:self.win]).astype(np.float32)
        self.window /= self.window.sum()
        self.basis = mel_basis(sr, self.n_fft)
        self.buffer = np.zeros(self.win, np.float32)
        self.out = np.zeros(N_MELS, np.float32)

    def frames(self, audio: np.ndarray) -> np.ndarray:
        """(len // hop, N_MELS) float32 log-mel of a whole signal; frame t ends at sample (t+1)·hop."""
        audio = np.asarray(audio, np.float32)
        n = audio.shape[0] // self.hop
        padded = np.concatenate([np.zeros(self.win - self.hop, np.float32), audio[: n * self.hop]])
        idx = np.arange(self.win)[None, :] + self.hop * np.arange(n)[:, None]
        spec = np.abs(np.fft.rfft(padded[idx] * self.window, axis=1))
        return np.log(spec.astype(np.float32) @ self.basis.T + LOG_FLOOR)

    def push(self, hop_audio: np.ndarray) -> np.ndarray:
        """Take the next hop (``hop`` samples); returns this frame's log-mel (a reused array)."""
        buf = self.buffer
        buf[: -self.hop] = buf[self.hop:]
        buf[-self.hop:] = hop_audio
        spec = np.abs(np.fft.rfft(buf * self.window))
        np.dot(self.basis, spec.astype(np.float32), out=self.out)
        np.log(self.out + LOG_FLOOR, out=self.out)
        return self.out

    def reset(self) -> None:
        self.buffer[:] = 0.0


def pitch_frames(audio: np.ndarray, sr: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (held f0 Hz, voicing 0..1) from the streaming pitch tracker, causally.

    Frame t takes the tracker's per-sample output at sample (t+1)·hop − 1.
    """
    from cadenza.engine.dsp.pitch import MODEL_INPUT_SETTINGS, PitchTracker

    tracker = PitchTracker(int(sr), **MODEL_INPUT_SETTINGS)
    block = 1024
    hops, pub = tracker.buffers(block)
    hop = hop_samples(sr)
    n = audio.shape[0] // hop
    held = np.zeros(audio.shape[0], np.float32)
    voicing = np.zeros(audio.shape[0], np.float32)
    x = np.asarray(audio, np.float32)
    for start in range(0, x.shape[0], block):
        piece = x[start: start + block]
        tracker.process_into(piece, hops, pub)
        held[start: start + piece.shape[0]] = pub[3, : piece.shape[0]]
        voicing[start: start + piece.shape[0]] = pub[1, : piece.shape[0]]
    ends = hop * np.arange(1, n + 1) - 1
    return held[ends], voicing[ends]
