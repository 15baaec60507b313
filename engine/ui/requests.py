"""What a browser panel may ask, checked and turned into engine events or control-layer calls.

One JSON object per WebSocket message, ``{"type": ...}``:

- ``button``: ``button`` 0-7, ``velocity`` 0-127 (0 releases) → a BUTTON event to the
  patch's ``[midi] buttons`` node;
- ``param``: ``param`` ``"node.name"``, ``value`` (finite, clamped to the param's range)
  → a PARAM event;
- ``panic``: all notes off, tails cut;
- ``patch``: ``name`` (a name of the patch list) or ``index`` (0-based) → the reload path;
- ``learn``: ``param`` ``"node.name"`` arms MIDI learn; ``learn_cancel``; ``learn_save``
  writes the learned CCs into the playing patch file (``.bak`` kept).

Events go into the panel's own input ring, stamped with ``engine.stamp()``, as OSC's do.
Anything else raises :class:`PanelRequestError` with one line that says what was allowed.
"""

from __future__ import annotations

import json
import math

from cadenza.engine.control.learn import save_cc_mappings
from cadenza.engine.errors import CadenzaError
from cadenza.engine.events import BROADCAST, Kind

MAX_MESSAGE_BYTES = 4096


class PanelRequestError(CadenzaError, ValueError):
    """A panel message that is not understood or not allowed. The message is one line."""


def _field(message: dict, key: str, kinds, what: str):
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise PanelRequestError(f"{message.get('type')}: {key}: found {value!r}, allowed {what}")
    if isinstance(value, float) and not math.isfinite(value):
        raise PanelRequestError(f"{message.get('type')}: {key}: found {value!r}, allowed a finite number")
    return value


def _integer(message: dict, key: str, lo: int, hi: int) -> int:
    value = _field(message, key, (int, float), f"a number {lo}..{hi}")
    if not lo <= value <= hi:
        raise PanelRequestError(f"{message['type']}: {key}: found {value!r}, allowed {lo}..{hi}")
    return int(round(value))


def parse(text) -> dict:
    """A panel message as a dict with a ``type``; PanelRequestError for anything else."""
    if not isinstance(text, str):
        raise PanelRequestError("found a binary WebSocket message, allowed JSON text")
    if len(text) > MAX_MESSAGE_BYTES:
        raise PanelRequestError(f"found a {len(text)}-character message, allowed up to {MAX_MESSAGE_BYTES}")
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise PanelRequestError(f"not JSON ({exc})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise PanelRequestError(f"found {text[:60]!r}, allowed a JSON object with a \"type\"")
    return message


class PanelRequests:
    """Applies panel messages for ``layer``'s engine through one input ring (one thread only)."""

    def __init__(self, layer, learn):
        self.layer = layer
        self.engine = layer.engine
        self.learn = learn
        self.ring = self.engine.input_ring()
        self.handlers = {"button": self._button, "param": self._param, "panic": self._panic,
                         "patch": self._patch, "learn": self._learn, "learn_cancel": self._learn_cancel,
                         "learn_save": self._learn_save}

    def apply(self, text) -> str | None:
        """Do what message ``text`` asks; returns a line for the performer, or None."""
        message = parse(text)
        handler = self.handlers.get(message["type"])
        if handler is None:
            raise PanelRequestError(f"type: found {message['type']!r}, allowed one of {', '.join(self.handlers)}")
        return handler(message)

    def _button(self, message: dict) -> None:
        button = _integer(message, "button", 0, 7)
        velocity = _integer(message, "velocity", 0, 127)
        target = self.engine.midi_map.buttons_to
        if target < 0:
            raise PanelRequestError(f"button: {self.engine.patch.name} routes no buttons ([midi] buttons)")
        self.ring.push(self.engine.stamp(), Kind.BUTTON, target, 0, button, velocity, 0.0)

    def _param(self, message: dict) -> None:
        dotted = _field(message, "param", str, "\"node.name\"")
        value = float(_field(message, "value", (int, float), "a number"))
        try:
            node, index, lo, hi = self.engine.graph.param_target(dotted)
        except KeyError:
            raise PanelRequestError(f"param: {dotted!r} is not a param of {self.engine.patch.name}") from None
        self.ring.push(self.engine.stamp(), Kind.PARAM, node, 0, index, 0, min(max(value, lo), hi))

    def _panic(self, message: dict) -> str:
        self.ring.push(self.engine.stamp(), Kind.PANIC, BROADCAST)
        return "panic: all notes off"

    def _patch(self, message: dict) -> str:
        which = message.get("name", message.get("index"))
        name = self.layer.switch_patch(which)
        return f"switching to {name}"

    def _learn(self, message: dict) -> str:
        dotted = _field(message, "param", str, "\"node.name\"")
        self.learn.arm(dotted)
        return f"MIDI learn: move a controller for {dotted}"

    def _learn_cancel(self, message: dict) -> None:
        self.learn.cancel()

    def _learn_save(self, message: dict) -> str:
        path = self.engine.patch.path
        backup = save_cc_mappings(path, self.learn.learned)
        return f"saved {len(self.learn.learned)} CC mapping(s) into {path} (old file kept as {backup.name})"
