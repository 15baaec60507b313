"""What the browser panel shows, read from the engine by a control thread (never the audio thread).

:func:`describe` lists what changes only with the patch (nodes, their params
with units and ranges, the listeners, the patch list); :class:`Frames` reads
what moves (meters, clock, Ableton Link, params, listener controls) into one small dict
per frame, at most ``FRAME_HZ`` times a second. Every read here is a plain
load of a float the audio thread stores (numpy arrays, counters): nothing
locks, nothing waits, and the audio thread never knows the panel exists.
"""

from __future__ import annotations

import math

from cadenza.engine.harmony import chord_label, key_label

FRAME_HZ = 30.0  # frames a second to each panel, at most
FLOOR_DB = -120.0  # what silence reads as, dBFS


def listeners(graph) -> dict[str, str]:
    """Role → node id of the first node publishing that role's controls: beat, pitch, chords."""
    roles = {"beat": ("phase", "bpm", "next_beat_s"), "pitch": ("f0_hz", "voicing"),
             "chords": ("root", "quality", "key")}
    found = {}
    for role, names in roles.items():
        for node in graph.nodes:
            if all(f"{node.id}.{name}" in graph.controls for name in names):
                found[role] = node.id
                break
    return found


def describe(layer) -> dict:
    """The patch as the panel lays it out: sent on connect and after every patch switch."""
    engine = layer.engine
    graph = engine.graph
    nodes = []
    for node in graph.nodes:
        params = [{"name": name, "lo": p.lo, "hi": p.hi, "unit": p.unit, "doc": p.doc, "default": p.default}
                  for name, p in node.PARAMS.items()]
        if params:
            nodes.append({"id": node.id, "type": type(node).__name__, "params": params})
    return {
        "type": "patch",
        "name": engine.patch.name,
        "description": engine.patch.description,
        "patches": layer.patch_set.names,
        "buttons": engine.midi_map.buttons_to >= 0,
        "listeners": listeners(graph),
        "nodes": nodes,
    }


def _db(linear: float) -> float:
    return round(max(20.0 * math.log10(linear), FLOOR_DB), 1) if linear > 0 else FLOOR_DB


def _last(graph, name: str) -> float:
    values = graph.controls.get(name)
    return float(values[-1]) if values is not None else 0.0


class Frames:
    """One panel's view of the moving parts; counts the beats its beat listener's phase wraps."""

    def __init__(self):
        self._graph = None
        self._roles: dict[str, str] = {}
        self._phase = 0.0
        self.beats_heard = 0

    def read(self, engine) -> dict:
        graph = engine.graph
        if graph is not self._graph:
            self._graph, self._roles, self._phase = graph, listeners(graph), 0.0
        s, clock = engine.stats, engine.clock
        frame = {
            "type": "frame",
            "peak_db": _db(graph.safety.peek_peak()),
            "load": round(s.load_last, 4), "load_max": round(s.load_max, 4),
            "xruns": int(s.xruns), "late": int(s.deadline_misses), "errors": int(s.errors),
            "bar": clock.bar + 1, "beat": round(clock.beat_in_bar + 1, 3), "bpm": round(clock.bpm, 2),
            "beats_per_bar": clock.beats_per_bar,
            "params": {node.id: [round(float(v), 6) for v in node.params] for node in graph.nodes
                       if node.PARAMS},
        }
        link = engine.link
        if link is not None:
            frame["link"] = link.panel()
        roles = self._roles
        if "beat" in roles:
            frame["listener_beat"] = self._beat(graph, roles["beat"])
        if "pitch" in roles:
            node = roles["pitch"]
            frame["pitch"] = {"f0_hz": round(_last(graph, f"{node}.f0_hz"), 2),
                              "voiced": _last(graph, f"{node}.voicing") > 0.5}
        if "chords" in roles:
            node = roles["chords"]
            root, quality = int(_last(graph, f"{node}.root")), int(_last(graph, f"{node}.quality"))
            key = int(_last(graph, f"{node}.key"))
            frame["chords"] = {"chord": chord_label(root, max(quality, 0)) if root >= 0 else "N",
                               "key": key_label(key % 12, key // 12) if key >= 0 else "?"}
        return frame

    def _beat(self, graph, node: str) -> dict:
        phase = _last(graph, f"{node}.phase")
        confidence = _last(graph, f"{node}.confidence")
        if phase < self._phase - 0.5 and confidence > 0:  # the phase wrapped: a beat went by
            self.beats_heard += 1
        self._phase = phase
        return {"phase": round(phase, 3), "bpm": round(_last(graph, f"{node}.bpm"), 2),
                "confidence": round(confidence, 3), "next_beat_s": round(_last(graph, f"{node}.next_beat_s"), 4),
                "beats_heard": self.beats_heard}
