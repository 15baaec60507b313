"""Small builders shared by the engine tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import numpy as np
from pythonosc.osc_message import OscMessage

from cadenza.engine.control import ControlLayer, ControlOptions
from cadenza.engine.control.log import ErrorLog
from cadenza.engine.engine import Engine
from cadenza.engine.patch import parse_patch


def engine_from_toml(text: str, tmp_path: Path | None = None, **kwargs) -> Engine:
    path = (tmp_path or Path("/tmp")) / "test_patch.toml"
    return Engine(parse_patch(text, path), **kwargs)


SYNTH_ONLY = """
[patch]
description = "one synth"
[[node]]
id = "piano"
type = "synth"
wave = "saw"
attack = 0.001
[midi]
notes = { to = "piano" }
"""


def render_blocks(engine: Engine, n_blocks: int) -> np.ndarray:
    return np.concatenate([engine.process(None).copy() for _ in range(n_blocks)], axis=1)


@contextlib.contextmanager
def playing(engine, backend, options: ControlOptions | None = None, log: ErrorLog | None = None):
    """Run ``backend`` with a control layer on a thread; yields the layer."""
    layer = ControlLayer(engine, backend, options or ControlOptions(), log)
    layer.start()
    thread = threading.Thread(target=backend.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: engine.stats.blocks > 10), "the backend did not start"
        yield layer
    finally:
        backend.stop()
        thread.join(10)
        layer.stop()


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def osc_send(port: int, address: str, *args, sock=None) -> None:
    from cadenza.engine.control.osc import build_message

    (sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)).sendto(build_message(address, list(args)),
                                                                       ("127.0.0.1", port))


def receiver(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.settimeout(0.3)
    return sock


def drain(sock: socket.socket, seconds: float = 1.0) -> list[tuple[str, list]]:
    """(address, args) of every datagram ``sock`` receives within ``seconds``."""
    got = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = OscMessage(sock.recv(65536))
        except socket.timeout:
            continue
        got.append((msg.address, list(msg.params)))
    return got
