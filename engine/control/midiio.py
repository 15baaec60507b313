"""MIDI in and out through python-rtmidi, on control threads.

Used by every backend that has no MIDI of its own in its audio callback
(PortAudio, null), and for devices a JACK backend cannot reach as JACK ports.
Incoming bytes go through :class:`MidiParser` and the patch's ``MidiMap``,
stamped on arrival plus the patch's scheduling delay. The platform's API is
picked here: JACK when a JACK server runs, else the system's (ALSA, CoreMIDI,
WinMM), where a virtual input named ``Cadenza`` is opened when allowed.
"""

from __future__ import annotations

import time

import rtmidi

from cadenza.engine.control.midiparse import MidiParser

VIRTUAL_NAME = "Cadenza"


def pick_api(jack_running: bool) -> int:
    """rtmidi's JACK API when a JACK server runs and the wheel has it, else the system's."""
    if jack_running and rtmidi.API_UNIX_JACK in rtmidi.get_compiled_api():
        return rtmidi.API_UNIX_JACK
    return rtmidi.API_UNSPECIFIED


def find_port(names: list[str], substring: str) -> int:
    """Index of the first port whose name contains ``substring`` (case-insensitive), or -1."""
    sub = substring.lower()
    return next((i for i, n in enumerate(names) if sub in n.lower()), -1)


def _open(device, substring: str | None, virtual: bool, what: str) -> str:
    """Open ``device`` on a named port (substring) or as a virtual port; returns its name."""
    if substring:
        names = device.get_ports()
        i = find_port(names, substring)
        if i < 0:
            raise OSError(f"no MIDI {what} port matches {substring!r} (ports: {', '.join(names) or 'none'})")
        device.open_port(i)
        return names[i]
    if virtual:
        device.open_virtual_port(VIRTUAL_NAME)
        return VIRTUAL_NAME
    raise OSError(f"no MIDI {what} port asked for")


class RtMidiInput:
    """One rtmidi input (a named port or the virtual ``Cadenza``) feeding its own event ring.

    rtmidi calls ``_on_message`` on its own thread, which is this ring's only producer
    (with the JACK API, the realtime thread of rtmidi's JACK client: so ``close`` first
    stops the callback and lets one in flight finish before that client can be cancelled).
    """

    def __init__(self, engine, log, api: int, substring: str | None = None, virtual: bool = True):
        self.engine = engine
        self.log = log
        self.parser = MidiParser()
        self.ring = engine.input_ring()
        self.device = rtmidi.MidiIn(api, "cadenza")
        self.device.ignore_types(sysex=False, timing=True, active_sense=True)  # SysEx reaches the parser
        self._in_flight = False
        self.name = _open(self.device, substring, virtual, "input")
        self.device.set_error_callback(self._on_error)
        self.device.set_callback(self._on_message)

    def _on_message(self, message, _data=None) -> None:
        self._in_flight = True
        try:
            when = self.engine.stamp(self.engine.now())
            midi_map = self.engine.midi_map
            push = self.ring.push
            for status, d1, d2 in self.parser.feed(message[0]):
                for kind, target, ch, a, b, value in midi_map.events(status, d1, d2):
                    push(when, kind, target, ch, a, b, value)
        except Exception as exc:  # MIDI garbage must never end rtmidi's thread
            self.parser.reset()
            self.log.report("midi-in", f"{self.name}: {type(exc).__name__}: {exc}")
        finally:
            self._in_flight = False

    def _on_error(self, kind, message, _data=None) -> None:
        self.parser.reset()
        self.log.report("midi-in", f"{self.name}: {message}")

    def close(self) -> None:
        self.device.cancel_callback()
        time.sleep(0.02)  # a callback already waiting for the GIL gets it and returns
        deadline = time.monotonic() + 1.0
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.001)
        self.device.close_port()
        del self.device


class RtMidiOutput:
    """One rtmidi output: a named port or the virtual ``Cadenza`` out."""

    def __init__(self, log, api: int, substring: str | None = None, virtual: bool = True):
        self.log = log
        self.device = rtmidi.MidiOut(api, "cadenza")
        self.name = _open(self.device, substring, virtual, "output")
        self.device.set_error_callback(self._on_error)
        self.sent = 0

    def send(self, message) -> None:
        self.device.send_message(message)
        self.sent += 1

    def _on_error(self, kind, message, _data=None) -> None:
        self.log.report("midi-out", f"{self.name}: {message}")

    def close(self) -> None:
        self.device.close_port()
        del self.device
