"""MIDI learn: arm a param, move a CC, and that CC moves the param from then on.

A control thread arms ``node.param`` and polls (:meth:`MidiLearn.poll`, from
the panel's ≤ 30 Hz loop) the CC counter the engine's :class:`MidiMap` keeps;
the first CC that comes after arming is mapped at once (``MidiMap.with_cc``)
and remembered, so :func:`save_cc_mappings` can write every learned mapping
into the patch's ``[midi] cc`` table with tomlkit — comments and layout kept,
the old file first copied to ``<patch>.toml.bak``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import tomlkit

from cadenza.engine.errors import CadenzaError
from cadenza.engine.patch import parse_patch, read_patch_text


class LearnError(CadenzaError, ValueError):
    """A learn request that cannot be done. The message is one line."""


class MidiLearn:
    """One armed param at a time; ``learned`` maps CC number → ``"node.param"`` for this run."""

    def __init__(self, engine):
        self.engine = engine
        self.armed: str | None = None  # "node.param" waiting for a CC
        self._map = engine.midi_map  # the patch's map the learned CCs belong to
        self._seen = 0  # its CC count when armed
        self.learned: dict[int, str] = {}

    def arm(self, dotted: str) -> None:
        """Wait for the next CC to map it to ``dotted`` ("node.param"); LearnError if no such param."""
        self._follow_patch()
        try:
            self.engine.graph.param_target(dotted)
        except KeyError:
            raise LearnError(f"MIDI learn: {dotted!r} is not a param of {self.engine.patch.name}") from None
        self._seen = self._map.ccs_seen
        self.armed = dotted

    def cancel(self) -> None:
        self.armed = None

    def _follow_patch(self) -> None:
        """A new patch brings its own ``[midi] cc``: what was armed or learned for the old one goes."""
        if self.engine.midi_map is not self._map:
            self._map, self.armed, self.learned = self.engine.midi_map, None, {}

    def poll(self) -> tuple[int, str] | None:
        """(cc, "node.param") when a CC has just been learned, else None. From a control thread."""
        self._follow_patch()
        midi_map = self._map
        if self.armed is None or midi_map.ccs_seen == self._seen or midi_map.last_cc < 0:
            return None
        cc, dotted = midi_map.last_cc, self.armed
        self.armed = None
        try:
            target = self.engine.graph.param_target(dotted)
        except KeyError:  # the graph moved on between the map and this read
            return None
        midi_map.with_cc(cc, target)
        self.learned = {n: d for n, d in self.learned.items() if d != dotted} | {cc: dotted}
        return cc, dotted


    def mappings(self) -> dict[int, str]:
        """Every CC the playing patch answers now (its ``[midi] cc`` and what was learned): CC → "node.param"."""
        nodes = self.engine.graph.nodes
        out = {}
        for cc, (node, param, _, _) in self.engine.midi_map.cc.items():
            names = list(nodes[node].PARAMS) if node < len(nodes) else []
            if param < len(names):  # a map and a graph of two patches, mid-swap: skipped until it settles
                out[cc] = f"{nodes[node].id}.{names[param]}"
        return out


def save_cc_mappings(path: Path, mappings: dict[int, str]) -> Path:
    """Write ``mappings`` (CC → "node.param") into ``path``'s ``[midi] cc`` table; returns the
    ``.bak`` copy made first. Comments and layout of the file are kept (tomlkit)."""
    if not mappings:
        raise LearnError("MIDI learn: nothing learned yet to save")
    path = Path(path)
    document = tomlkit.parse(read_patch_text(path))
    midi = document.setdefault("midi", tomlkit.table())
    if "cc" not in midi:
        midi["cc"] = tomlkit.inline_table()
    cc_table = midi["cc"]
    for cc, dotted in sorted(mappings.items()):
        for key in [k for k, v in cc_table.items() if v == dotted and k != str(cc)]:
            del cc_table[key]  # the param follows one CC: the one just learned
        cc_table[str(cc)] = dotted
    text = tomlkit.dumps(document)
    parse_patch(text, path)  # a PatchError here leaves the file as it was
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return backup
