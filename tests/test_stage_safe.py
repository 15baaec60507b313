"""Hostile input: packets, values, patches and faults that must never stop or silence the show.

OSC goes through a real UDP socket into a running control layer; the engine is
driven block by block here, so every check is deterministic.
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cadenza.engine.control import ControlLayer, ControlOptions
from cadenza.engine.control.log import Console, ErrorLog, capture_logging, release_logging
from cadenza.engine.control.osc import ADDRESSES_IN, MAX_AHEAD_S, build_message
from cadenza.engine.control.oscpacket import OscPacketError, parse_packet
from cadenza.engine.engine import Engine
from cadenza.engine.events import ENGINE, EventRing, Kind, Scheduler
from cadenza.engine.node import Node
from cadenza.engine.patch import PatchError, load_patch, parse_patch
from cadenza.engine.registry import register
from tests.helpers import SYNTH_ONLY

REPO = Path(__file__).resolve().parent.parent

def synth_patch(sink_port: int) -> str:
    """helpers' one-synth patch, with a CC map, MIDI clock out and OSC out to ``sink_port``."""
    return SYNTH_ONLY + f"""cc = {{ 74 = "piano.cutoff" }}
clock_out = true
[osc]
listen = "127.0.0.1:0"
send = ["127.0.0.1:{sink_port}"]
"""


class Live:
    """A synth patch with its control layer on real sockets; ``blocks(n)`` runs the audio."""

    def __init__(self, tmp_path: Path):
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where OSC out goes
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setblocking(False)
        path = tmp_path / "hostile.toml"
        path.write_text(synth_patch(self.sink.getsockname()[1]))
        self.engine = Engine(load_patch(path))
        self.stream = io.StringIO()
        self.log = ErrorLog(self.engine.stats, stream=self.stream)
        self.layer = ControlLayer(self.engine, None, ControlOptions(midi=False), self.log)
        self.layer.start()
        self.port = self.layer.osc_in.address[1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.blocks(1)  # the first block anchors sample time to the clock, as a running backend does

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def message(self, address: str, *args) -> None:
        self.send(build_message(address, list(args)))

    def settle(self, received: int = 0, malformed: int = 0, timeout: float = 5.0) -> None:
        """Wait until the OSC thread has handled ``received`` messages and refused ``malformed`` packets."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.layer.osc_in.received >= received
                    and self.log.counts.get("osc-malformed", 0) >= malformed):
                return
            time.sleep(0.005)
        raise AssertionError(f"the OSC thread handled {self.layer.osc_in.received} of {received}")

    def blocks(self, n: int) -> np.ndarray:
        return np.concatenate([self.engine.process(None).copy() for _ in range(n)], axis=1)

    def close(self) -> None:
        self.layer.stop()
        self.engine.close()
        self.sock.close()
        self.sink.close()


@pytest.fixture
def live(tmp_path):
    target = Live(tmp_path)
    yield target
    target.close()


def _plays_a_note(live: Live) -> bool:
    received = live.layer.osc_in.received
    live.message("/cadenza/param/piano/cutoff", 6000.0)
    live.message("/cadenza/note", 69, 100)
    live.settle(received + 2)
    out = live.blocks(40)
    live.message("/cadenza/note", 69, 0)
    return bool(np.abs(out).max() > 0.05 and np.isfinite(out).all())


# -- OSC packets ---------------------------------------------------------------------------


def test_a_bundle_element_of_negative_size_is_one_line_not_an_endless_loop(live):
    evil = b"#bundle\x00" + struct.pack(">II", 0, 1) + b"\xff\xff\xff\xfc"
    assert len(evil) == 20
    t0 = time.perf_counter()
    with pytest.raises(OscPacketError, match="bundle element of -4 bytes"):
        parse_packet(evil)
    assert time.perf_counter() - t0 < 0.05
    for _ in range(100):
        live.send(evil)
    live.settle(malformed=100)
    assert _plays_a_note(live)  # the OSC thread is alive and the audio plays
    assert live.log.counts["osc-malformed"] == 100
    assert len(live.stream.getvalue().splitlines()) == 1


def test_random_and_mutated_packets_parse_or_fail_fast():
    rng = random.Random(7)
    good = [build_message("/cadenza/note", [60, 100]), build_message("/cadenza/param/piano/cutoff", [1e3]),
            b"#bundle\x00" + struct.pack(">II", 0, 1) + struct.pack(">i", 20)
            + build_message("/cadenza/note", [60, 0])]
    t0 = time.perf_counter()
    outcomes = {"parsed": 0, "refused": 0}
    for i in range(3000):
        data = bytearray(rng.choice(good))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if i % 3 == 0:
            data = data[: rng.randrange(len(data) + 1)]
        try:
            parse_packet(bytes(data))
            outcomes["parsed"] += 1
        except OscPacketError:
            outcomes["refused"] += 1
    assert time.perf_counter() - t0 < 5.0
    assert outcomes["parsed"] > 100 and outcomes["refused"] > 100, outcomes


def test_unknown_type_tags_are_one_counted_line_not_a_warning_per_tag(live):
    bad = b"/cadenza/note\x00\x00\x00" + b",iiqqqqqqqqqqqqqq\x00\x00\x00" + b"\x00" * 8
    for _ in range(100):
        live.send(bad)
    live.settle(malformed=100)
    assert live.log.counts["osc-malformed"] == 100
    assert len(live.stream.getvalue().splitlines()) == 1
    assert "unknown type tag 'q'" in live.stream.getvalue()


def _numeric_args(types: str) -> int:
    return sum(1 for part in types.split(",") if part.strip()[:1] in ("i", "f"))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e30, -1e30])
def test_no_value_on_any_osc_address_can_silence_or_break_the_engine(live, bad):
    addresses = []
    for address, types, _ in ADDRESSES_IN:
        n = _numeric_args(types)
        if "<node>" in address:
            address = "/cadenza/param/piano/cutoff"
        addresses += [(address, [bad] * k) for k in range(1, n + 1)]
        addresses += [(address, [1] * (k - 1) + [bad]) for k in range(2, n + 1)]
    for address, args in addresses:
        live.message(address, *args)
    live.settle(len(addresses))
    live.blocks(4)
    piano = live.engine.graph.nodes[live.engine.node_index("piano")]
    assert np.isfinite(piano.params).all()
    for value, (lo, hi) in zip(piano.params, piano.param_bounds):
        assert lo <= value <= hi
    assert math.isfinite(live.engine.clock.bpm) and 20.0 <= live.engine.clock.bpm <= 400.0
    assert live.layer._out_thread.is_alive() and live.layer.osc_in._thread.is_alive()
    assert live.layer.midi_clock.block(live.engine.clock.beat, live.engine.clock.beats_per_sample(), 128) is not None
    assert _plays_a_note(live)
    if not math.isfinite(bad):
        assert live.log.counts.get("osc-args", 0) >= len(addresses) - 2  # dropped, each counted


def test_nan_and_out_of_range_param_events_never_reach_a_node_of_any_shipped_patch():
    """Past OSC's checks, the graph is the last guard: for every param of every node type the patches use."""
    seen_types = set()
    for path in sorted((REPO / "patches").glob("*.toml")):
        engine = Engine(load_patch(path))
        ring = engine.input_ring()
        try:
            for index, node in enumerate(engine.graph.nodes):
                seen_types.add(type(node).__name__)
                for p in range(node.params.shape[0]):
                    for value in (math.nan, math.inf, -math.inf, 1e30, -1e30):
                        ring.push(0, Kind.PARAM, index, 0, p, 0, value)
            out = np.concatenate([engine.process(None).copy() for _ in range(8)], axis=1)
            assert np.isfinite(out).all(), path.name
            for node in engine.graph.nodes:
                assert np.isfinite(node.params).all(), (path.name, node.id)
                for value, (lo, hi) in zip(node.params, node.param_bounds):
                    assert lo <= value <= hi, (path.name, node.id, value)
        finally:
            engine.close()
    assert len(seen_types) >= 8, seen_types


def test_tempo_nan_on_the_engine_lane_leaves_the_clock_and_midi_clock_running(live):
    ring = live.engine.input_ring()
    for value in (math.nan, math.inf, -math.inf):
        ring.push(0, Kind.TEMPO, ENGINE, 0, 0, 0, value)
    live.blocks(4)
    clock = live.engine.clock
    assert clock.bpm == 120.0
    live.layer.midi_clock.start()
    pulses = live.layer.midi_clock.block(clock.beat, clock.beats_per_sample(), 48000)
    assert len(pulses) > 10


# -- bounded queues ------------------------------------------------------------------------


def test_timetags_beyond_the_horizon_are_refused_and_far_future_floods_never_block_a_note(live):
    def bundle(ahead_s: float, note: int) -> bytes:
        t = time.time() + ahead_s + 2208988800
        msg = build_message("/cadenza/note", [note, 100])
        return (b"#bundle\x00" + struct.pack(">II", int(t), int((t % 1) * 2**32))
                + struct.pack(">i", len(msg)) + msg)

    for i in range(200):
        live.send(bundle(50.0, 60))
    live.settle(200)
    assert live.log.counts["osc-timetag"] == 200
    assert f"allowed at most {MAX_AHEAD_S:g} s" in live.stream.getvalue()
    # within the horizon, more than the scheduler holds: the farthest go, a note for now still plays
    sent = 200
    for i in range(6000):
        live.send(bundle(5.0 + i * 1e-4, 61))
        sent += 1
        if i % 500 == 499:
            live.settle(sent)
            live.blocks(1)  # the audio thread drains the rings as it would live
    live.settle(sent)
    live.blocks(2)
    assert live.engine.timed.n_pending == live.engine.timed.pending.shape[0]
    assert live.engine.timed.dropped >= 6000 - 4096 - 200  # UDP may lose a few of the flood
    assert _plays_a_note(live)


def test_a_full_scheduler_keeps_the_soonest_events():
    sched = Scheduler(8)
    ring = EventRing(64)
    for t in [900, 100, 800, 200, 700, 300, 600, 400, 500, 50, 1000]:
        ring.push(t, Kind.NOTE_ON)
    sched.add_from(ring)
    assert len(ring) == 0 and sched.dropped == 3
    n = sched.take(10**6)
    assert sched.due["time"][:n].tolist() == [50, 100, 200, 300, 400, 500, 600, 700]


# -- reload --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", ["dev_zero", "fifo", "directory", "too_big", "not_utf8", "code"])
def test_a_hostile_reload_is_one_line_and_the_show_plays_on(live, tmp_path, make):
    path = {"dev_zero": Path("/dev/zero"), "fifo": tmp_path / "pipe.toml", "directory": tmp_path,
            "too_big": tmp_path / "big.toml", "not_utf8": tmp_path / "latin1.toml",
            "code": tmp_path / "code.toml"}[make]
    if make == "fifo":
        os.mkfifo(path)
    elif make == "too_big":
        path.write_text("# padding\n" * 200_000)
    elif make == "not_utf8":
        path.write_bytes(b"[patch]\ndescription = \"caf\xe9\"\n")
    elif make == "code":
        path.write_text('[[node]]\nid = "zen"\ntype = "this:nothing"\n')
    t0 = time.monotonic()
    live.message("/cadenza/reload", str(path))
    live.settle(1)
    deadline = time.monotonic() + 5
    while "reload" not in live.log.counts and time.monotonic() < deadline:
        time.sleep(0.01)
    assert time.monotonic() - t0 < 3.0
    lines = live.stream.getvalue().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "still playing hostile" in lines[0], lines
    assert live.engine.patch.name == "hostile" and _plays_a_note(live)


def test_notes_and_buttons_go_only_to_nodes_that_take_them(tmp_path):
    with pytest.raises(PatchError, match="midi.buttons.to .*found 'p', allowed a node that takes buttons: none"):
        parse_patch('[[node]]\nid = "p"\ntype = "synth"\n[midi]\nbuttons = { to = "p", notes = [1,2,3,4,5,6,7,8] }\n',
                    tmp_path / "x.toml")
    with pytest.raises(PatchError, match="node.r.notes_to .*found 'r', allowed a node that takes notes: p"):
        parse_patch('[[node]]\nid = "p"\ntype = "synth"\n[[node]]\nid = "r"\ntype = "pyo_rack"\nnotes_to = "r"\n',
                    tmp_path / "x.toml")


def test_patches_name_registered_types_only(tmp_path, capfd):
    with pytest.raises(PatchError, match="node.zen.type .*found 'this:nothing', allowed a registered node type"):
        parse_patch('[[node]]\nid = "zen"\ntype = "this:nothing"\n', tmp_path / "x.toml")
    assert "Beautiful is better" not in capfd.readouterr().out
    with pytest.raises(PatchError, match="osc.listen"):
        parse_patch('[[node]]\nid = "p"\ntype = "synth"\n[osc]\nlisten = "nonsense:x"\n', tmp_path / "x.toml")
    with pytest.raises(PatchError, match="node.p.cutoff"):
        parse_patch('[[node]]\nid = "p"\ntype = "synth"\ncutoff = nan\n', tmp_path / "x.toml")


def test_an_installed_package_adds_node_types_through_its_entry_point(tmp_path, monkeypatch):
    """A real (if tiny) installed distribution: its dist-info names the type; a built-in name stays built in."""
    (tmp_path / "cadenza_hum.py").write_text(
        "from engine.node import Node\n\n\nclass Hum(Node):\n    pass\n")
    info = tmp_path / "cadenza_hum-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cadenza-hum\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[cadenza.nodes]\nhum = cadenza_hum:Hum\nsynth = cadenza_hum:Hum\n"
                                           "broken = cadenza_hum:Missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    patch = parse_patch('[[node]]\nid = "h"\ntype = "hum"\n', tmp_path / "p.toml")
    assert patch.nodes[0].cls.__name__ == "Hum"
    assert parse_patch('[[node]]\nid = "s"\ntype = "synth"\n', tmp_path / "p.toml").nodes[0].cls.__name__ == "PolySynth"
    with pytest.raises(PatchError, match="node.b.type .*'cadenza_hum:Missing' failed to load"):
        parse_patch('[[node]]\nid = "b"\ntype = "broken"\n', tmp_path / "p.toml")


def test_play_refuses_a_bad_osc_target_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "cadenza.engine.cli", "play", "--backend", "null", "--seconds", "0.1",
                           "--osc-send", "127.0.0.1:99999"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "cadenza: error: --osc-send: found '127.0.0.1:99999', allowed HOST:PORT with a port 1..65535"]


# -- faults inside the graph ---------------------------------------------------------------


class Flaky(Node):
    """Raises in every third block; otherwise passes its input."""

    def __init__(self, node_id, **options):
        super().__init__(node_id, **options)
        self.inputs = {"in": 2}
        self.outputs = {"out": 2}
        self.calls = 0
        self.raised = 0

    def process(self, io):
        self.calls += 1
        if self.calls > 10 and self.calls % 3 == 0:  # not while warming up: that would fail the load
            self.raised += 1
            raise ZeroDivisionError("a bug on stage")
        io.outputs["out"][:] = io.inputs["in"]


register("test_flaky", Flaky)


def test_a_node_that_raises_is_silent_for_that_block_and_named_once(tmp_path):
    engine = Engine(parse_patch(synth_patch(9) + '[[node]]\nid = "fx"\ntype = "test_flaky"\ninput = "piano"\n'
                                '[[node]]\nid = "dry"\ntype = "synth"\n', tmp_path / "flaky.toml"))
    stream = io.StringIO()
    log = ErrorLog(engine.stats, stream=stream)
    ring = engine.input_ring()
    ring.push(0, Kind.NOTE_ON, engine.node_index("piano"), 0, 69, 100)
    ring.push(0, Kind.NOTE_ON, engine.node_index("dry"), 0, 57, 100)
    try:
        blocks = [engine.process(None).copy() for _ in range(30)]
        for kind, (total, message) in engine.problems().items():
            log.sync(kind, total, message)
        blocks += [engine.process(None).copy() for _ in range(30)]
        for kind, (total, message) in engine.problems().items():
            log.sync(kind, total, message)
    finally:
        engine.close()
    flaky = engine.graph.nodes[engine.node_index("fx")]
    assert engine.faults.count == flaky.raised > 15
    assert all(np.abs(b).max() > 0.01 for b in blocks[5:])  # the other synth never stopped
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines  # named once; the second report falls in the same second
    assert lines[0].startswith("cadenza: audio-error: node 'fx' raised ZeroDivisionError: a bug on stage; "
                               "silent for ")
    assert log.counts["audio-error"] == flaky.raised


# -- a quiet stderr ------------------------------------------------------------------------


def test_python_logging_goes_through_the_limiter_and_long_lines_are_cut():
    stream = io.StringIO()
    log = ErrorLog(stream=stream)
    handler = capture_logging(log)
    try:
        for i in range(100_000):
            logging.warning("Unhandled parameter type: %s", "x" * (i % 70_000))
    finally:
        release_logging(handler)
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and all(len(line) < 300 for line in lines), lines  # one a second at most
    assert log.counts["log"] == 100_000


def test_different_faults_are_each_named_and_a_burst_is_capped():
    stream = io.StringIO()
    log = ErrorLog(stream=stream, burst=10)
    log.report("osc-args", "/cadenza/tempo: argument 1 (bpm): found nan, allowed a finite number; dropped")
    log.report("osc-args", "/cadenza/note: missing argument 2 (velocity); dropped")
    log.report("osc-args", "/cadenza/tempo: argument 1 (bpm): found inf, allowed a finite number; dropped")
    assert len(stream.getvalue().splitlines()) == 2
    for i in range(1000):
        log.report("osc-unknown-address", f"/cadenza/x{i}: unknown address " + "y" * (i % 7))
    assert len(stream.getvalue().splitlines()) <= 10


def test_a_log_line_never_lands_inside_the_status_line():
    stream = io.StringIO()
    console = Console(stream)
    log = ErrorLog(console=console)
    console.status("load 1.0% xruns 0")
    log.report("osc-args", "bad")
    console.status("load 2.0% xruns 0")
    console.end_status()
    text = stream.getvalue()
    assert "\r\x1b[Kcadenza: osc-args: bad\n\rload 1.0% xruns 0" in text
    assert text.endswith("load 2.0% xruns 0\n")
