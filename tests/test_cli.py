"""The ``cadenza`` command, run as a user runs it: a subprocess, exit codes, files."""

import subprocess
import sys

import mido
import numpy as np
import soundfile as sf


def cadenza(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "cadenza.engine.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _midi_file(path):
    mid = mido.MidiFile()
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for i, note in enumerate([60, 64, 67]):
        track.append(mido.Message("note_on", note=note, velocity=90, time=0 if i == 0 else 120))
    track.append(mido.Message("control_change", control=64, value=127, time=10))
    track.append(mido.Message("pitchwheel", pitch=2000, time=100))
    for note in [60, 64, 67]:
        track.append(mido.Message("note_off", note=note, velocity=0, time=60))
    mid.save(path)
    return path


def test_render_twice_gives_identical_bytes(tmp_path):
    mid = _midi_file(tmp_path / "in.mid")
    for name in ("a.wav", "b.wav"):
        r = cadenza("render", "patches/default.toml", "--midi", mid, "--out", tmp_path / name, "--tail", "0.5")
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    audio, sr = sf.read(tmp_path / "a.wav")
    assert sr == 48000 and np.abs(audio).max() > 0.01


def test_render_input_audio_is_resampled_to_the_patch_rate(tmp_path):
    sr_in = 44100
    t = np.arange(sr_in) / sr_in
    sf.write(tmp_path / "in.wav", 0.3 * np.sin(2 * np.pi * 441 * t), sr_in)
    r = cadenza("render", "patches/default.toml", "--input", tmp_path / "in.wav", "--out", tmp_path / "o.wav",
                "--tail", "0")
    assert r.returncode == 0, r.stderr
    assert sf.info(tmp_path / "o.wav").frames == 48000


def test_bad_midi_file_gives_one_line_error_and_no_output(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06garbage!!")
    r = cadenza("render", "default", "--midi", bad, "--out", tmp_path / "o.wav")
    assert r.returncode == 2
    assert "bad.mid" in r.stderr and "not a valid MIDI file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.wav").exists()
    r = cadenza("render", "default", "--midi", tmp_path / "missing.mid", "--out", tmp_path / "o.wav")
    assert r.returncode == 2 and "no such MIDI file" in r.stderr


def test_broken_patch_gives_one_line_error(tmp_path):
    patch = tmp_path / "broken.toml"
    patch.write_text('[[node]]\nid = "x"\ntype = "synth"\nvoices = "many"\n')
    r = cadenza("render", patch, "--midi", _midi_file(tmp_path / "in.mid"), "--out", tmp_path / "o.wav")
    assert r.returncode == 2
    assert "node.x.voices (line 4)" in r.stderr and "an integer" in r.stderr
    assert not (tmp_path / "o.wav").exists()


def test_render_needs_an_input(tmp_path):
    r = cadenza("render", "default", "--out", tmp_path / "o.wav")
    assert r.returncode == 2 and "--midi" in r.stderr


def test_play_on_null_backend_records_what_it_played(tmp_path):
    r = cadenza("play", "default", "--backend", "null", "--seconds", "1", "--record", tmp_path / "p.wav")
    assert r.returncode == 0, r.stderr
    assert abs(sf.info(tmp_path / "p.wav").duration - 1.0) < 0.01


def test_demo_writes_a_wav_of_the_performance(tmp_path):
    r = cadenza("demo", "--backend", "null", "--seconds", "4", "--out", tmp_path / "demo.wav")
    assert r.returncode == 0, r.stderr
    audio, sr = sf.read(tmp_path / "demo.wav")
    assert audio.shape[0] == 4 * sr and np.abs(audio).max() > 0.05
