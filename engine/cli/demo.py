"""``cadenza demo``: a scripted performance through the default patch, kept as a WAV.

The score is a Bach chorale from music21's corpus (it ships in the wheel),
played as MIDI notes through the patch's ``[midi]`` routing, on the live
backend that exists here (JACK, a sound card) or else ``null``.
"""

from __future__ import annotations

from pathlib import Path

from cadenza.engine.midi import midi_to_events

DEMO_CHORALE = "bach/bwv66.6"
DEMO_BPM = 84.0


def chorale_messages(seconds: float, bpm: float = DEMO_BPM, work: str = DEMO_CHORALE):
    """(time s, MIDI bytes) of a chorale's four voices, cut at ``seconds``, with humanised velocity."""
    from music21 import corpus

    score = corpus.parse(work)
    beat_s = 60.0 / bpm
    messages = []
    for part_no, part in enumerate(score.parts):
        for note in part.flatten().notes:
            start = float(note.offset) * beat_s + 0.5
            end = start + float(note.quarterLength) * beat_s * 0.95
            if start >= seconds:
                continue
            velocity = 70 + 12 * (part_no == 0) + (int(note.offset * 7) % 9)
            for pitch in note.pitches:
                messages.append((start, [0x90, pitch.midi, velocity]))
                messages.append((min(end, seconds), [0x80, pitch.midi, 0]))
    messages.sort(key=lambda m: (m[0], m[1][0] == 0x90))
    return messages


def demo(out: Path, backend: str | None = None, seconds: float = 16.0, patch=None) -> Path:
    """Play the scripted performance live and write what was played to ``out``."""
    from cadenza.engine.cli import play

    def script(engine) -> None:
        events = midi_to_events(chorale_messages(seconds - 1.5), engine.midi_map, engine.sample_rate)
        engine.schedule(events)

    played = play(patch, backend, seconds, out, script=script)
    genie_demo(out.with_name(out.stem + "-genie" + out.suffix))
    return played


# Piano Genie demo: (button run, beats per press) motifs on 8 buttons, then a 3-button chord.
GENIE_MOTIFS = [
    ([0, 1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4, 3, 2, 1, 0], 0.5),
    ([2, 4, 3, 5, 4, 6, 5, 7], 0.5),
    ([7, 5, 3, 0], 1.0),
    ([0, 2, 4, 2, 0, 2, 4, 7, 6, 4, 2, 4, 3, 1, 2, 0], 0.5),
]
GENIE_CHORD = [0, 4, 7]


def genie_presses(bpm: float = 112.0) -> list[tuple[float, int, int, float]]:
    """(time s, button, velocity, hold s) of the scripted 8-button performance."""
    beat_s = 60.0 / bpm
    presses, t = [], 0.25
    for buttons, beats in GENIE_MOTIFS:
        for i, button in enumerate(buttons):
            presses.append((t, button, 96 if i % 4 == 0 else 78, beats * beat_s * 0.9))
            t += beats * beat_s
        t += beat_s
    presses += [(t, button, 90, 2.0 * beat_s) for button in GENIE_CHORD]
    return presses


def genie_demo(out: Path, patch="genie", tail_s: float = 2.5) -> Path:
    """Render the scripted button performance through ``patches/genie.toml`` offline to ``out``."""
    import sys

    import numpy as np

    from cadenza.engine.audio_io import write_wav
    from cadenza.engine.backends.offline import OfflineBackend
    from cadenza.engine.cli import build_engine
    from cadenza.engine.events import EVENT_DTYPE, Kind

    engine = build_engine(patch)
    try:
        sr, target = engine.sample_rate, engine.midi_map.buttons_to
        rows = []
        for t, button, velocity, hold in genie_presses():
            rows.append((round(t * sr), Kind.BUTTON, target, 0, button, velocity, 0.0))
            rows.append((round((t + hold) * sr), Kind.BUTTON, target, 0, button, 0, 0.0))
        events = np.array(rows, dtype=EVENT_DTYPE)
        audio = OfflineBackend(engine).render(int(events["time"].max()) + int(tail_s * sr), None, events)
        write_wav(out, audio, sr)
    finally:
        engine.close()
    print(f"cadenza: wrote the Piano Genie demo to {out}", file=sys.stderr)
    return out
