"""Patch switching among a patch list (a [set] table or a folder): /cadenza/patch by name or index,
MIDI program change over real JACK MIDI, names only (never paths), each through the reload path."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from bench.jackprobe import JackProbe
from cadenza.engine.backends.null import NullBackend
from cadenza.engine.control import ControlOptions
from cadenza.engine.control.patchset import PatchSet, PatchSetError
from cadenza.engine.engine import Engine
from cadenza.engine.patch import PATCH_DIR, PatchError, load_patch
from tests.helpers import osc_send, playing, wait_for

SET_PATCH = """
[patch]
description = "first of a set"
[[node]]
id = "piano"
type = "synth"
[midi]
notes = {{ to = "piano" }}
[osc]
listen = "127.0.0.1:0"
send = []
{set_table}
"""


def write_set(folder: Path, set_table: str = '[set]\npatches = ["first", "genie", "second"]') -> Path:
    """first.toml (with ``set_table``) and second.toml in ``folder``; genie comes from patches/."""
    folder.mkdir(exist_ok=True)
    (folder / "first.toml").write_text(SET_PATCH.format(set_table=set_table))
    (folder / "second.toml").write_text(SET_PATCH.format(set_table="").replace("first of a set", "second"))
    return folder / "first.toml"


def test_a_set_resolves_names_beside_the_patch_then_shipped_and_indices_in_order(tmp_path):
    patch_set = PatchSet(load_patch(write_set(tmp_path)))
    assert patch_set.names == ["first", "genie", "second"] and patch_set.program_switches
    assert patch_set.resolve("genie") == PATCH_DIR / "genie.toml"
    assert patch_set.resolve(2) == tmp_path / "second.toml"
    for bad in ("../first", "/etc/passwd", "nope", 3, -1, None, True, 1.5):
        with pytest.raises(PatchSetError) as err:
            patch_set.resolve(bad)
        assert "\n" not in str(err.value) and "allowed" in str(err.value)


def test_without_a_set_the_folder_is_the_list_and_program_change_stays_with_the_patch(tmp_path):
    patch_set = PatchSet(load_patch(write_set(tmp_path, set_table="")))
    assert patch_set.names == ["first", "second"] and not patch_set.program_switches
    shipped = PatchSet(load_patch("genie"))
    assert "genie_listen" in shipped.names and "default" in shipped.names


@pytest.mark.parametrize("bad", ['patches = ["../secrets"]', 'patches = ["/etc/passwd"]', 'patches = ["x.toml"]',
                                 'patches = ["a"]\nfolder = "b"'])
def test_a_set_with_a_path_in_it_does_not_load(tmp_path, bad):
    with pytest.raises(PatchError) as err:
        load_patch(write_set(tmp_path, "[set]\n" + bad))
    assert "set." in str(err.value) and "\n" not in str(err.value)


def test_osc_patch_switches_by_name_and_index_and_refuses_what_is_not_listed(tmp_path):
    engine = Engine(load_patch(write_set(tmp_path)))
    backend = NullBackend(engine, record=False)
    try:
        with playing(engine, backend, ControlOptions(midi=False)) as layer:
            port = layer.osc_in.address[1]
            osc_send(port, "/cadenza/patch", "genie")
            assert wait_for(lambda: engine.patch.name == "genie" and engine.stats.swaps == 1)
            osc_send(port, "/cadenza/patch", 2)
            assert wait_for(lambda: engine.patch.name == "second" and engine.stats.swaps == 2)
            for bad in ("../../etc/passwd", "nope", 7):
                osc_send(port, "/cadenza/patch", bad)
            assert wait_for(lambda: layer.log.counts.get("osc-args", 0) == 3)
            time.sleep(0.2)
            assert engine.patch.name == "second" and engine.stats.swaps == 2
            blocks = engine.stats.blocks
            assert wait_for(lambda: engine.stats.blocks > blocks + 20)
    finally:
        backend.close()
        engine.close()


def test_jack_midi_program_change_switches_within_the_set(jack_server, tmp_path):
    from cadenza.engine.backends.jack import JackBackend

    server = jack_server(128)
    engine = Engine(load_patch(write_set(tmp_path)), block=server.period)
    backend = JackBackend(engine, connect="none", record=False)
    sender = JackProbe("sender", midi_out=True)
    try:
        with playing(engine, backend, ControlOptions(osc=False)) as layer:
            sender.connect("sender:midi_out", "cadenza:midi_in")
            time.sleep(0.3)  # the connection is in the JACK graph by then

            def program(number: int) -> None:
                """Send a program change; again only if the engine never saw it (JACK drops the MIDI of a
                cycle that ran late on a loaded machine: once here in 7 full runs). What the engine does
                with one it saw is what the test asserts."""
                for _ in range(5):
                    seen_map, seen = engine.midi_map, engine.midi_map.programs_seen
                    sender.schedule([(0, bytes([0xC0, number]))])
                    if wait_for(lambda: engine.midi_map is not seen_map or engine.midi_map.programs_seen > seen, 1.0):
                        return

            program(1)
            assert wait_for(lambda: engine.patch.name == "genie" and engine.stats.swaps == 1)
            program(2)
            assert wait_for(lambda: engine.patch.name == "second" and engine.stats.swaps == 2)
            program(0)
            assert wait_for(lambda: engine.patch.name == "first" and engine.stats.swaps == 3)
            program(9)  # no 10th patch: one line, the patch plays on
            assert wait_for(lambda: layer.log.counts.get("program", 0) == 1)
            assert engine.patch.name == "first" and layer.reloads_done == 3
    finally:
        sender.close()
        backend.close()
        engine.close()


def test_program_change_without_a_set_does_not_switch(tmp_path):
    shutil.copy(PATCH_DIR / "genie.toml", tmp_path / "genie.toml")
    engine = Engine(load_patch(write_set(tmp_path, set_table="")))
    backend = NullBackend(engine, record=False)
    try:
        with playing(engine, backend, ControlOptions(midi=False)) as layer:
            osc_send(layer.osc_in.address[1], "/cadenza/program", 1)
            assert wait_for(lambda: engine.midi_map.programs_seen == 1)
            time.sleep(0.3)
            assert engine.patch.name == "first" and engine.stats.swaps == 0
    finally:
        backend.close()
        engine.close()
