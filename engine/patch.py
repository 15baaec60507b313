"""Patches: TOML files that wire a performance. Data only, validated on load.

Every error is one line naming the file, the key (and its line), what was
found and what is allowed, so a broken patch never starts half-wired. A
patch is read only from a regular file of at most ``MAX_PATCH_BYTES`` (never
a device, a FIFO or a directory), and names registered node types only.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadenza.engine.errors import CadenzaError
from cadenza.engine.hostport import parse_hostport
from cadenza.engine.node import Option
from cadenza.engine.registry import node_class

PATCH_DIR = Path(__file__).resolve().parent.parent / "patches"
DEFAULT_PATCH = PATCH_DIR / "default.toml"
MAX_PATCH_BYTES = 1 << 20

# Keys every [[node]] may carry; the graph handles them, not the node.
NODE_KEYS = {
    "id": Option(str, required=True, doc="unique name of the node"),
    "type": Option(str, required=True, doc="registered node type"),
    "input": Option(list, default=[], doc="audio sources: node ids, 'node:port' or 'adc'"),
    "notes_to": Option(str, default="", doc="node that receives this node's notes"),
}

TABLES = {
    "patch": {
        "description": Option(str, default=""),
        "output": Option(list, default=[], doc="nodes mixed to the output (default: every unconsumed output)"),
    },
    "audio": {
        "sample_rate": Option(int, default=48000, choices=(44100, 48000, 88200, 96000)),
        "block": Option(int, default=128, choices=(32, 64, 128, 256, 512, 1024)),
        "inputs": Option(int, default=2, lo=0, hi=8),
        "scheduling_delay_ms": Option(float, default=0.0, lo=0.0, hi=500.0),
    },
    "clock": {
        "bpm": Option(float, default=120.0, lo=20.0, hi=400.0),
        "beats_per_bar": Option(int, default=4, lo=1, hi=32),
        "follow": Option(str, default="", doc="id of a beat listener whose tempo the clock follows"),
        "link": Option(bool, default=False, doc="join an Ableton Link session (tempo, phase with quantum = "
                                                "beats_per_bar, start/stop); needs the cadenza[link] extra"),
    },
    "midi": {
        "in": Option(str, default="", doc="input port name substring"),
        "out": Option(str, default="", doc="output port name substring"),
        "virtual": Option(bool, default=True),
        "channel": Option(int, default=-1, lo=-1, hi=15, doc="-1 listens on every channel"),
        "notes": Option(dict, default={}),
        "buttons": Option(dict, default={}),
        "cc": Option(dict, default={}),
        "program": Option(str, default=""),
        "clock_out": Option(bool, default=False),
        "thru": Option(bool, default=False, doc="notes, CCs, bends and programs in also go out, at their sample"),
    },
    "osc": {
        "listen": Option(str, default="127.0.0.1:8000"),
        "send": Option(list, default=["127.0.0.1:9000"]),
        "pitch_rate_hz": Option(float, default=0.0, lo=0.0, hi=1000.0),
        "velocity": Option(str, default="midi", choices=("midi", "unit"),
                           doc="velocity of /cadenza/note and /cadenza/button: 0-127, or 0..1 (TouchDesigner)"),
        "report_notes": Option(list, default=[], doc="voices whose notes go out as /cadenza/out/<node>/note"),
    },
    "set": {
        "patches": Option(list, default=[], doc="patch names (no paths) a performance switches among, "
                                                "in program-change order"),
        "folder": Option(str, default="", doc="a folder of patches, relative to this file (instead of patches)"),
    },
}
SET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a [set] entry: a patch name, never a path


class PatchError(CadenzaError, ValueError):
    """A patch that cannot be played. The message is one line."""


@dataclass
class NodeSpec:
    id: str
    type: str
    options: dict[str, Any]
    inputs: list[str] | dict[str, list[str]] = field(default_factory=list)
    notes_to: str = ""
    cls: type | None = None

    def sources(self) -> list[str]:
        """Every audio source this node reads, whatever port it feeds."""
        return self.inputs if isinstance(self.inputs, list) else sum(self.inputs.values(), [])


@dataclass
class Patch:
    path: Path
    description: str
    nodes: list[NodeSpec]
    tables: dict[str, dict[str, Any]]

    @property
    def name(self) -> str:
        return self.path.stem

    def table(self, name: str) -> dict[str, Any]:
        return self.tables[name]


def resolve_patch_path(name: str | Path | None) -> Path:
    """A patch by path, or by name from ``patches/`` (``"genie"`` → patches/genie.toml)."""
    if name is None:
        return DEFAULT_PATCH
    path = Path(name)
    if path.exists():
        return path
    candidate = PATCH_DIR / (path.name if path.suffix == ".toml" else path.name + ".toml")
    if candidate.exists():
        return candidate
    raise PatchError(f"{name}: no such patch file (patches available: "
                     f"{', '.join(p.stem for p in sorted(PATCH_DIR.glob('*.toml')))})")


def load_patch(name: str | Path | None = None) -> Patch:
    """Read and validate a patch; raises :class:`PatchError` with a one-line message."""
    path = resolve_patch_path(name)
    return parse_patch(read_patch_text(path), path)


def read_patch_text(path: Path) -> str:
    """The text of a regular UTF-8 file of at most ``MAX_PATCH_BYTES``; PatchError otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise PatchError(f"{path}: cannot open the patch ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PatchError(f"{path}: not a regular file, allowed a .toml patch file")
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_PATCH_BYTES + 1)
    if len(data) > MAX_PATCH_BYTES:
        raise PatchError(f"{path}: larger than {MAX_PATCH_BYTES // 1024} KiB, allowed a patch file up to that")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise PatchError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}), "
                         "allowed a UTF-8 TOML file") from None


def parse_patch(text: str, path: Path) -> Patch:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PatchError(f"{path}: not valid TOML: {exc}") from None
    where = _Locator(text, path)

    for key in data:
        if key not in TABLES and key != "node":
            where.fail(key, None, data[key], "one of [patch], [audio], [clock], [midi], [osc], [set], [[node]]")
    tables = {}
    for table, schema in TABLES.items():
        raw = data.get(table, {})
        if not isinstance(raw, dict):
            where.fail(table, None, raw, "a table")
        tables[table] = _check_keys(raw, schema, where, table)

    raw_nodes = data.get("node", [])
    if not isinstance(raw_nodes, list) or not raw_nodes:
        where.fail("node", None, raw_nodes, "at least one [[node]] table")
    nodes: list[NodeSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        nodes.append(_parse_node(raw, i, where, seen))
    ids = {n.id for n in nodes}
    for i, spec in enumerate(nodes):
        for src in spec.sources():
            src_id = src.split(":")[0]
            if src_id != "adc" and src_id not in ids:
                where.fail(f"node.{spec.id}.input", i, src, "'adc' or a node id: " + ", ".join(sorted(ids)))
        if spec.notes_to and spec.notes_to not in ids:
            where.fail(f"node.{spec.id}.notes_to", i, spec.notes_to, "a node id: " + ", ".join(sorted(ids)))
        if spec.notes_to:
            _check_takes(nodes, spec.notes_to, "ACCEPTS_NOTES", "notes", f"node.{spec.id}.notes_to", i, where)
    for out in tables["patch"]["output"]:
        if out not in ids:
            where.fail("patch.output", None, out, "a node id: " + ", ".join(sorted(ids)))
    _check_routes(tables, ids, nodes, where)
    _check_osc(tables["osc"], where)
    _check_set(tables["set"], where)
    for node_id in tables["osc"]["report_notes"]:
        if node_id not in ids:
            where.fail("osc.report_notes", None, node_id, "a node id: " + ", ".join(sorted(ids)))
        _check_takes(nodes, node_id, "ACCEPTS_NOTES", "notes", "osc.report_notes", None, where)
    return Patch(path=path, description=tables["patch"]["description"], nodes=nodes, tables=tables)


def _parse_node(raw: Any, index: int, where: "_Locator", seen: set[str]) -> NodeSpec:
    if not isinstance(raw, dict):
        where.fail("node", index, raw, "a table")
    common = {k: raw[k] for k in NODE_KEYS if k in raw}
    ports = common.pop("input") if isinstance(common.get("input"), dict) else None
    common = _check_keys(common, NODE_KEYS, where, "node", index)
    node_id, type_name = common["id"], common["type"]
    if node_id in seen or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node_id) or node_id == "adc":
        where.fail("node.id", index, node_id, "a unique name of letters, digits and _ (not 'adc')")
    seen.add(node_id)
    try:
        cls = node_class(type_name)
    except LookupError as exc:
        where.fail(f"node.{node_id}.type", index, type_name, str(exc))
    own = {k: v for k, v in raw.items() if k not in NODE_KEYS}
    options = _check_keys(own, cls.patch_keys(), where, f"node.{node_id}", index)
    if ports is not None:  # { port = source(s) }: each port's sources as a list
        inputs = {port: _check_value(src, NODE_KEYS["input"], where, f"node.{node_id}.input.{port}", index)
                  for port, src in ports.items()}
    else:
        inputs = list(common["input"])
    return NodeSpec(id=node_id, type=type_name, options=options, inputs=inputs,
                    notes_to=common["notes_to"], cls=cls)


def _check_routes(tables, ids, nodes, where) -> None:
    midi = tables["midi"]
    for section, flag in (("notes", "ACCEPTS_NOTES"), ("buttons", "ACCEPTS_BUTTONS")):
        target = midi[section].get("to")
        if midi[section] and target not in ids:
            where.fail(f"midi.{section}.to", None, target, "a node id: " + ", ".join(sorted(ids)))
        if midi[section]:
            _check_takes(nodes, target, flag, section, f"midi.{section}.to", None, where)
    params = {f"{n.id}.{p}" for n in nodes for p in n.cls.PARAMS}
    for cc, dest in midi["cc"].items():
        if not cc.isdigit() or not 0 <= int(cc) <= 127:
            where.fail(f"midi.cc.{cc}", None, cc, "a CC number 0..127")
        if dest not in params:
            where.fail(f"midi.cc.{cc}", None, dest, "a 'node.param' of this patch: " + ", ".join(sorted(params)))
    buttons = midi["buttons"].get("notes", [])
    if buttons and (len(buttons) != 8 or not all(isinstance(n, int) and 0 <= n <= 127 for n in buttons)):
        where.fail("midi.buttons.notes", None, buttons, "a list of 8 MIDI note numbers")
    follow = tables["clock"]["follow"]
    if follow and follow not in ids:
        where.fail("clock.follow", None, follow, "a node id: " + ", ".join(sorted(ids)))


def _check_set(table: dict, where: "_Locator") -> None:
    if table["patches"] and table["folder"]:
        where.fail("set.folder", None, table["folder"], "either [set] patches or [set] folder, not both")
    for name in table["patches"]:
        if not isinstance(name, str) or not SET_NAME.fullmatch(name) or name.endswith(".toml"):
            where.fail("set.patches", None, name, "patch names of letters, digits, _ . - (no paths, no .toml)")


def _check_takes(nodes, target: str, flag: str, what: str, key: str, index, where: "_Locator") -> None:
    """A route must end at a node type that declares it takes ``what`` (notes, buttons)."""
    takers = [n.id for n in nodes if getattr(n.cls, flag)]
    if not getattr(next(n.cls for n in nodes if n.id == target), flag):
        where.fail(key, index, target, f"a node that takes {what}: " + (", ".join(takers) or "none in this patch"))


def _check_osc(osc: dict, where: "_Locator") -> None:
    for key, default_port, values in (("listen", 8000, [osc["listen"]]), ("send", 9000, osc["send"])):
        for value in values:
            try:
                parse_hostport(value, default_port, listen=key == "listen")
            except ValueError as exc:
                where.fail(f"osc.{key}", None, value, f"HOST:PORT, e.g. '127.0.0.1:{default_port}' ({exc})")


def _check_keys(raw: dict, schema: dict[str, Option], where: "_Locator", prefix: str,
                index: int | None = None) -> dict[str, Any]:
    out = {}
    for key, value in raw.items():
        if key not in schema:
            allowed = ", ".join(schema) if schema else "no keys"
            where.fail(f"{prefix}.{key}", index, value, f"a known key ({allowed})")
        out[key] = _check_value(value, schema[key], where, f"{prefix}.{key}", index)
    for key, opt in schema.items():
        if key not in out:
            if opt.required:
                where.fail(f"{prefix}.{key}", index, None, opt.allowed() + " (required)")
            out[key] = opt.default
    return out


def _check_value(value: Any, opt: Option, where: "_Locator", key: str, index: int | None) -> Any:
    kind = opt.kind
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if kind is list and isinstance(value, str):
        value, ok = [value], True
    if ok and opt.choices is not None and value not in opt.choices:
        ok = False
    if ok and kind is float and not math.isfinite(value):
        ok = False
    if ok and kind in (int, float):
        if (opt.lo is not None and value < opt.lo) or (opt.hi is not None and value > opt.hi):
            ok = False
    if not ok:
        where.fail(key, index, value, opt.allowed())
    return value


class _Locator:
    """Finds the line of a key in the patch text, for error messages."""

    def __init__(self, text: str, path: Path):
        self.lines = text.splitlines()
        self.path = path

    def line_of(self, key: str, node_index: int | None) -> int | None:
        parts = key.split(".")
        leaf = parts[-1]
        if node_index is not None:
            headers = [i for i, ln in enumerate(self.lines) if re.match(r"\s*\[\[\s*node\s*\]\]", ln)]
            if node_index >= len(headers):
                return None
            start = headers[node_index]
        else:
            start = next((i for i, ln in enumerate(self.lines)
                          if re.match(rf"\s*\[\s*{re.escape(parts[0])}\s*\]", ln)), None)
            if start is None:
                return None
            if len(parts) == 1:
                return start + 1
        pattern = re.compile(rf"\s*\"?{re.escape(leaf)}\"?\s*=")
        for i in range(start + 1, len(self.lines)):
            if re.match(r"\s*\[", self.lines[i]):
                break
            if pattern.match(self.lines[i]) or re.search(rf"[{{,]\s*\"?{re.escape(leaf)}\"?\s*=", self.lines[i]):
                return i + 1
        return start + 1

    def fail(self, key: str, node_index: int | None, found: Any, allowed: str):
        line = self.line_of(key, node_index)
        at = f" (line {line})" if line else ""
        shown = "nothing" if found is None else repr(found)
        raise PatchError(f"{self.path}: {key}{at}: found {shown}, allowed {allowed}")


def list_patches() -> list[tuple[str, str]]:
    """(name, description) of every patch in ``patches/``, read without building it."""
    out = []
    for path in sorted(PATCH_DIR.glob("*.toml")):
        try:
            desc = load_patch(path).description
        except PatchError as exc:
            desc = f"BROKEN: {exc}"
        out.append((path.stem, desc))
    return out
