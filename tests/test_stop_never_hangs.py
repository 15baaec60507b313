"""Stop never hangs: hundreds of start/stop cycles with the GIL busy and OSC flowing, and dying servers.

Each mode runs ``bench.stopstart`` in a child process with a deadline (a hang
there is a failure here, with the child's stacks, never a hung suite).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode,args", [("jack", ["--cycles", "200"]), ("portaudio", ["--cycles", "200"]),
                                       ("kill", ["--kills", "3"])])
def test_start_stop_cycles_and_dying_servers_never_hang(mode, args, tmp_path):
    if shutil.which("jackd") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jackd is not installed: CI must install jackd2 (never skip live-I/O tests there)")
        pytest.skip("jackd is not installed")
    proc = subprocess.run([sys.executable, "-m", "bench.stopstart", "--runs", "1", "--modes", mode, *args,
                           "--results", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=280)
    rows = json.loads((tmp_path / "stopstart.json").read_text())
    (row,) = rows
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:] + "\n".join(row["problems"])
    expected = 3 if mode == "kill" else 200
    assert row["hangs"] == 0 and row["failures"] == 0 and row["cycles"] == expected, row
