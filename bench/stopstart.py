"""Stop never hangs: start/stop a live backend hundreds of times, and kill its server while it plays.

``python -m bench.stopstart`` runs, on a private JACK dummy server (128 frames):

- ``jack``: ``--cycles`` start/play/stop/close cycles of the JACK backend in one
  process, while another Python thread keeps the GIL busy and OSC notes flow in
  over UDP;
- ``portaudio``: the same through PortAudio's JACK host API (sounddevice);
- ``kill``: ``--kills`` times, the server is killed while the engine plays (with
  the same busy thread); the engine must notice and return.

Each run is a child process with a deadline: a child that does not finish in
time has hung (its stacks are dumped by faulthandler first). ``--runs`` repeats
each mode. Writes ``bench/results/stopstart.json`` and a markdown table.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.jackprobe import PrivateServer

RESULTS = Path(__file__).resolve().parent / "results"
PATCH = """
[patch]
description = "stop/start bench: one synth"
[[node]]
id = "piano"
type = "synth"
voices = 8
[midi]
notes = { to = "piano" }
[osc]
listen = "127.0.0.1:0"
send = []
"""


def _busy(stop: threading.Event) -> None:
    """Keeps the GIL as busy as a heavy control thread would."""
    while not stop.is_set():
        sum(i * i for i in range(2000))


def _osc_sender(port: int, stop: threading.Event) -> None:
    from cadenza.engine.control.osc import build_message

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    on, off = build_message("/cadenza/note", [60, 100]), build_message("/cadenza/note", [60, 0])
    while not stop.is_set():
        sock.sendto(on, ("127.0.0.1", port))
        sock.sendto(off, ("127.0.0.1", port))
        time.sleep(0.002)
    sock.close()


def child(mode: str, cycles: int, play_s: float, patch_path: Path) -> dict:
    """Run in the child process: the cycles of one mode; returns figures."""
    from cadenza.engine.backends import backend_class
    from cadenza.engine.control import ControlLayer, ControlOptions
    from cadenza.engine.engine import Engine
    from cadenza.engine.patch import load_patch

    cls = backend_class("portaudio" if mode == "portaudio" else "jack")
    engine = Engine(load_patch(patch_path), 48000, 128)
    layer = ControlLayer(engine, None, ControlOptions(midi=False))
    layer.start()
    stop = threading.Event()
    threads = [threading.Thread(target=_busy, args=(stop,), daemon=True),
               threading.Thread(target=_osc_sender, args=(layer.osc_in.address[1], stop), daemon=True)]
    for thread in threads:
        thread.start()
    stop_ms = []
    blocks = []
    try:
        for _ in range(cycles):
            backend = cls(engine, record=False) if mode == "portaudio" else cls(engine, record=False, connect="none")
            before = engine.stats.blocks
            backend.run(None if mode == "kill" else play_s)
            t0 = time.perf_counter()
            backend.close()
            stop_ms.append((time.perf_counter() - t0) * 1e3)
            blocks.append(engine.stats.blocks - before)
            if mode == "kill" and getattr(backend, "dead", None) is None:
                raise RuntimeError("run() returned but the server is not reported dead")
    finally:
        stop.set()
        layer.stop()
        engine.close()
    return {"cycles": cycles, "close_ms_median": sorted(stop_ms)[len(stop_ms) // 2],
            "close_ms_max": max(stop_ms), "blocks_min": min(blocks), "osc_received": layer.osc_in.received}


def wait_port(server: PrivateServer, port: str, timeout_s: float) -> None:
    """Wait until ``port`` exists on ``server`` (or ``timeout_s`` passes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port in subprocess.run(["jack_lsp"], env=server.env, capture_output=True, text=True).stdout.split():
            return
        time.sleep(0.1)


def run_child(mode: str, cycles: int, server: PrivateServer, patch_path: Path, deadline_s: float,
              kill_after_s: float = 0.5) -> dict:
    """One child run; {"hung": True} when it missed its deadline."""
    cmd = [sys.executable, "-m", "bench.stopstart", "--child", mode, "--cycles", str(cycles),
           "--patch", str(patch_path)]
    proc = subprocess.Popen(cmd, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    if mode == "kill":  # the child plays one cycle per server life; restart it for the next
        wait_port(server, "cadenza:out_L", deadline_s)
        time.sleep(kill_after_s)
        server.kill()
    try:
        out, err = proc.communicate(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"hung": True, "stderr_tail": err[-2000:]}
    if proc.returncode != 0:
        return {"hung": False, "failed": proc.returncode, "stderr_tail": err[-2000:]}
    return {"hung": False, **json.loads(out.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--modes", default="jack,portaudio,kill")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where stopstart.json goes")
    parser.add_argument("--child", choices=["jack", "portaudio", "kill"], help=argparse.SUPPRESS)
    parser.add_argument("--patch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        faulthandler.dump_traceback_later(600, exit=True)
        print(json.dumps(child(args.child, args.cycles, 0.02, args.patch)))
        return 0
    args.results.mkdir(parents=True, exist_ok=True)
    workdir = tempfile.TemporaryDirectory(prefix="cadenza-stopstart-")
    patch_path = Path(workdir.name) / "synth.toml"
    patch_path.write_text(PATCH)
    server = PrivateServer(f"cadenza-stopstart-{os.getpid()}")
    rows = []
    try:
        for mode in args.modes.split(","):
            runs = args.kills if mode == "kill" else args.runs
            cycles = 1 if mode == "kill" else args.cycles
            results = []
            for _ in range(runs):
                server.start()
                results.append(run_child(mode, cycles, server, patch_path, deadline_s=20 + cycles * 0.5))
                server.stop()
            done = [r for r in results if not r["hung"] and "failed" not in r]
            rows.append({"mode": mode, "runs": runs, "cycles_per_run": cycles,
                         "cycles": sum(r["cycles"] for r in done), "hangs": sum(r["hung"] for r in results),
                         "failures": sum("failed" in r for r in results),
                         "close_ms_median": max((r["close_ms_median"] for r in done), default=None),
                         "close_ms_max": max((r["close_ms_max"] for r in done), default=None),
                         "problems": [r["stderr_tail"] for r in results if "stderr_tail" in r][:3]})
            print(f"{mode}: {rows[-1]['cycles']} cycles, {rows[-1]['hangs']} hangs, "
                  f"{rows[-1]['failures']} failures", file=sys.stderr, flush=True)
    finally:
        server.stop()
        server.release()
        workdir.cleanup()
    (args.results / "stopstart.json").write_text(json.dumps(rows, indent=2))
    print("| mode | runs × cycles | cycles done | hangs | failures | close ms median (worst run) | close ms max |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['runs']} × {r['cycles_per_run']} | {r['cycles']} | {r['hangs']} | {r['failures']} "
              f"| {r['close_ms_median'] or 0:.1f} | {r['close_ms_max'] or 0:.1f} |")
    return 0 if all(r["hangs"] == 0 and r["failures"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
