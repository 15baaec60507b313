"""Node types by registered name: the built-in table, and third-party packages' entry points.

A patch names a type (``"synth"``); it never names a module or a path, so a
patch stays data. Built-in types live in ``NODE_TYPES`` and are imported only
when a patch asks for them (the core never imports ``instruments`` or
``models`` itself). An installed package adds types through the
``cadenza.nodes`` entry-point group (``mytype = "mypkg.nodes:MyNode"`` in its
pyproject); it cannot replace a built-in name. A program that embeds Cadenza
(or a test) may register a class in-process with :func:`register`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "cadenza.nodes"

NODE_TYPES: dict[str, str] = {
    "beat": "cadenza.instruments.listeners.beat:BeatTracker",
    "pitch": "cadenza.instruments.listeners.pitch:PitchListener",
    "chords": "cadenza.instruments.listeners.chords:ChordListener",
    "ddsp": "cadenza.instruments.voices.ddsp:DDSPVoice",
    "synth": "cadenza.instruments.voices.synth:PolySynth",
    "genie": "cadenza.instruments.generators.genie:GenieNode",
    "continue": "cadenza.instruments.generators.continuation:ContinuationGenerator",
    "drums": "cadenza.instruments.generators.drums:DrumGenerator",
    "bass": "cadenza.instruments.generators.bass:BassGenerator",
    "soundfont": "cadenza.instruments.voices.soundfont:SoundFontVoice",
    "pyo_rack": "cadenza.instruments.effects.pyo_rack:PyoRack",
    "safety": "cadenza.engine.safety:Safety",
    "vocoder": "cadenza.instruments.voices.vocoder:ChannelVocoder",
    "harmonizer": "cadenza.instruments.voices.harmonizer:Harmonizer",
}
_REGISTERED: dict[str, type] = {}


def register(type_name: str, cls: type) -> None:
    """Make ``cls`` available to patches as ``type_name`` in this process (not a built-in name)."""
    if type_name in NODE_TYPES:
        raise ValueError(f"{type_name!r} is a built-in node type")
    _REGISTERED[type_name] = cls


def plugin_types() -> dict[str, object]:
    """Entry points of installed packages in ``cadenza.nodes``, by name (built-in names excluded)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in NODE_TYPES}


def node_class(type_name: str) -> type:
    """The class of a registered type name. Raises ``LookupError`` naming what is allowed."""
    if type_name in NODE_TYPES:
        module_name, _, attr = NODE_TYPES[type_name].partition(":")
        return getattr(importlib.import_module(module_name), attr)
    if type_name in _REGISTERED:
        return _REGISTERED[type_name]
    plugins = plugin_types()
    if type_name not in plugins:
        raise LookupError("a registered node type: " + ", ".join(sorted([*NODE_TYPES, *_REGISTERED, *plugins])))
    try:
        return plugins[type_name].load()
    except Exception as exc:  # a broken third-party package: name it, do not crash the loader
        raise LookupError(f"node type {type_name!r} from package entry point "
                          f"{plugins[type_name].value!r} failed to load ({type(exc).__name__}: {exc})") from None
