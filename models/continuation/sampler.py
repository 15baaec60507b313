"""The sampler the continuation generator calls: hear a phrase, then continue it one bar at a time.

    c = Continuer()                        # continuation.pt: torch on CUDA when present, else numba on the CPU
    c.prime([(0, 60, 90, 2), (2, 62, 80, 2), ...])   # (grid step, pitch, velocity, duration steps)
    notes = c.continue_bar(16, temperature=1.0, density=1.0, register=(48, 84),
                           key_mask=key_mask(0, 0), seed=7)
    # [(step offset in the bar, pitch, velocity, duration steps), ...]

Grid steps are sixteenth notes; step 0 (and every multiple of 16) is a bar line.
Each call runs the net one event at a time until the cursor has moved ``steps``
grid steps, so it belongs on the worker lane, never in a block. The next call
continues from where this one stopped. The net runs in torch on CUDA when there
is one (:class:`TorchStepper`), else as its numba port (``numba_step.py``: the
same logits, ~1e-5, without holding the GIL); ``backend`` picks either.

Sampling: logits ÷ temperature (0: greedy), then masks — the event grammar
(``events.allowed_after``), pitches outside ``register`` or outside ``key_mask``,
a pitch already started at this step, more than ``MAX_NOTES_PER_STEP`` notes at
one step — and ``density`` multiplies the probability that a note starts at a
step where none has yet (rather than a time shift), capped at 1. The model's
rhythm is near certain on this corpus, so above 1 ``density`` also divides each
sampled shift (``round(s / density)``, at least 1) and notes are cut at the next
onset: more, shorter notes. A shift past
the end of the bar is cut to the bar line. The same state and seed give the same notes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cadenza.models.continuation import events
from cadenza.models.continuation.model import ContinuationNet, load
from cadenza.models.continuation.numba_step import NumbaStepper

WEIGHTS = Path(__file__).resolve().parent / "continuation.pt"
MAX_NOTES_PER_STEP = 4
CONTEXT_STEPS = 64  # the phrase heard: at most its last 4 bars
SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10, 11))  # major; natural minor + raised 7th


def key_mask(tonic: int, mode: int) -> np.ndarray:
    """12 bools, True for the pitch classes of the key (``mode`` 0 major, 1 minor with its leading tone)."""
    mask = np.zeros(12, dtype=bool)
    mask[[(tonic + d) % 12 for d in SCALES[mode]]] = True
    return mask


def key_of_control(value: float) -> tuple[int, int]:
    """The ``chords.key`` control (tonic + 12 × mode) → (tonic 0..11, mode 0/1)."""
    v = int(round(value))
    return v % 12, min(max(v // 12, 0), 1)


class Continuer:
    """A continuation net with its running state: ``reset``, ``prime``, ``continue_bar``."""

    def __init__(self, path: str | Path = WEIGHTS, device: str | torch.device | None = None,
                 backend: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.meta = load(path, self.device)
        self.backend = backend or ("torch" if self.device.type == "cuda" else "numba")
        self.net = TorchStepper(self.model) if self.backend == "torch" else NumbaStepper(self.model)
        self.reset()

    def reset(self, cursor: int = 0) -> None:
        """Forget everything heard; the cursor (grid steps) at ``cursor``."""
        self.cursor = cursor
        self.net.reset()
        self._vel_bin = -1
        self._feed([events.START], [cursor % events.BEAT])

    def _feed(self, tokens: list[int], positions: list[int]) -> None:
        """Run the net over ``tokens`` (one event step each; several in one call when priming)."""
        self._logits = self.net.feed(tokens, positions)
        self._last = tokens[-1]

    def prime(self, notes, end: int | None = None) -> None:
        """Hear a phrase: ``notes`` are (grid step, pitch, velocity, duration steps), in any order.

        The state restarts; only the last ``CONTEXT_STEPS`` before ``end`` are heard.
        The cursor ends at ``end`` (default: the bar line after the last onset),
        where the next :meth:`continue_bar` starts.
        """
        rows = sorted((int(s), int(p), int(v), int(d)) for s, p, v, d in notes)
        if end is None:
            end = (rows[-1][0] // 16 + 1) * 16 if rows else 0
        rows = [r for r in rows if end - CONTEXT_STEPS <= r[0] < end]
        if not rows:
            self.reset(end)
            return
        start = rows[0][0] // events.BEAT * events.BEAT
        self.reset(start)
        cols = list(zip(*rows))
        tokens, positions, self._vel_bin = events.encode(*cols, start=start, end=end)
        self._feed(tokens, positions)
        self.cursor = end

    def _note_mask(self, register: tuple[int, int], key: np.ndarray | None) -> np.ndarray:
        """(NUM_PITCHES,) bools: the pitches that may sound."""
        pitch = np.arange(events.NUM_PITCHES) + events.LOWEST
        ok = (pitch >= register[0]) & (pitch <= register[1])
        if key is not None:
            ok &= np.asarray(key, dtype=bool)[pitch % 12]
        return ok

    def continue_bar(self, steps: int = 16, temperature: float = 1.0, density: float = 1.0,
                     register: tuple[int, int] = (events.LOWEST, events.LOWEST + events.NUM_PITCHES - 1),
                     key_mask=None, seed: int | None = None) -> list[tuple[int, int, int, int]]:
        """The next ``steps`` grid steps: [(step offset, pitch, velocity, duration steps)], onsets in order."""
        rng = np.random.default_rng(seed)
        pitch_ok = self._note_mask(register, key_mask)
        end = self.cursor + steps
        begin = self.cursor
        notes: list[tuple[int, int, int, int]] = []
        started: list[int] = []  # pitches begun at the cursor
        pending = -1
        while self.cursor < end:
            allowed = events.allowed_after(self._last)
            allowed[events.NOTE_ON:events.DUR] &= pitch_ok
            allowed[[events.NOTE_ON + p - events.LOWEST for p in started]] = False
            if len(started) >= MAX_NOTES_PER_STEP or not allowed[events.NOTE_ON:events.DUR].any():
                allowed[events.NOTE_ON:events.DUR] = False
                allowed[events.VEL:] = False
            token = self._sample(allowed, temperature, density, bool(started), rng)
            position = self.cursor % events.BEAT
            if events.SHIFT <= token < events.VEL:
                shift = token - events.SHIFT + 1
                if density > 1.0:
                    shift = max(1, round(shift / density))
                shift = min(shift, end - self.cursor)
                token = events.SHIFT + shift - 1
                self.cursor += shift
                position = self.cursor % events.BEAT
                started = []
            elif events.VEL <= token:
                self._vel_bin = token - events.VEL
            elif token >= events.DUR:
                velocity = events.bin_velocity(self._vel_bin if self._vel_bin >= 0 else 5)
                notes.append((self.cursor - begin, pending, velocity, token - events.DUR + 1))
            else:
                pending = token - events.NOTE_ON + events.LOWEST
                started.append(pending)
            self._feed([token], [position])
        if density > 1.0:
            onsets = sorted({n[0] for n in notes}) + [steps]
            after = {a: b for a, b in zip(onsets, onsets[1:])}
            notes = [(s, p, v, min(d, after[s] - s)) for s, p, v, d in notes]
        return notes

    def _sample(self, allowed: np.ndarray, temperature: float, density: float, chord: bool,
                rng: np.random.Generator) -> int:
        """One token from the current logits under ``allowed``, ``temperature`` and ``density``.

        ``density`` multiplies the probability of starting a note (a note or a
        velocity change) rather than shifting on, capped at 1; ``chord``: a note has
        already started at this step, and whether another joins it is left to the model.
        """
        logits = np.where(allowed, self._logits, -np.inf)
        z = logits / (temperature if temperature > 0.0 else 1.0)
        p = np.exp(z - z.max())
        p /= p.sum()
        if density != 1.0 and not chord:
            note = np.zeros(events.VOCAB, dtype=bool)
            note[events.NOTE_ON:events.DUR] = True
            note[events.VEL:] = True
            mass, rest = p[note].sum(), p[~note].sum()  # rest, not 1 - mass: that loses a tiny rest to rounding
            if mass > 0.0 and rest > 0.0:
                scaled = min(max(density, 0.0) * mass, 1.0)
                p = np.where(note, p * (scaled / mass), p * ((1.0 - scaled) / rest))
        if temperature <= 0.0:
            return int(np.argmax(p))
        return int(rng.choice(len(p), p=p))


class TorchStepper:
    """The net in torch on its own device, with its state: ``reset``, ``feed`` (the CUDA path)."""

    def __init__(self, model: ContinuationNet):
        self.model = model
        self.device = model.out.weight.device
        self.state = None

    def reset(self) -> None:
        self.state = None

    def feed(self, tokens: list[int], positions: list[int]) -> np.ndarray:
        """Run the net over ``tokens`` at ``positions`` in one call; the logits (VOCAB,) after the last."""
        t = torch.tensor([tokens], device=self.device)
        p = torch.tensor([positions], device=self.device)
        with torch.no_grad():
            logits, self.state = self.model(t, p, self.state)
        return logits[0, -1].double().cpu().numpy()
