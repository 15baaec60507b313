"""Node types by registered dotted name, the way entry points work.

The engine core never imports ``instruments`` or ``models``: a patch names a
short type (``"synth"``) registered here, or a full ``"module:Class"`` path,
and the class is imported only when a patch asks for it.
"""

from __future__ import annotations

import importlib

NODE_TYPES: dict[str, str] = {
    "beat": "instruments.beat:BeatTracker",
    "pitch": "instruments.pitch:PitchListener",
    "ddsp": "instruments.ddsp:DDSPVoice",
    "synth": "instruments.synth:PolySynth",
    "genie": "instruments.genie:GenieNode",
    "soundfont": "instruments.soundfont:SoundFontVoice",
    "pyo_rack": "engine.fx:PyoRack",
    "safety": "engine.safety:Safety",
    "vocoder": "instruments.vocoder:ChannelVocoder",
    "harmonizer": "instruments.harmonizer:Harmonizer",
}


def node_class(type_name: str) -> type:
    """The class for a registered type name or a ``"module:Class"`` path.

    Raises ``LookupError`` with a message naming what is allowed.
    """
    path = NODE_TYPES.get(type_name, type_name)
    if ":" not in path:
        raise LookupError("a registered node type: " + ", ".join(sorted(NODE_TYPES)))
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"an importable node type ({path} failed: {exc})") from None
