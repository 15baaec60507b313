"""The node contract: what every part of a patch implements.

A node declares, as class attributes:

- ``OPTIONS``: the patch keys it accepts (name → :class:`Option`), validated
  when the patch loads;
- ``PARAMS``: the live parameters a performer can move (name → :class:`Param`),
  set by ``PARAM`` events from MIDI CC, OSC or the patch;
- ``ACCEPTS_NOTES`` / ``ACCEPTS_BUTTONS``: whether note (button) events may be
  routed to it; a patch that routes them elsewhere fails to load, in one line.

and per instance, in ``__init__`` (from its options):

- ``inputs`` / ``outputs``: audio port name → channel count;
- ``controls``: the control signals it publishes (name → meaning), one float32
  value per frame of the block, visible to other nodes as ``"<id>.<name>"``;
- ``reads``: the controls of other nodes it reads (local name → ``"<id>.<name>"``).

``prepare(ctx)`` allocates, loads and compiles, and sets ``latency_samples``
(as JUCE's processors report theirs: the samples between an input and the
output it causes, 0 for most nodes); ``process(io)`` runs once per block and
must be real-time safe; ``reset()`` clears state (tails cut, notes off). The
graph checks the declarations when a patch loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from cadenza.engine.events import OUTBOUND, Inbox


@dataclass(frozen=True)
class Option:
    """One patch key of a node type.

    ``kind`` is one of ``int``, ``float``, ``str``, ``bool``, ``list``,
    ``dict``; ``lo``/``hi`` bound numbers; ``choices`` lists allowed strings.
    ``required`` options have no default.
    """

    kind: type
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    required: bool = False
    doc: str = ""

    def allowed(self) -> str:
        """Human description of what is allowed, for error messages."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        name = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
                list: "a list", dict: "a table"}[self.kind]
        if self.lo is not None and self.hi is not None:
            return f"{name} in {self.lo:g}..{self.hi:g}"
        if self.lo is not None:
            return f"{name} >= {self.lo:g}"
        return name


@dataclass(frozen=True)
class Param:
    """A live parameter: default, range and unit. Values outside are clamped."""

    default: float
    lo: float
    hi: float
    unit: str = ""
    doc: str = ""

    def clamp(self, value: float) -> float:
        return min(max(value, self.lo), self.hi)


@dataclass
class Context:
    """What a node learns at prepare time."""

    sample_rate: int
    block: int
    node_id: str = ""
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    node_index: Callable[[str], int] | None = None


class NodeIO:
    """A node's view of the current block. One object per node, reused every block.

    ``inputs`` / ``outputs``: port → float32 array (channels, frames);
    ``controls``: local name → float32 array (frames,) of the control it reads;
    ``published``: own control name → float32 array (frames,) to fill;
    ``events``: this block's events for the node, sorted by ``time``;
    ``block_start``: absolute sample time of the block's first frame.
    """

    def __init__(self, engine_emit, inbox: Inbox):
        self.inputs: dict[str, np.ndarray] = {}
        self.outputs: dict[str, np.ndarray] = {}
        self.controls: dict[str, np.ndarray] = {}
        self.published: dict[str, np.ndarray] = {}
        self.inbox = inbox
        self.block_start = 0
        self.frames = 0
        self._emit = engine_emit
        self.default_target = OUTBOUND

    @property
    def events(self) -> np.ndarray:
        return self.inbox.buf[: self.inbox.count]

    def emit(self, offset, kind, channel=0, a=0, b=0, value=0.0, target=None) -> None:
        """Send an event ``offset`` frames into this block (or later).

        ``target`` is a node index (see ``Context.node_index``); by default the
        node's configured destination (its ``notes_to``), else out of the engine.
        A copy of every note, beat and pitch event also leaves the engine.
        """
        self._emit(self.block_start + offset, kind,
                   self.default_target if target is None else target, channel, a, b, value)


class Node:
    """Base class of every graph node. Subclasses override what they need."""

    OPTIONS: dict[str, Option] = {}
    PARAMS: dict[str, Param] = {}
    ACCEPTS_NOTES = False
    ACCEPTS_BUTTONS = False

    def __init__(self, node_id: str, **options):
        self.id = node_id
        self.options = {name: opt.default for name, opt in self.OPTIONS.items()} | options
        self.inputs: dict[str, int] = {}
        self.outputs: dict[str, int] = {}
        self.controls: dict[str, str] = {}
        self.reads: dict[str, str] = {}
        self.params = np.array([self.options.get(name, p.default) for name, p in self.PARAMS.items()],
                               dtype=np.float32)
        self.param_index = {name: i for i, name in enumerate(self.PARAMS)}
        self.param_bounds = [(p.lo, p.hi) for p in self.PARAMS.values()]
        self.latency_samples = 0  # set in prepare when the node delays its input

    @classmethod
    def patch_keys(cls) -> dict[str, Option]:
        """Keys a patch may set: the options, and the params' starting values."""
        keys = {name: Option(float, default=p.default, lo=p.lo, hi=p.hi, doc=p.doc)
                for name, p in cls.PARAMS.items()}
        return keys | cls.OPTIONS

    def param(self, name: str) -> float:
        return float(self.params[self.param_index[name]])

    def prepare(self, ctx: Context) -> None:
        """Allocate buffers and compile kernels. Not real-time."""

    def process(self, io: NodeIO) -> None:
        """Produce this block. Real-time safe: no allocation, locks, I/O or per-sample Python."""

    def reset(self) -> None:
        """Clear all state: notes off, tails cut."""

    def close(self) -> None:
        """Release outside resources (servers, files) when the graph is dropped."""
