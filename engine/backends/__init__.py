"""Audio backends: what drives ``Engine.process`` once per block, all behind one :class:`Backend`.

``offline`` renders as fast as the CPU allows; ``null`` paces blocks in real
time without a device; ``jack`` and ``portaudio`` play through real devices.
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from cadenza.engine.errors import CadenzaError

BACKENDS = {
    "offline": "cadenza.engine.backends.offline:OfflineBackend",
    "null": "cadenza.engine.backends.null:NullBackend",
    "jack": "cadenza.engine.backends.jack:JackBackend",
    "portaudio": "cadenza.engine.backends.portaudio:PortAudioBackend",
}


class BackendError(CadenzaError, RuntimeError):
    """A backend that cannot start or has died. The message is one line."""


class Backend:
    """The protocol every backend keeps (offline, null, jack, portaudio), with its defaults.

    Built as ``cls(engine, **options)``. ``run(seconds, on_tick, tick_s)`` drives the engine
    until ``seconds`` pass (None: until ``stop()``), calling ``on_tick()`` about every
    ``tick_s`` seconds (of wall time live, of rendered time offline); ``stop()`` may come from
    any thread; ``recording()`` is what was played, float32 (2, frames); ``close()`` releases
    the device. ``server_format()`` is the (rate Hz, period frames) a running server imposes
    (JACK), or None; ``midi_ports`` is True where MIDI is served in the audio callback.
    """

    name = ""
    midi_ports = False

    @staticmethod
    def available() -> bool:
        """True when this backend can run on this machine now."""
        return True

    @staticmethod
    def server_format() -> tuple[int, int] | None:
        """(sample rate Hz, period frames) the audio server dictates, or None (the patch decides)."""
        return None

    def run(self, seconds: float | None = None, on_tick: Callable[[], None] | None = None,
            tick_s: float = 0.5) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def recording(self) -> np.ndarray:
        return np.zeros((2, 0), np.float32)

    def close(self) -> None:
        """Release the device (nothing by default)."""


def backend_class(name: str) -> type:
    if name not in BACKENDS:
        raise BackendError(f"backend {name!r}: allowed one of {', '.join(BACKENDS)}")
    module, _, attr = BACKENDS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise BackendError(f"backend {name!r} is not available here ({exc})") from None


def pick_live_backend() -> str:
    """The live backend that exists on this machine: JACK, else a sound card, else ``null``."""
    for name in ("jack", "portaudio"):
        try:
            if backend_class(name).available():
                return name
        except BackendError:
            continue
    return "null"
