"""Live control: MIDI and OSC in and out, MIDI clock, patch reload, status and error counters."""

from cadenza.engine.control.layer import ControlLayer, ControlOptions, realtime_mode

__all__ = ["ControlLayer", "ControlOptions", "realtime_mode"]
