"""OSC as Max, TouchDesigner and Pure Data users send it: address patterns, voices that report
their notes, tempo out, /cadenza/status to a port of the sender's choosing, 0..1 velocities —
over real UDP sockets, with liblo's ``oscsend`` / ``oscdump`` and a ``pd -nogui`` patch where
Debian's ``liblo-tools`` and ``puredata-core`` are installed (``.ci/setup`` installs both)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from cadenza.engine.backends.null import NullBackend
from cadenza.engine.control import ControlOptions
from cadenza.engine.control.log import ErrorLog
from cadenza.engine.engine import Engine
from cadenza.engine.patch import load_patch
from tests.helpers import drain, osc_send, playing, receiver, wait_for

PATCH = """
[patch]
description = "two synths; the piano reports the notes it plays"
[[node]]
id = "piano"
type = "synth"
wave = "square"
attack = 0.001
[[node]]
id = "bass"
type = "synth"
wave = "saw"
[midi]
notes = {{ to = "piano" }}
[osc]
listen = "127.0.0.1:0"
send = ["127.0.0.1:{port}"]
report_notes = ["piano"]
velocity = "{velocity}"
"""


def needs(tool: str) -> None:
    """Skip where ``tool`` is absent here; in CI (.ci/setup installs it) its absence fails."""
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is missing: .ci/setup installs it")
        pytest.skip(f"{tool} is not installed")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def null_engine(tmp_path: Path, send_port: int, velocity: str = "midi") -> tuple[Engine, NullBackend]:
    path = tmp_path / "clients.toml"
    path.write_text(PATCH.format(port=send_port, velocity=velocity))
    engine = Engine(load_patch(path))
    return engine, NullBackend(engine)


def param(engine: Engine, node_id: str, name: str) -> float:
    node = engine.graph.nodes[engine.graph.index[node_id]]
    return float(node.params[getattr(node.P, name)])


def test_address_patterns_set_every_param_they_match_and_bad_ones_get_a_line(tmp_path):
    engine, backend = null_engine(tmp_path, free_port())
    log = ErrorLog(engine.stats, interval_s=60.0)
    try:
        with playing(engine, backend, ControlOptions(midi=False), log) as layer:
            port = layer.osc_in.address[1]
            osc_send(port, "/cadenza/param/*/cutoff", 800.0)
            osc_send(port, "/cadenza/param/{piano,bass}/gain_db", -6.0)
            osc_send(port, "/cadenza/param/pian?/resonance", 2.0)
            osc_send(port, "/cadenza/param/[a-c]*/attack", 0.2)
            osc_send(port, "/cadenza/param/[!b]*/release", 1.5)
            osc_send(port, "/cadenza/param/*/cutoff*", 1e9)  # clamped on each node it reaches
            osc_send(port, "/cadenza/param/[piano/cutoff", 1.0)  # malformed
            osc_send(port, "/cadenza/param/organ*/cutoff", 1.0)  # matches nothing
            osc_send(port, "/cadenza/note", 60, 0.8)  # a 0..1 slider in a 0-127 patch: a line, not a -86 dB note
            assert wait_for(lambda: layer.osc_in.received == 9)
            time.sleep(0.1)
            values = {(n, p): param(engine, n, p) for n in ("piano", "bass")
                      for p in ("cutoff", "gain_db", "resonance", "attack", "release")}
    finally:
        backend.close()
        engine.close()
    hi = engine.graph.param_target("piano.cutoff")[3]
    assert values[("piano", "cutoff")] == values[("bass", "cutoff")] == pytest.approx(hi)
    assert values[("piano", "gain_db")] == values[("bass", "gain_db")] == -6.0
    assert values[("piano", "resonance")] == 2.0 and values[("bass", "resonance")] != 2.0
    assert values[("bass", "attack")] == pytest.approx(0.2) and values[("piano", "attack")] != pytest.approx(0.2)
    assert values[("piano", "release")] == 1.5 and values[("bass", "release")] != 1.5
    assert log.counts["osc-range"] == 2 and log.counts["osc-pattern"] == 1
    assert log.counts["osc-unknown-address"] == 1 and log.counts["osc-args"] == 1


def test_oscsend_plays_and_oscdump_hears_the_voice_notes_and_the_clamped_tempo(tmp_path):
    needs("oscsend")
    needs("oscdump")
    dump_port = free_port()
    dump = subprocess.Popen(["oscdump", "-L", str(dump_port)], stdout=subprocess.PIPE, text=True)
    engine, backend = null_engine(tmp_path, dump_port)
    try:
        with playing(engine, backend, ControlOptions(midi=False)) as layer:
            port = str(layer.osc_in.address[1])
            for args in (["ii", "60", "100"], ["ff", "64", "90.4"], ["ii", "60", "0"]):
                subprocess.run(["oscsend", "localhost", port, "/cadenza/note", *args], check=True)
            subprocess.run(["oscsend", "localhost", port, "/cadenza/tempo", "f", "1000"], check=True)
            time.sleep(0.05)  # the tempo goes out from the block after it took effect
            subprocess.run(["oscsend", "localhost", port, "/cadenza/n?te", "ii", "67", "80"], check=True)
            assert wait_for(lambda: layer.osc_in.received == 5)
            time.sleep(0.5)
            bpm = engine.clock.bpm
    finally:
        backend.close()
        engine.close()
        dump.terminate()
    lines = [" ".join(line.split()[1:]) for line in dump.communicate(timeout=10)[0].splitlines()]
    assert lines == ["/cadenza/out/piano/note iii 60 100 0", "/cadenza/out/piano/note iii 64 90 0",
                     "/cadenza/out/piano/note iii 60 0 0", "/cadenza/out/engine/tempo f 400.000000",
                     "/cadenza/out/piano/note iii 67 80 0"]
    assert bpm == 400.0


PD_PATCH = """#N canvas 0 0 600 400 12;
#X obj 10 10 loadbang;
#X msg 10 40 connect 127.0.0.1 {engine_port};
#X obj 10 70 netsend -u -b;
#X obj 10 100 delay 300;
#X msg 10 130 60 100;
#X obj 10 160 oscformat cadenza note;
#X obj 10 190 delay 200;
#X msg 10 220 60 0;
#X obj 300 10 netreceive -u -b {pd_port};
#X obj 300 40 oscparse;
#X obj 300 70 list trim;
#X obj 300 100 route cadenza;
#X obj 300 130 route out;
#X obj 300 160 route piano;
#X obj 300 190 route note;
#X obj 300 220 print cadenza-note;
#X connect 0 0 1 0;
#X connect 1 0 2 0;
#X connect 0 0 3 0;
#X connect 3 0 4 0;
#X connect 4 0 5 0;
#X connect 5 0 2 0;
#X connect 3 0 6 0;
#X connect 6 0 7 0;
#X connect 7 0 5 0;
#X connect 8 0 9 0;
#X connect 9 0 10 0;
#X connect 10 0 11 0;
#X connect 11 0 12 0;
#X connect 12 0 13 0;
#X connect 13 0 14 0;
#X connect 14 0 15 0;
"""


def test_pure_data_sends_notes_and_receives_them_back_as_the_readme_shows(tmp_path):
    """The README's Pd recipe, run by Pd 0.53 itself: [oscformat] out, [oscparse] → [list trim] → [route] in."""
    needs("pd")
    pd_port = free_port()
    engine, backend = null_engine(tmp_path, pd_port)
    try:
        with playing(engine, backend, ControlOptions(midi=False)) as layer:
            patch = tmp_path / "cadenza.pd"
            patch.write_text(PD_PATCH.format(engine_port=layer.osc_in.address[1], pd_port=pd_port))
            pd = subprocess.Popen(["pd", "-nogui", "-nosound", "-nomidi", "-noprefs", "-stderr", "-open", str(patch)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                assert wait_for(lambda: layer.osc_in.received == 2, timeout=20.0)
                time.sleep(0.5)  # the reports' way back
            finally:
                pd.terminate()
            printed = pd.communicate(timeout=10)[0]
    finally:
        backend.close()
        engine.close()
    notes = [line for line in printed.splitlines() if line.startswith("cadenza-note:")]
    assert notes == ["cadenza-note: 60 100 0", "cadenza-note: 60 0 0"], printed


def test_status_replies_to_the_senders_ip_at_the_port_it_names_ten_a_second(tmp_path):
    engine, backend = null_engine(tmp_path, free_port())
    log = ErrorLog(engine.stats, interval_s=60.0)
    # a Max-style sender ([udpsend]) cannot read replies; its listener ([udpreceive]) sits on another port
    listen_port = free_port()
    on_sender_host = receiver("127.0.0.2", listen_port)
    on_other_host = receiver("127.0.0.1", listen_port)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.2", 0))
    sender.settimeout(0.3)
    try:
        with playing(engine, backend, ControlOptions(midi=False), log) as layer:
            port = layer.osc_in.address[1]
            time.sleep(0.6)  # a first status line
            for _ in range(30):
                osc_send(port, "/cadenza/status", listen_port, sock=sender)
            replies = drain(on_sender_host, 0.8)
            elsewhere = drain(on_other_host, 0.1)
            to_sender_port = drain(sender, 0.1)
            time.sleep(0.3)  # a second later the sender is answered again, at its own port this time
            osc_send(port, "/cadenza/status", sock=sender)
            own_port = drain(sender, 1.0)
            osc_send(port, "/cadenza/status", "127.0.0.1", sock=sender)
            assert wait_for(lambda: layer.osc_in.received == 32)
    finally:
        backend.close()
        engine.close()
        for sock in (on_sender_host, on_other_host, sender):
            sock.close()
    assert len(replies) == 10 and not elsewhere and not to_sender_port
    assert [address for address, _ in own_port] == ["/cadenza/status"]
    line, load, xruns, events_in, events_out, errors = replies[0][1]
    assert line.startswith("load") and 0.0 <= load < 1.0 and xruns >= 0 and events_in >= 0
    assert log.counts["osc-status-rate"] == 20 and log.counts["osc-args"] == 1


def test_unit_velocity_makes_a_touchdesigner_slider_play_at_its_level(tmp_path):
    out = receiver()
    engine, backend = null_engine(tmp_path, out.getsockname()[1], velocity="unit")
    log = ErrorLog(engine.stats, interval_s=60.0)
    try:
        with playing(engine, backend, ControlOptions(midi=False), log) as layer:
            port = layer.osc_in.address[1]
            osc_send(port, "/cadenza/note", 60, 0.8)
            osc_send(port, "/cadenza/note", 62, 0.001)  # quiet, but it sounds
            osc_send(port, "/cadenza/note", 60, 0.0)
            osc_send(port, "/cadenza/note", 64, 80)  # a MIDI velocity in a unit patch: one line, dropped
            assert wait_for(lambda: layer.osc_in.received == 4)
            got = drain(out, 0.6)
    finally:
        backend.close()
        engine.close()
        out.close()
    assert got == [("/cadenza/out/piano/note", [60, 102, 0]), ("/cadenza/out/piano/note", [62, 1, 0]),
                   ("/cadenza/out/piano/note", [60, 0, 0])]
    assert log.counts["osc-args"] == 1
