"""``"host:port"`` strings (OSC listen and send addresses), checked once where they enter."""

from __future__ import annotations

import socket


def parse_hostport(text: str, default_port: int, listen: bool = False) -> tuple[str, int]:
    """``"host:port"`` (or a bare host) → (host, port); ValueError naming what is wrong.

    ``listen``: an address to bind, where port 0 means "any free port".
    """
    if not isinstance(text, str):
        raise ValueError(f"found {text!r}, allowed a 'HOST:PORT' string")
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, str(default_port)
    lowest = 0 if listen else 1
    if not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise ValueError(f"found {text!r}, allowed HOST:PORT with a port {lowest}..65535")
    try:
        socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError):
        raise ValueError(f"found {text!r}: no such host {host!r}") from None
    return host, int(port)
