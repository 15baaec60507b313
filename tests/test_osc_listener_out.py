"""The listeners' OSC messages the issues name: /cadenza/pitch and /cadenza/beat, over real UDP."""

import socket

from pythonosc.osc_message import OscMessage

from cadenza.engine.control.osc import OscOut
from cadenza.engine.events import Kind, make_events


def _receive_all(sock):
    got = []
    sock.settimeout(1.0)
    try:
        while True:
            msg = OscMessage(sock.recv(65536))
            got.append((msg.address, list(msg.params)))
            sock.settimeout(0.2)
    except socket.timeout:
        return got


def test_pitch_and_beat_reports_reach_a_udp_listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    out = OscOut([sock.getsockname()])
    ev = make_events(3)
    ev[0] = (100, Kind.PITCH, 2, 0, 1, 0, 220.0)
    ev[1] = (100, Kind.LOUDNESS, 2, 0, 0, 0, -23.5)
    ev[2] = (200, Kind.BEAT, 3, 0, 7, 0, 121.0)
    for row in ev:
        for data in out.messages(row, "mic" if row["target"] == 2 else "beat"):
            out.send(data)
    got = dict(_receive_all(sock))
    out.close()
    sock.close()
    assert got["/cadenza/pitch"] == [220.0, 1, -23.5]
    assert got["/cadenza/beat"] == [7, 121.0, 0.0]
    assert got["/cadenza/out/mic/pitch"] == [220.0, 1]
