"""Shared fixtures. Live-I/O tests run against a private JACK dummy server of their own."""

from __future__ import annotations

import faulthandler
import itertools
import os
import sys
import shutil
import subprocess
import time

import pytest

os.environ.setdefault("JACK_NO_START_SERVER", "1")
os.environ.setdefault("NUMBA_NRT_STATS", "1")  # before numba loads: tests/test_contract.py counts NRT allocations
_counter = itertools.count()
HARD_TIMEOUT_S = 420  # past pytest-timeout's 300 s: for a hang that holds (or lost) the GIL


def pytest_collection_modifyitems(items):
    """Tests that leave a JACK client open in this process run last (marker ``leaves_jack_client``):
    a client abandoned when its server was killed (never closed, by design: libjack must not cancel
    a thread inside Python), or PortAudio's JACK host API, which a backend probe initialises and
    sounddevice keeps. Later JACK tests in the same process died with a segfault in a thread with no
    Python frame (CI, twice; reproduced with the backend-protocol test then one panel test)."""
    items.sort(key=lambda item: item.get_closest_marker("leaves_jack_client") is not None)


@pytest.fixture(autouse=True)
def hang_watchdog():
    """Dump every thread's stack and end the run if one test hangs, even with the GIL lost.

    faulthandler's watchdog is a C thread that needs no GIL, so it also fires when a
    thread cancelled inside Python has taken the GIL with it (pytest-timeout cannot).
    """
    faulthandler.dump_traceback_later(HARD_TIMEOUT_S, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


class JackServer:
    """A private ``jackd -d dummy`` at a given period; stopped (or killed) by its own test only."""

    def __init__(self, period: int, rate: int = 48000):
        self.name = f"cadenza-test-{os.getpid()}-{next(_counter)}"
        self.period = period
        self.rate = rate
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, "-R", "-d", "dummy", "-r", str(rate), "-p", str(period)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = dict(os.environ, JACK_DEFAULT_SERVER=self.name)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jackd {self.name} exited with {self.proc.returncode}")
            ok = subprocess.run(["jack_wait", "-c"], env=env, capture_output=True, text=True)
            if "running" in ok.stdout and "not running" not in ok.stdout:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"jackd {self.name} did not come up")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Kill the server outright, as a crash would."""
        self.proc.kill()
        self.proc.wait(5)
        self.killed = True

    def _reclaim(self) -> None:
        """Free the registry slot a killed server leaves behind.

        JACK keeps at most 8 servers in its shared registry and reclaims a dead one's
        slot only when a server of the same name starts: after 8 kills under unique
        names (and once PIDs wrap) no jackd starts on the machine. A brief server of
        the same name, stopped cleanly, gives the slot back.
        """
        proc = subprocess.Popen(["jackd", "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = dict(os.environ, JACK_DEFAULT_SERVER=self.name)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if subprocess.run(["jack_wait", "-c"], env=env, capture_output=True, text=True).stdout.startswith("running"):
                break
            time.sleep(0.1)
        proc.terminate()
        proc.wait(10)

    def stop(self) -> None:
        if getattr(self, "killed", False):
            self.killed = False
            self._reclaim()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def jack_server(monkeypatch):
    """Factory: ``jack_server(period=128)`` starts a private server and points clients at it."""
    if shutil.which("jackd") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jackd is not installed: CI must install jackd2 (never skip live-I/O tests there)")
        pytest.skip("jackd is not installed")
    servers: list[JackServer] = []

    def start(period: int = 128, rate: int = 48000) -> JackServer:
        server = JackServer(period, rate)
        servers.append(server)
        monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)
        return server

    yield start
    for server in servers:
        server.stop()
