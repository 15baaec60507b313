"""Audio backends: what drives ``Engine.process`` once per block.

``offline`` renders as fast as the CPU allows; ``null`` paces blocks in real
time without a device; ``jack`` and ``portaudio`` play through real devices.
"""

from __future__ import annotations

import importlib

from cadenza.engine.errors import CadenzaError

BACKENDS = {
    "offline": "cadenza.engine.backends.offline:OfflineBackend",
    "null": "cadenza.engine.backends.null:NullBackend",
    "jack": "cadenza.engine.backends.jack:JackBackend",
    "portaudio": "cadenza.engine.backends.portaudio:PortAudioBackend",
}


class BackendError(CadenzaError, RuntimeError):
    """A backend that cannot start or has died. The message is one line."""


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
