import numpy as np
import pytest

from cadenza.engine.events import Kind, make_events
from cadenza.engine.node import Node
from cadenza.engine.registry import register
from tests.helpers import engine_from_toml, render_blocks


class Ramp(Node):
    """Publishes a control and sends a note to its notes_to at offset 5 of every 4th block."""

    def __init__(self, node_id, **options):
        super().__init__(node_id, **options)
        self.controls = {"level": "0..1 ramp"}
        self.outputs = {"out": 1}
        self.blocks = 0

    def process(self, io):
        io.published["level"][:] = self.blocks
        io.outputs["out"][0, :] = 0.25
        if self.blocks % 4 == 0:
            io.emit(5, Kind.NOTE_ON, 0, 72, 100)
        self.blocks += 1

    def reset(self):
        self.blocks = 0


class Reader(Node):
    """Reads Ramp's control and input audio; records what it saw."""

    ACCEPTS_NOTES = True

    def __init__(self, node_id, **options):
        super().__init__(node_id, **options)
        self.reads = {"lvl": "src.level"}
        self.inputs = {"in": 2}
        self.outputs = {"out": 2}
        self.seen_level = []
        self.seen_events = []

    def process(self, io):
        self.seen_level.append(float(io.controls["lvl"][0]))
        self.seen_events.extend((int(e["time"]) - io.block_start, int(e["a"])) for e in io.events)
        io.outputs["out"][:] = io.inputs["in"]

    def reset(self):
        self.seen_level = []
        self.seen_events = []


register("test_ramp", Ramp)
register("test_reader", Reader)

PATCH = """
[[node]]
id = "reader"
type = "test_reader"
input = "src"
[[node]]
id = "src"
type = "test_ramp"
notes_to = "reader"
"""


@pytest.mark.parametrize("rate,block", [(48000, 128), (48000, 64), (48000, 256), (44100, 128)])
def test_dependency_order_controls_events_and_mono_to_stereo(rate, block):
    eng = engine_from_toml(PATCH, sample_rate=rate, block=block)
    assert [n.id for n in eng.graph.nodes] == ["src", "reader", "safety"]  # src runs first
    out = render_blocks(eng, 8)
    reader = eng.graph.nodes[1]
    assert reader.seen_level == list(range(8))  # this block's control, not last block's
    assert reader.seen_events == [(5, 72), (5, 72)]  # same block, at its offset
    assert out.shape == (2, 8 * block)
    assert np.all(eng.graph.ios[1].inputs["in"] == 0.25)  # mono source fanned out to both channels
    assert np.abs(out).max() > 0.0
    assert eng.graph.nodes[0].blocks == 8


def test_events_emitted_to_outbound_are_echoed():
    eng = engine_from_toml(PATCH)
    render_blocks(eng, 4)
    out = eng.outbound.pop_all()
    assert out["kind"].tolist() == [Kind.NOTE_ON]
    assert out["time"].tolist() == [5]


def test_clock_controls_are_published():
    eng = engine_from_toml(PATCH.replace('notes_to = "reader"', 'notes_to = "reader"') + "[clock]\nbpm = 90.0\n")
    eng.process(None)
    beat = eng.graph.controls["clock.beat"]
    assert beat[0] == 0.0 and np.isclose(beat[-1], 127 * 90 / 60 / 48000)
    assert np.all(eng.graph.controls["clock.bpm"] == 90.0)


def test_scheduled_event_far_in_future_waits_for_its_block():
    eng = engine_from_toml(PATCH)
    ev = make_events(1)
    ev[0] = (128 * 6 + 33, Kind.NOTE_ON, eng.node_index("reader"), 0, 50, 90, 0.0)
    eng.schedule(ev)
    render_blocks(eng, 8)
    assert (33, 50) in eng.graph.nodes[1].seen_events


def test_patch_latency_is_the_longest_path_of_declared_node_latencies(tmp_path):
    from cadenza.engine.patch import parse_patch
    from cadenza.engine.engine import Engine

    text = """
[audio]
inputs = 1
[[node]]
id = "ears"
type = "pitch"
input = "adc"
[[node]]
id = "room"
type = "pyo_rack"
input = "adc"
"""
    engine = Engine(parse_patch(text, tmp_path / "lat.toml"))
    try:
        ears = engine.graph.nodes[engine.node_index("ears")]
        assert ears.latency_samples == round(0.006 * 48000) > 0
        assert engine.graph.latency_samples == ears.latency_samples
    finally:
        engine.close()
