import pytest

from cadenza.engine.patch import PatchError, list_patches, load_patch, parse_patch
from tests.helpers import SYNTH_ONLY


def _error(text: str, tmp_path) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PatchError) as info:
        load_patch(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_every_shipped_patch_loads():
    patches = list_patches()
    assert "default" in dict(patches)
    for name, description in patches:
        assert not description.startswith("BROKEN"), description
        load_patch(name)


def test_syntax_error_names_the_line(tmp_path):
    msg = _error('[patch]\ndescription = "x"\n[[node]]\nid = \n', tmp_path)
    assert "not valid TOML" in msg and "line 4" in msg


def test_unknown_key_names_key_line_found_and_allowed(tmp_path):
    msg = _error(SYNTH_ONLY.replace('wave = "saw"', 'wave = "saw"\nvoicez = 8'), tmp_path)
    assert "node.piano.voicez" in msg and "line 8" in msg and "voices" in msg


def test_out_of_range_value(tmp_path):
    msg = _error(SYNTH_ONLY.replace('wave = "saw"', 'voices = 0'), tmp_path)
    assert "node.piano.voices" in msg and "found 0" in msg and "1..64" in msg


def test_bad_choice(tmp_path):
    msg = _error(SYNTH_ONLY.replace('wave = "saw"', 'wave = "kazoo"'), tmp_path)
    assert "'kazoo'" in msg and "'sine'" in msg


def test_unknown_node_type(tmp_path):
    msg = _error(SYNTH_ONLY.replace('type = "synth"', 'type = "theremin"'), tmp_path)
    assert "theremin" in msg and "synth" in msg


def test_route_to_missing_node(tmp_path):
    msg = _error(SYNTH_ONLY.replace('notes = { to = "piano" }', 'notes = { to = "organ" }'), tmp_path)
    assert "midi.notes.to" in msg and "'organ'" in msg


def test_cc_to_unknown_param(tmp_path):
    msg = _error(SYNTH_ONLY + 'cc = { 74 = "piano.wobble" }\n', tmp_path)
    assert "midi.cc.74" in msg and "piano.cutoff" in msg


def test_input_from_missing_node(tmp_path):
    text = SYNTH_ONLY + '[[node]]\nid = "fx"\ntype = "pyo_rack"\ninput = "nowhere"\n'
    msg = _error(text, tmp_path)
    assert "node.fx.input" in msg and "'nowhere'" in msg


def test_bad_effect_in_chain(tmp_path):
    from cadenza.engine.engine import Engine

    text = SYNTH_ONLY + '[[node]]\nid = "fx"\ntype = "pyo_rack"\ninput = "piano"\nchain = [{ effect = "Flanger9000" }]\n'
    with pytest.raises(PatchError) as info:
        Engine(parse_patch(text, tmp_path / "fx.toml"))
    assert "Flanger9000" in str(info.value) and "Freeverb" in str(info.value)


def test_cycle_is_refused(tmp_path):
    from cadenza.engine.engine import Engine

    text = """
[[node]]
id = "a"
type = "pyo_rack"
input = "b"
[[node]]
id = "b"
type = "pyo_rack"
input = "a"
"""
    with pytest.raises(PatchError):
        Engine(parse_patch(text, tmp_path / "cycle.toml"))


def test_patch_with_no_nodes(tmp_path):
    assert "at least one [[node]]" in _error('[patch]\ndescription = "empty"\n', tmp_path)


def test_patches_command_lists_descriptions(capsys):
    from cadenza.engine.cli import main

    assert main(["patches"]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "synth" in out.lower()
