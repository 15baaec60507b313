"""Decoder inputs from audio: the project's own causal pitch/loudness listener, as on stage.

The listener (:class:`cadenza.engine.dsp.pitch.PitchTracker`, with the settings the
decoders were trained under: ``MODEL_INPUT_SETTINGS``, a pitch node's
``settings = "model_inputs"``) runs at the live rate (:data:`LIVE_RATE`) over
the audio, and each control frame takes the values the voice node would read at
that frame's last sample: ``f0_held_hz`` (last voiced f0, held), ``voicing``
(0..1) and ``loudness_db`` (A-weighted dB). Nothing looks ahead, so the decoder
trains on exactly what it hears live.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import resample_poly

from cadenza.engine.dsp.pitch import MODEL_INPUT_SETTINGS, PitchTracker

LIVE_RATE = 48000  # Hz


def listen(audio: np.ndarray, sample_rate: int, hop_s: float, block: int = 4096) -> dict[str, np.ndarray]:
    """Per-frame (``hop_s`` seconds) ``f0`` (Hz, held), ``voicing``, ``loudness`` (dB) of mono audio."""
    up = LIVE_RATE // sample_rate
    x = resample_poly(audio.astype(np.float64), up, 1).astype(np.float32) if up > 1 else audio.astype(np.float32)
    hop = int(round(hop_s * LIVE_RATE))
    n_frames = len(x) // hop
    tracker = PitchTracker(LIVE_RATE, **MODEL_INPUT_SETTINGS)  # what the decoders were trained on
    hops_out, pub = tracker.buffers(block)
    rows = np.zeros((3, n_frames), np.float32)
    for start in range(0, n_frames * hop, block):
        chunk = x[start:start + block]
        tracker.process_into(np.ascontiguousarray(chunk), hops_out, pub)
        ends = np.arange(start, start + len(chunk))
        pick = (ends + 1) % hop == 0
        idx = (ends[pick] + 1) // hop - 1
        local = np.nonzero(pick)[0]
        rows[0, idx] = pub[3, local]
        rows[1, idx] = pub[1, local]
        rows[2, idx] = pub[2, local]
    return {"f0": rows[0], "voicing": rows[1], "loudness": rows[2]}


def cents_error(f0: np.ndarray, reference: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """|1200 log2(f0 / reference)| on frames where both are positive and ``voiced``."""
    ok = voiced & (f0 > 0) & (reference > 0)
    return np.abs(1200.0 * np.log2(f0[ok] / reference[ok]))


def cross_checked(listened: dict[str, np.ndarray], f0_midi: np.ndarray,
                  tolerance_cents: float = 100.0) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Training inputs: the listener's frames, its f0 replaced by the MIDI f0 (bend included)
    where the score says a note sounds and the two differ by more than ``tolerance_cents``
    (octave slips of the tracker); returns the features and the cross-check figures."""
    f0 = listened["f0"].copy()
    voiced = listened["voicing"] >= 0.5
    sounding = f0_midi > 0
    err = np.full(len(f0), np.inf)
    ok = sounding & (f0 > 0)
    err[ok] = np.abs(1200.0 * np.log2(f0[ok] / f0_midi[ok]))
    swap = sounding & (err > tolerance_cents)
    f0[swap] = f0_midi[swap]
    both = voiced & sounding & np.isfinite(err)
    stats = {"median_cents_vs_midi": float(np.median(err[both])) if both.any() else float("nan"),
             "within_50_cents": float(np.mean(err[both] < 50)) if both.any() else float("nan"),
             "replaced_fraction": float(swap.sum() / max(sounding.sum(), 1))}
    return {"f0": f0, "voicing": listened["voicing"], "loudness": listened["loudness"]}, stats
