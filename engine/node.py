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

``__init__`` does nothing else: it validates options (a missing weights file
may be named here) and declares; it loads nothing and allocates no state, since
a patch is built (and checked) before it is wired. The life of a node:

1. ``prepare(ctx)`` loads weights, models and SoundFonts, allocates every
   buffer and state array, compiles, and sets ``latency_samples`` (as JUCE's
   processors report theirs: the samples between an input and the output it
   causes, 0 for most nodes). A file that cannot be loaded raises
   :class:`cadenza.engine.errors.ModelError` (one line for the CLI).
2. ``reset()`` clears state (tails cut, notes off, generators reseeded). It is
   only ever called on a prepared node — :meth:`Node.open` (what the graph and
   the harness call) runs ``prepare`` then ``reset``, and nothing resets a
   node before that — so ``reset`` may use every array ``prepare`` made and
   needs no guard, and ``prepare`` need not call it.
3. ``process(io)`` runs once per block and must be real-time safe. Params are
   read by name through ``self.P``, the param positions resolved once:
   ``self.params[self.P.cutoff]`` (a float32, as the array holds it; no lookup
   by string, no allocation beyond the scalar). ``param(name)`` gives a Python
   float, for control-rate code.
4. ``close()`` releases outside resources.

The graph checks the declarations when a patch loads.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """What a node learns at prepare time: the engine's ``sample_rate`` (Hz), its ``block``
    (frames a ``process`` call may be given, at most), the node's own id, and ``lane``: a
    callable giving the engine's worker lane (:class:`cadenza.engine.worker.WorkerLane`,
    for jobs too heavy for a block), or None where no engine runs the node (the harness).
    Controls and event targets are wired by the graph (``NodeIO.controls``, ``notes_to``), not here."""

    sample_rate: int
    block: int
    node_id: str = ""
    lane: Callable[[], Any] | None = None


class ParamIndex:
    """The position of each of a node type's params in ``Node.params``, by name: ``P.cutoff`` → 0.

    Resolved once when the node is made, so a block reads ``self.params[self.P.cutoff]``:
    an attribute and an index. A name the node type lacks raises AttributeError naming those it has.
    """

    def __init__(self, names):
        self._names = tuple(names)
        for i, name in enumerate(self._names):
            setattr(self, name, i)

    def __getattr__(self, name: str):  # only reached for a name that is not a param
        if name.startswith("__") or name == "_names":
            raise AttributeError(name)
        raise AttributeError(f"no param {name!r}, allowed {', '.join(self._names) or 'none'}")


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

        ``target`` is a node index in the graph's order, or ``OUTBOUND``; by default
        the node's configured destination (its ``notes_to``), else out of the engine.
        A copy of every note, beat and pitch event also leaves the engine.
        """
        self._emit(self.block_start + offset, kind,
                   self.default_target if target is None else target, channel, a, b, value)

    def pass_on(self, ev) -> None:
        """Send an event this node received (a row of ``events``) on to its destination, at its own
        sample, with no copy out of the engine (the node that made it sent one)."""
        self._emit(int(ev["time"]), int(ev["kind"]), self.default_target, int(ev["channel"]), int(ev["a"]),
                   int(ev["b"]), float(ev["value"]), echo=False)


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
        self.P = ParamIndex(self.PARAMS)  # params by name: self.params[self.P.cutoff]
        self.param_bounds = [(p.lo, p.hi) for p in self.PARAMS.values()]
        self.latency_samples = 0  # set in prepare when the node delays its input
        self.prepared = False  # True once open() has run prepare

    @classmethod
    def patch_keys(cls) -> dict[str, Option]:
        """Keys a patch may set: the options, and the params' starting values."""
        keys = {name: Option(float, default=p.default, lo=p.lo, hi=p.hi, doc=p.doc)
                for name, p in cls.PARAMS.items()}
        return keys | cls.OPTIONS

    def param(self, name: str) -> float:
        """A param's value as a Python float (control-rate code; a block reads ``self.params[self.P.name]``)."""
        return float(self.params[self.param_index[name]])

    def open(self, ctx: Context) -> None:
        """Bring the node up: ``prepare(ctx)``, then ``reset()``. The graph and the harness call this,
        never ``prepare`` alone, so ``reset`` always finds what ``prepare`` made. Not overridden."""
        self.prepare(ctx)
        self.prepared = True
        self.reset()

    def prepare(self, ctx: Context) -> None:
        """Load weights, allocate buffers and state, compile kernels, set ``latency_samples``. Not real-time."""

    def process(self, io: NodeIO) -> None:
        """Produce this block. Real-time safe: no allocation, locks, I/O or per-sample Python."""

    def reset(self) -> None:
        """Clear all state: notes off, tails cut. Called only after ``prepare`` (see :meth:`open`)."""

    def close(self) -> None:
        """Release outside resources (servers, files) when the graph is dropped."""
