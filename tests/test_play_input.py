"""``cadenza play PATCH --input FILE.wav [--loop]``: a file as the live audio input, on the null
backend and on a real JACK server, heard by a pitch listener whose reports come back over OSC."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.helpers import drain, receiver

REPO = Path(__file__).resolve().parent.parent

LISTENER_PATCH = """
[patch]
description = "a pitch listener on the audio input"
[[node]]
id = "mic"
type = "pitch"
input = "adc"
events_hz = 20.0
[osc]
listen = "127.0.0.1:0"
send = ["127.0.0.1:{port}"]
"""


def sine_file(tmp_path: Path, seconds: float, hz: float = 440.0, rate: int = 44100) -> Path:
    """A mono sine at ``hz`` (at 44.1 kHz, so the engine's 48 kHz means a resample)."""
    t = np.arange(int(seconds * rate)) / rate
    path = tmp_path / "sine.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * hz * t), rate)
    return path


def play(tmp_path: Path, args: list[str], seconds_allowed: float = 60.0) -> tuple[subprocess.CompletedProcess, list]:
    """Run ``cadenza play`` with the listener patch until it ends by itself (within ``seconds_allowed``,
    or ``communicate`` times out): (process, [(arrival monotonic s, address, args)] of its OSC)."""
    out = receiver()
    patch = tmp_path / "listen.toml"
    patch.write_text(LISTENER_PATCH.format(port=out.getsockname()[1]))
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "cadenza.engine.cli", "play", str(patch), "--no-midi",
                             "--quiet", *args], cwd=REPO, env=dict(os.environ), stderr=subprocess.PIPE, text=True)
    reports = []
    try:
        while proc.poll() is None and time.monotonic() - started < seconds_allowed:
            reports += [(time.monotonic(), address, params) for address, params in drain(out, 0.2)]
        stderr = proc.communicate(timeout=20)[1]
    finally:
        proc.kill()
        out.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), reports


def voiced_f0(reports: list) -> np.ndarray:
    return np.array([params[0] for _, address, params in reports if address == "/cadenza/pitch" and params[1]])


def test_a_file_played_once_is_the_input_and_the_show_ends_with_it(tmp_path):
    proc, reports = play(tmp_path, ["--backend", "null", "--input", str(sine_file(tmp_path, 1.5))])
    assert proc.returncode == 0, proc.stderr
    f0 = voiced_f0(reports)
    assert len(f0) >= 20 and np.all(np.abs(f0 - 440.0) < 4.0), f0


def test_a_looped_file_keeps_feeding_the_input_on_jack(jack_server, tmp_path):
    jack_server(128)
    args = ["--backend", "jack", "--connect", "none", "--input", str(sine_file(tmp_path, 0.4, hz=330.0)),
            "--loop", "--seconds", "3"]
    proc, reports = play(tmp_path, args)
    assert proc.returncode == 0, proc.stderr
    voiced = [t for t, address, params in reports if address == "/cadenza/pitch" and params[1]]
    f0 = voiced_f0(reports)
    assert np.all(np.abs(f0 - 330.0) < 3.0), f0
    assert voiced[-1] - voiced[0] > 2.0  # still voiced long after the 0.4 s file's first pass


def test_loop_without_input_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cadenza.engine.cli", "play", "--backend", "null", "--loop"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "--loop" in proc.stderr and "--input" in proc.stderr
