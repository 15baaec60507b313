"""One node contract, checked for every registered node type.

Each type plays in a one-node patch (its audio input fed from ``adc``, notes
or buttons sent to it when it takes them), on the engine's offline path:

- real-time memory: after 300 warm-up blocks, 1 000 more blocks grow Python's
  traced heap (tracemalloc, on from before the patch is built, less what the
  measuring itself keeps) by 0 bytes and leave numba's NRT allocation count as it was;
- ``reset()`` gives silence;
- the output is the same at 64, 128 and 256 frames a block (within 1e-6), once
  the latency the node declares for that block size is compensated (a node
  with a frame rate above the block size buffers up to one frame more);
- a render repeats exactly.

and, for every type: making a node loads nothing (weights, models and
SoundFonts load in ``prepare``), the graph opens every node (prepare, then
reset) before anything resets it, and no node reads a param by position.
"""

from __future__ import annotations

import ast
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from numba.core.runtime import rtsys

from cadenza.engine.engine import Engine
from cadenza.engine.events import Kind, make_events
from cadenza.engine.patch import parse_patch
from cadenza.engine.registry import NODE_TYPES, node_class

REPO = Path(__file__).resolve().parent.parent
RATE = 48000
TYPES = sorted(t for t in NODE_TYPES if t != "safety")  # the safety stage is in every patch below


LISTENS_TO = {  # the listener a type reads, by its default id, heard on the same input
    "bass": ['[[node]]', 'id = "chords"', 'type = "chords"', 'input = "adc"'],
}


def patch_for(type_name: str, tmp_path) -> str:
    cls = node_class(type_name)
    node = cls("n")
    lines = ['[audio]', 'inputs = 1', *LISTENS_TO.get(type_name, []), '[[node]]', 'id = "n"', f'type = "{type_name}"']
    if node.inputs:
        ports = list(node.inputs)
        lines.append('input = "adc"' if len(ports) == 1 else
                     "input = { " + ", ".join(f'{p} = "adc"' for p in ports) + " }")
    if getattr(cls, "ACCEPTS_NOTES", False):
        lines += ['[midi]', 'notes = { to = "n" }']
    elif type_name == "genie":
        lines += ['[midi]', 'buttons = { to = "n", notes = [60, 62, 64, 65, 67, 69, 71, 72] }']
    return "\n".join(lines) + "\n[osc]\nlisten = \"127.0.0.1:0\"\nsend = []\n"


def voice_like(frames: int) -> np.ndarray:
    """A sung-vowel-like input: a 196 Hz harmonic tone with vibrato and a slow swell."""
    t = np.arange(frames) / RATE
    f0 = 196.0 * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 9)) * (0.2 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    return x[None].astype(np.float32)


PERIOD = 12800  # samples between notes: 100 blocks of 128, so the memory is compared at one phase


def events_for(engine: Engine, frames: int) -> np.ndarray:
    """A note (or button) every ``PERIOD`` samples (0.27 s), each held 0.2 s."""
    target = engine.node_index("n")
    kinds = (Kind.NOTE_ON, Kind.NOTE_OFF)
    if engine.midi_map.buttons_to >= 0:
        kinds = (Kind.BUTTON, Kind.BUTTON)
    rows = []
    for i, start in enumerate(range(RATE // 10, frames, PERIOD)):
        note = 60 + (i * 5) % 12
        rows.append((start, kinds[0], target, 0, note if kinds[0] != Kind.BUTTON else i % 8, 100, 0.0))
        rows.append((start + RATE // 5, kinds[1], target, 0, note if kinds[1] != Kind.BUTTON else i % 8, 0, 0.0))
    out = make_events(len(rows))
    for i, row in enumerate(rows):
        out[i] = row
    return np.sort(out, order="time", kind="stable")


def traced_bytes(marks: list, i: int) -> None:
    """Store Python's traced heap size in ``marks[i]`` (preallocated, so storing costs what it always costs)."""
    marks[i] = tracemalloc.get_traced_memory()[0]


def measuring_cost() -> int:
    """What two :func:`traced_bytes` calls with nothing between them add to the heap (the int they keep)."""
    marks = [None, None]
    traced_bytes(marks, 0)
    traced_bytes(marks, 1)
    return marks[1] - marks[0]


def render(text: str, tmp_path, block: int, frames: int, measure: bool = False):
    """Offline render of the one-node patch; with ``measure``, (tracemalloc bytes, NRT allocations) over
    the last 1 000 blocks after 200 warm-up blocks."""
    marks = [None, None]
    if measure:  # traced from before the node exists, so every state value it replaces is traced too
        others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        assert not others, f"threads {others} would allocate into the traced heap (it counts every thread)"
        tracemalloc.start()
    engine = Engine(parse_patch(text, tmp_path / "contract.toml"), RATE, block)
    audio = voice_like(frames)
    events = events_for(engine, frames)
    out = np.zeros((2, frames), np.float32)
    growth = None
    engine.schedule(events)  # all at once (a few dozen), so the measured blocks run engine code only
    try:
        n_blocks = frames // block
        for b in range(n_blocks):
            # measured from block 300: past Python's cached small ints (a counter under 256 is no allocation)
            if measure and b == 300:
                nrt0 = rtsys.get_allocation_stats()
                traced_bytes(marks, 0)
            lo = b * block
            out[:, lo:lo + block] = engine.process(audio[:, lo:lo + block])
        if measure:
            traced_bytes(marks, 1)
            heap = marks[1] - marks[0] - measuring_cost()
            tracemalloc.stop()
            nrt1 = rtsys.get_allocation_stats()
            growth = (heap, (nrt1.alloc - nrt1.free) - (nrt0.alloc - nrt0.free))
        latency = engine.graph.latency_samples
        node = engine.graph.nodes[engine.node_index("n")]
        assert node.prepared, f"{node.id}: the graph did not open it"
        node.reset()
        engine.graph.safety.reset()
        after_reset = engine.process(np.zeros((1, block), np.float32)).copy()
    finally:
        engine.close()
    return out, growth, after_reset, latency


@pytest.mark.parametrize("type_name", TYPES)
def test_node_keeps_the_contract(type_name, tmp_path):
    text = patch_for(type_name, tmp_path)
    frames = 1300 * 128  # 300 warm-up blocks, 1 000 measured
    out, (heap, nrt), after_reset, latency = render(text, tmp_path, 128, frames, measure=True)
    assert heap <= 0, f"{type_name}: Python heap grew {heap} bytes over 1000 blocks"
    assert nrt == 0, f"{type_name}: numba NRT holds {nrt} more allocations after 1000 blocks"
    assert np.abs(after_reset).max() < 1e-6, f"{type_name}: not silent after reset()"
    assert np.isfinite(out).all()
    again, _, _, _ = render(text, tmp_path, 128, frames)
    assert np.array_equal(out, again), f"{type_name}: a render does not repeat"
    short = 256 * 160
    for block in (64, 256):
        other, _, _, other_latency = render(text, tmp_path, block, short + 1024)
        shift = other_latency - latency  # a block size may need more buffering: declared, so compensated
        assert 0 <= shift < 1024, f"{type_name}: latency {other_latency} at {block} frames, {latency} at 128"
        diff = np.abs(other[:, shift:shift + short] - out[:, :short]).max()
        assert diff <= 1e-6, f"{type_name}: output differs by {diff:.3g} at {block} frames a block"


@pytest.mark.parametrize("type_name", TYPES)
def test_making_a_node_loads_nothing(type_name, monkeypatch):
    """``__init__`` validates and declares; weights and SoundFonts load in ``prepare``."""
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError(f"{type_name}: __init__ loaded a file ({args[:1]})")

    monkeypatch.setattr(torch, "load", refuse)
    try:
        import fluidsynth
    except (ImportError, OSError):
        pass
    else:
        monkeypatch.setattr(fluidsynth, "Synth", refuse)
    node = node_class(type_name)("n")
    assert not node.prepared
    assert [getattr(node.P, name) for name in node.PARAMS] == list(range(len(node.PARAMS)))


def _positional_param_reads(path: Path) -> list[str]:
    """``x.params[<int>]`` and ``p[<int>]`` where ``p`` was bound to ``self.params``, in one file."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        aliases = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs = [(target, node.value)]
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = list(zip(target.elts, node.value.elts))
                    for name, value in pairs:
                        if isinstance(name, ast.Name) and isinstance(value, ast.Attribute) and value.attr == "params":
                            aliases.add(name.id)
        for node in ast.walk(fn):
            if not isinstance(node, ast.Subscript):
                continue
            base = node.value
            on_params = (isinstance(base, ast.Attribute) and base.attr == "params") or \
                        (isinstance(base, ast.Name) and base.id in aliases)
            index = node.slice.operand if isinstance(node.slice, ast.UnaryOp) else node.slice
            if on_params and isinstance(index, ast.Constant) and isinstance(index.value, int):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_nodes_read_params_by_name():
    """A param is read as ``self.params[self.P.cutoff]``, never by its position in ``PARAMS``."""
    found = [hit for path in sorted((REPO / "instruments").rglob("*.py")) for hit in _positional_param_reads(path)]
    assert not found, "params read by position: " + "; ".join(found)
