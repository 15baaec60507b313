"""Hostile files through the CLI: each one ends in exactly one stderr line naming it, and exit code 2.

Real files in tmp_path: corrupt, swapped and unsigned weights, an endless and
a garbage MIDI file, absurd and fake WAVs, an output path that is a folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from cadenza.engine.cli import main
from cadenza.models.weights import load_weights, save_weights, sha256_path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "models").rglob("*.pt"))


def one_error_line(capsys, argv: list[str]) -> str:
    """Run ``cadenza argv``; assert exit 2 and a single ``cadenza: error:`` line; return that line."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cadenza: error: "), lines
    return lines[0]


def write_patch(path: Path, node: str, audio_inputs: int = 0, route: str = "notes") -> Path:
    """A patch of one node (TOML lines ``node``, id ``n``) that MIDI plays: its ``notes``, its
    ``buttons`` (C4..C5 white keys), or nothing (``route=""``, a listener)."""
    audio = f"[audio]\ninputs = {audio_inputs}\n\n" if audio_inputs else ""
    midi = {"notes": 'notes = { to = "n" }',
            "buttons": 'buttons = { to = "n", notes = [60, 62, 64, 65, 67, 69, 71, 72] }', "": ""}[route]
    path.write_text(f'{audio}[[node]]\nid = "n"\n{node}\n\n[midi]\n{midi}\n')
    return path


def copy_weights(src: Path, dst: Path, sha_of: Path | None = None) -> Path:
    """Copy a weights file to ``dst`` with the recorded digest of ``sha_of`` (default: its own)."""
    shutil.copyfile(src, dst)
    digest = sha256_path(sha_of or src).read_text().split()[0]
    sha256_path(dst).write_text(f"{digest}  {dst.name}\n")
    return dst


@pytest.fixture
def song(tmp_path) -> Path:
    """A one-note MIDI file, half a second long."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track += [mido.Message("note_on", note=60, velocity=100, time=0),
              mido.Message("note_off", note=60, velocity=0, time=480)]
    mid.tracks.append(track)
    mid.save(tmp_path / "song.mid")
    return tmp_path / "song.mid"


# -- weights -------------------------------------------------------------------------------

def test_committed_weights_match_their_recorded_sha256():
    assert len(COMMITTED) >= 6
    for path in COMMITTED:
        assert load_weights(path)  # a state dict or a dict holding one
        check = subprocess.run(["sha256sum", "-c", sha256_path(path).name], cwd=path.parent,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_save_weights_writes_a_file_sha256sum_accepts(tmp_path):
    import torch

    path = tmp_path / "w.pt"
    save_weights({"x": torch.arange(5.0)}, path)
    check = subprocess.run(["sha256sum", "-c", "w.pt.sha256"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout == "w.pt: OK\n", check.stdout + check.stderr
    assert torch.equal(load_weights(path)["x"], torch.arange(5.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt", "w.pt.sha256"]  # no .part left


def test_truncated_weights_are_named_not_loaded(tmp_path, song, capsys):
    weights = copy_weights(ROOT / "models" / "ddsp" / "violin.pt", tmp_path / "violin.pt")
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    patch = write_patch(tmp_path / "p.toml", f'type = "ddsp"\nmodel = "{weights}"')
    line = one_error_line(capsys, ["render", str(patch), "--midi", str(song), "--out", str(tmp_path / "o.wav")])
    assert str(weights) in line and "does not match its recorded sha256" in line
    assert not (tmp_path / "o.wav").exists()


def test_swapped_weights_are_named_not_loaded(tmp_path, song, capsys):
    genie = ROOT / "models" / "genie" / "genie.pt"
    weights = copy_weights(ROOT / "models" / "ddsp" / "flute.pt", tmp_path / "genie.pt", sha_of=genie)
    patch = write_patch(tmp_path / "p.toml", f'type = "genie"\nweights = "{weights}"', route="buttons")
    line = one_error_line(capsys, ["render", str(patch), "--midi", str(song), "--out", str(tmp_path / "o.wav")])
    assert str(weights) in line and "does not match its recorded sha256" in line


def test_weights_without_a_recorded_sha256_are_refused(tmp_path, song, capsys):
    weights = tmp_path / "vocoder.pt"
    shutil.copyfile(ROOT / "models" / "vocoder" / "vocoder.pt", weights)
    patch = write_patch(tmp_path / "p.toml", f'type = "harmonizer"\ninput = "adc"\nweights = "{weights}"', 1)
    line = one_error_line(capsys, ["render", str(patch), "--midi", str(song), "--out", str(tmp_path / "o.wav")])
    assert str(weights) in line and "vocoder.pt.sha256 is missing" in line


def test_another_models_weights_with_their_own_sha256_are_named(tmp_path, capsys):
    buttons = tmp_path / "b.csv"
    buttons.write_text("0.0,1,100\n")
    weights = copy_weights(ROOT / "models" / "ddsp" / "flute.pt", tmp_path / "flute.pt")
    line = one_error_line(capsys, ["genie", str(buttons), "--weights", str(weights)])
    assert str(weights) in line and "not a Piano Genie model" in line


def test_weights_torch_cannot_load_are_named(tmp_path):
    from cadenza.engine.errors import ModelError

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"not a zip archive")
    save_digest = subprocess.run(["sha256sum", "w.pt"], cwd=tmp_path, capture_output=True, text=True, check=True)
    sha256_path(weights).write_text(save_digest.stdout)
    with pytest.raises(ModelError, match=r"w\.pt: cannot load model weights \(") as info:
        load_weights(weights)
    assert "\n" not in str(info.value)


def test_missing_beat_weights_are_one_line(tmp_path, song, capsys):
    missing = tmp_path / "onset_gru.pt"
    patch = write_patch(tmp_path / "p.toml", f'type = "beat"\ninput = "adc"\nweights = "{missing}"', 1, route="")
    line = one_error_line(capsys, ["render", str(patch), "--midi", str(song), "--out", str(tmp_path / "o.wav")])
    assert str(missing) in line and "beat weights not found" in line


# -- MIDI ----------------------------------------------------------------------------------

def test_midi_note_off_77_hours_later_is_refused_before_rendering(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track += [mido.Message("note_on", note=60, velocity=100, time=0),
              mido.Message("note_off", note=60, velocity=0, time=int(mido.second2tick(77 * 3600, 480, 500000)))]
    mid.tracks.append(track)
    song = tmp_path / "long.mid"
    mid.save(song)
    r = subprocess.run([sys.executable, "-m", "cadenza.engine.cli", "render", str(ROOT / "patches" / "default.toml"),
                        "--midi", str(song), "--out", str(tmp_path / "o.wav")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"cadenza: error: {song}: MIDI file lasts 77.0 h, allowed up to 1 h "
                                     "(a stray event far after the music?)"]


def test_garbage_midi_is_one_line(tmp_path, capsys):
    garbage = tmp_path / "garbage.mid"
    garbage.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff\xff\xff\xffgarbage")
    line = one_error_line(capsys, ["render", "default", "--midi", str(garbage), "--out", str(tmp_path / "o.wav")])
    assert f"{garbage}: not a valid MIDI file" in line


# -- audio files ---------------------------------------------------------------------------

def test_out_a_directory_is_one_line(tmp_path, song, capsys):
    patch = write_patch(tmp_path / "p.toml", 'type = "synth"')
    line = one_error_line(capsys, ["render", str(patch), "--midi", str(song), "--out", str(tmp_path),
                                   "--tail", "0.1"])
    assert line == f"cadenza: error: {tmp_path}: is a directory; give a file name, e.g. {tmp_path / 'out.wav'}"


@pytest.mark.parametrize("tool", ["beats", "pitch"])
def test_one_hz_wav_is_refused(tool, tmp_path, capsys):
    wav = tmp_path / "slow.wav"
    sf.write(wav, np.zeros((10, 1), np.float32), 1)
    line = one_error_line(capsys, [tool, str(wav)])
    assert line == f"cadenza: error: {wav}: sample rate 1 Hz, allowed 4000..768000 Hz"


@pytest.mark.parametrize("tool", ["beats", "pitch"])
def test_empty_wav_is_called_empty(tool, tmp_path, capsys):
    wav = tmp_path / "empty.wav"
    sf.write(wav, np.zeros((0, 1), np.float32), 48000)
    assert f"{wav}: empty (0 frames)" in one_error_line(capsys, [tool, str(wav)])


@pytest.mark.parametrize("tool", ["beats", "pitch", "render"])
def test_text_file_named_wav_is_one_line(tool, tmp_path, capsys):
    wav = tmp_path / "notes.wav"
    wav.write_text("this is not audio\n")
    argv = ["render", "default", "--input", str(wav), "--out", str(tmp_path / "o.wav")] if tool == "render" \
        else [tool, str(wav)]
    assert f"{wav}: cannot read audio (" in one_error_line(capsys, argv)


def test_one_hz_input_to_render_is_refused(tmp_path, capsys):
    wav = tmp_path / "slow.wav"
    sf.write(wav, np.zeros((10, 1), np.float32), 1)
    patch = write_patch(tmp_path / "p.toml", 'type = "synth"')
    line = one_error_line(capsys, ["render", str(patch), "--input", str(wav), "--out", str(tmp_path / "o.wav")])
    assert line == f"cadenza: error: {wav}: sample rate 1 Hz, allowed 4000..768000 Hz"


# -- genie CSV -----------------------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe\x00garbage\x00\x81", ": not a text CSV file"),
    (b"0.0,1,100\nnan,2,100\n", ":2: velocity must be 0..127 and time"),
    (b"time,button\n0.0,1,100\n1.0\n", ":3: expected 'time_s, button, velocity'"),
])
def test_malformed_genie_csv_is_one_line(content, problem, tmp_path, capsys):
    csv = tmp_path / "buttons.csv"
    csv.write_bytes(content)
    assert f"{csv}{problem}" in one_error_line(capsys, ["genie", str(csv)])
