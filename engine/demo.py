"""``cadenza demo``: a scripted performance through the default patch, kept as a WAV.

The score is a Bach chorale from music21's corpus (it ships in the wheel),
played as MIDI notes through the patch's ``[midi]`` routing, on the live
backend that exists here (JACK, a sound card) or else ``null``.
"""

from __future__ import annotations

from pathlib import Path

from engine.midi import midi_to_events

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
    from engine.cli import play

    def script(engine) -> None:
        events = midi_to_events(chorale_messages(seconds - 1.5), engine.midi_map, engine.sample_rate)
        engine.schedule(events)

    return play(patch, backend, seconds, out, script=script)
