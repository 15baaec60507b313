"""MIDI bytes → engine events, through a patch's ``[midi]`` table; MIDI files via mido.

The same :class:`MidiMap` serves MIDI files (offline), JACK MIDI and
python-rtmidi, so a controller plays identically live and in a render.
"""

from __future__ import annotations

from pathlib import Path

import mido
from mido.midifiles.meta import KeySignatureError
import numpy as np

from cadenza.engine.errors import CadenzaError
from cadenza.engine.events import BROADCAST, OUTBOUND, Kind, make_events

SUSTAIN_CC = 64
PANIC_CCS = (120, 123)  # all sound off, all notes off
MAX_MIDI_FILE_S = 3600.0  # longest MIDI file rendered, s: an hour of stereo float32 at 48 kHz is 1.4 GB


class MidiFileError(CadenzaError, ValueError):
    """A MIDI file that cannot be read. The message is one line."""


class MidiMap:
    """Maps one complete MIDI message (status, data1, data2) to events for a graph.

    Routing, from the patch's ``[midi]`` table:
    ``buttons = {to, notes}`` — those 8 notes become BUTTON events 0-7;
    ``notes = {to}`` — other notes, sustain, pitch bend, program, unmapped CCs;
    ``cc = {N = "node.param"}`` — CC N sets a param, 0-127 scaled to its range;
    CC 120/123 on any channel → PANIC to every node;
    ``thru = true`` — every note, CC, bend and program message on a listened
    channel also leaves the engine (``OUTBOUND``: JACK ``midi_out`` at its sample,
    the MIDI out port, OSC ``/cadenza/out/engine/...``), so gear downstream
    plays what the performer plays, timetagged OSC included.
    """

    def __init__(self, midi_table: dict, graph):
        self.channel = midi_table["channel"]
        index = graph.index
        self.notes_to = index.get(midi_table["notes"].get("to", ""), -1)
        self.buttons_to = index.get(midi_table["buttons"].get("to", ""), -1)
        self.buttons = {n: i for i, n in enumerate(midi_table["buttons"].get("notes", []))}
        self.cc = {int(cc): graph.param_target(dest) for cc, dest in midi_table["cc"].items()}
        self.thru = midi_table["thru"]
        self.ignored = 0
        # the last CC number and program seen on a listened channel, and how many came: a control
        # thread (MIDI learn, patch switching) polls these; the audio thread only stores small ints
        self.last_cc = -1
        self.ccs_seen = 0
        self.last_program = -1
        self.programs_seen = 0

    def with_cc(self, cc: int, target: tuple[int, int, float, float]) -> None:
        """Map CC ``cc`` to ``target`` (``graph.param_target``) from now on, from a control thread;
        any other CC that moved the same param lets go of it. One reference store: the audio
        thread sees the old table or the new one, never half of one."""
        self.cc = {n: t for n, t in self.cc.items() if t[:2] != target[:2]} | {cc: target}

    def events(self, status: int, d1: int = 0, d2: int = 0):
        """Yield (kind, target, channel, a, b, value) for one channel message."""
        kind = status & 0xF0
        ch = status & 0x0F
        if status < 0x80 or status >= 0xF0 or not (0 <= d1 < 128 and 0 <= d2 < 128):
            self.ignored += 1
            return
        if self.channel >= 0 and ch != self.channel:
            return
        if self.thru:
            yield from _thru(kind, ch, d1, d2)
        if kind == 0xB0 and d1 in PANIC_CCS:
            yield Kind.PANIC, BROADCAST, ch, d1, d2, 0.0
            return
        if kind in (0x80, 0x90):
            on = kind == 0x90 and d2 > 0
            if d1 in self.buttons and self.buttons_to >= 0:
                yield Kind.BUTTON, self.buttons_to, ch, self.buttons[d1], d2 if on else 0, 0.0
            elif self.notes_to >= 0:
                yield (Kind.NOTE_ON if on else Kind.NOTE_OFF), self.notes_to, ch, d1, d2, 0.0
            return
        if kind == 0xB0:
            self.last_cc = d1
            self.ccs_seen += 1
            if d1 in self.cc:
                node, param, lo, hi = self.cc[d1]
                yield Kind.PARAM, node, ch, param, d2, lo + (hi - lo) * d2 / 127.0
            elif self.notes_to >= 0:
                yield Kind.CC, self.notes_to, ch, d1, d2, d2 / 127.0
            return
        if kind == 0xC0:
            self.last_program = d1
            self.programs_seen += 1
        if self.notes_to < 0:
            return
        if kind == 0xE0:
            bend = ((d2 << 7) | d1) - 8192
            yield Kind.PITCH_BEND, self.notes_to, ch, 0, 0, bend / 8192.0
        elif kind == 0xC0:
            yield Kind.PROGRAM, self.notes_to, ch, d1, 0, 0.0


def _thru(kind: int, ch: int, d1: int, d2: int):
    """The OUTBOUND copy of one channel message (see ``MidiMap``)."""
    if kind == 0x90 and d2 > 0:
        yield Kind.NOTE_ON, OUTBOUND, ch, d1, d2, 0.0
    elif kind in (0x80, 0x90):
        yield Kind.NOTE_OFF, OUTBOUND, ch, d1, d2, 0.0
    elif kind == 0xB0:
        yield Kind.CC, OUTBOUND, ch, d1, d2, d2 / 127.0
    elif kind == 0xE0:
        yield Kind.PITCH_BEND, OUTBOUND, ch, 0, 0, (((d2 << 7) | d1) - 8192) / 8192.0
    elif kind == 0xC0:
        yield Kind.PROGRAM, OUTBOUND, ch, d1, 0, 0.0


def read_midi_file(path: str | Path) -> list[tuple[float, list[int]]]:
    """(time in seconds, message bytes) for every channel message of a MIDI file, in order.

    MidiFileError for a file that is missing, not MIDI, or longer than ``MAX_MIDI_FILE_S``.
    """
    try:
        midi = mido.MidiFile(str(path))
        out = []
        now = 0.0
        for msg in midi:
            now += msg.time
            if not msg.is_meta and msg.type != "sysex":
                out.append((now, msg.bytes()))
    except FileNotFoundError:
        raise MidiFileError(f"{path}: no such MIDI file") from None
    except IsADirectoryError:
        raise MidiFileError(f"{path}: is a directory, not a MIDI file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, ZeroDivisionError,
            KeySignatureError) as exc:
        raise MidiFileError(f"{path}: not a valid MIDI file ({str(exc) or type(exc).__name__})") from None
    if not out:
        raise MidiFileError(f"{path}: MIDI file has no note or controller messages")
    if now > MAX_MIDI_FILE_S:
        raise MidiFileError(f"{path}: MIDI file lasts {now / 3600:.1f} h, allowed up to "
                            f"{MAX_MIDI_FILE_S / 3600:g} h (a stray event far after the music?)")
    return out


NOTES_OUT_BPM = 120.0  # the tempo a notes-out file is written at: one tick is 1/960 s
NOTES_OUT_TICKS = 480  # ticks per beat


def write_notes_file(path: str | Path, notes: dict[str, np.ndarray], sample_rate: int) -> None:
    """A standard MIDI file (type 1, tempo 120, 480 ticks per beat: a tick is 1/960 s) with one
    track per named source, holding its NOTE_ON / NOTE_OFF events (EVENT_DTYPE rows, absolute
    sample times) at their samples, rounded to the nearest tick."""
    ticks_per_sample = NOTES_OUT_TICKS * NOTES_OUT_BPM / 60.0 / sample_rate
    midi = mido.MidiFile(type=1, ticks_per_beat=NOTES_OUT_TICKS)
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(NOTES_OUT_BPM))]))
    for name, events in notes.items():
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
        events = np.sort(events, order="time", kind="stable")
        last = 0
        for ev in events:
            tick = round(int(ev["time"]) * ticks_per_sample)
            on = int(ev["kind"]) == Kind.NOTE_ON
            track.append(mido.Message("note_on" if on else "note_off", channel=int(ev["channel"]) & 15,
                                      note=int(ev["a"]) & 127, velocity=int(ev["b"]) & 127 if on else 0,
                                      time=tick - last))
            last = tick
        midi.tracks.append(track)
    midi.save(str(path))


def read_notes_file(path: str | Path) -> dict[str, list[tuple[float, int]]]:
    """(onset s, MIDI note) of every note-on, per named track, of a file :func:`write_notes_file` wrote."""
    seconds_per_tick = 60.0 / NOTES_OUT_BPM / NOTES_OUT_TICKS
    tracks = {}
    for track in mido.MidiFile(str(path)).tracks[1:]:
        tick, notes = 0, []
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                notes.append((tick * seconds_per_tick, msg.note))
        tracks[track.name] = notes
    return tracks


def midi_to_events(messages, midi_map: MidiMap, sample_rate: int, offset_s: float = 0.0) -> np.ndarray:
    """Stamp timed MIDI messages as engine events at ``sample_rate`` (an event array)."""
    rows = []
    for t, data in messages:
        padded = list(data) + [0, 0]
        for kind, target, ch, a, b, value in midi_map.events(padded[0], padded[1], padded[2]):
            rows.append((round((t + offset_s) * sample_rate), kind, target, ch, a, b, value))
    events = make_events(len(rows))
    for i, row in enumerate(rows):
        events[i] = row
    return events
