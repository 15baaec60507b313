"""Latency of the live path, inside real JACK graphs (private ``jackd -d dummy`` servers).

For each period (64 and 128 frames at 48 kHz) this starts its own JACK server,
plays a bare square-wave synth patch with ``cadenza play --backend jack`` in a
separate process, records the engine's ``out_L`` with a capture client, and
measures, as DESIGN.md defines them:

(a) engine-added latency: a JACK-Client sender writes note-ons at chosen frame
    offsets; latency = onset frame − event frame (minus the onset detector's
    own delay, measured offline on the same patch); spread across offsets;
(b) wall-clock latency from a python-rtmidi JACK port and (c) from OSC over UDP,
    each sent by a separate process: onset time − send time, where the onset
    time is when the capture client woke up for the onset's cycle, plus the
    onset's offset in it; a sound card adds its output buffer on top, the same
    for every path;
(d) OSC bundles with a future timetag: onset frame − timetag frame, spread;
(e) xruns the engine's client saw (JACK's xrun callback) over its whole run.

    python -m bench.latency [--quick]

Writes bench/results/latency.json, bench/results/latency.png and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
RATE = 48000
PERIODS = (64, 128)
MATCH_S = 0.03  # the nearest onset within ±30 ms of a send is its note (notes are 60-90 ms apart); else a miss

PATCH = """
[patch]
description = "latency bench: a bare square-wave synth, no effects"
[[node]]
id = "piano"
type = "synth"
voices = 8
wave = "square"
cutoff = 20000.0
attack = 0.001
decay = 0.05
sustain = 0.8
release = 0.001
[midi]
notes = { to = "piano" }
[osc]
listen = "127.0.0.1:%d"
send = []
"""


# -- the sender processes ----------------------------------------------------------------


def send_midi(count: int) -> None:
    """Child: an rtmidi JACK output port ``rtsender``; waits for a line on stdin, then plays."""
    import rtmidi

    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "rtsender")
    out.open_virtual_port("out")
    print("ready", flush=True)
    sys.stdin.readline()
    rng = random.Random(1)
    sent = []
    for _ in range(count):
        t = time.monotonic()
        out.send_message([0x90, 60, 100])
        sent.append(t)
        time.sleep(0.02)
        out.send_message([0x80, 60, 0])
        time.sleep(rng.uniform(0.04, 0.07))
    time.sleep(0.2)
    print(json.dumps(sent), flush=True)


def send_osc(port: int, count: int, timetag: bool) -> None:
    """Child: OSC notes over UDP, plain or as bundles timetagged 30-60 ms ahead."""
    import socket

    from pythonosc.osc_bundle_builder import OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder

    def message(vel: int):
        msg = OscMessageBuilder("/cadenza/note")
        msg.add_arg(60)
        msg.add_arg(vel)
        return msg.build()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(2)
    sent = []
    for _ in range(count):
        if timetag:
            wall, mono = time.time(), time.monotonic()
            ahead = rng.uniform(0.03, 0.06)
            for vel, dt in ((100, 0.0), (0, 0.02)):
                bundle = OscBundleBuilder(wall + ahead + dt)
                bundle.add_content(message(vel))
                sock.sendto(bundle.build().dgram, ("127.0.0.1", port))
            sent.append(mono + ahead)
        else:
            t = time.monotonic()
            sock.sendto(message(100).dgram, ("127.0.0.1", port))
            sent.append(t)
            time.sleep(0.02)
            sock.sendto(message(0).dgram, ("127.0.0.1", port))
        time.sleep(rng.uniform(0.06, 0.09) if timetag else rng.uniform(0.04, 0.07))
    time.sleep(0.2)
    print(json.dumps(sent), flush=True)


def run_engine(patch: str, stats_path: str) -> None:
    """Child: ``cadenza play`` on JACK until SIGINT, then the engine's counters as JSON."""
    from cadenza.engine.cli import play
    from cadenza.engine.control import ControlOptions

    seen = {}
    play(patch, "jack", None, None, script=lambda e: seen.setdefault("engine", e), status=False,
         control=ControlOptions(midi=False), connect="none")
    s = seen["engine"].stats
    Path(stats_path).write_text(json.dumps({"xruns": s.xruns, "blocks": s.blocks, "late": s.deadline_misses,
                                            "load_max": s.load_max, "errors": s.errors}))


# -- the conductor -----------------------------------------------------------------------


def _child(args: list[str], env, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.latency", *args], cwd=REPO, env=env, text=True, **kw)


def _wait_port(client, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_ports(name):
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {name} did not appear")


def _frame_to_time(cycles: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """JACK frame times → monotonic seconds, through each cycle's filtered start time."""
    i = np.clip(np.searchsorted(cycles[:, 0], frames, side="right") - 1, 0, len(cycles) - 1)
    return cycles[i, 1] + (frames - cycles[i, 0]) / RATE


def _time_to_frame(cycles: np.ndarray, times: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(cycles[:, 1], times, side="right") - 1, 0, len(cycles) - 1)
    return cycles[i, 0] + (times - cycles[i, 1]) * RATE


def _match(starts: np.ndarray, found: np.ndarray, window: float) -> np.ndarray:
    """For each start, the first onset at or after it within ``window`` (same units), else NaN."""
    out = np.full(len(starts), np.nan)
    for k, s in enumerate(starts):
        j = np.searchsorted(found, s - 1e-9)
        if j < len(found) and found[j] - s <= window:
            out[k] = found[j]
    return out


def _nearest(targets: np.ndarray, found: np.ndarray, window: float) -> np.ndarray:
    """For each target, the nearest onset within ± ``window``, else NaN (early counts too)."""
    out = np.full(len(targets), np.nan)
    for k, t in enumerate(targets):
        j = int(np.argmin(np.abs(found - t))) if len(found) else -1
        if j >= 0 and abs(found[j] - t) <= window:
            out[k] = found[j]
    return out


def _clean(found: np.ndarray, cycles: np.ndarray, period: int) -> tuple[np.ndarray, int]:
    """Drop onsets in a cycle whose previous cycle the capture client missed (an xrun):
    there the capture holds silence where sound was, and the onset it sees is late."""
    frames = cycles[:, 0].astype(np.int64)
    seen = set(frames.tolist())
    start = frames[np.clip(np.searchsorted(frames, found, side="right") - 1, 0, len(frames) - 1)]
    ok = np.array([c in seen and c - period in seen for c in start.tolist()], bool)
    return found[ok], int((~ok).sum())


def _stats_ms(lat_s: np.ndarray, sent: int) -> dict:
    ms = lat_s[np.isfinite(lat_s)] * 1e3
    if ms.size == 0:
        return {"median_ms": None, "p99_ms": None, "max_ms": None, "jitter_ms": None, "count": 0, "sent": sent}
    p1, p50, p99 = np.percentile(ms, [1, 50, 99])
    return {"median_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3), "max_ms": round(float(ms.max()), 3),
            "jitter_ms": round(float(p99 - p1), 3), "count": int(ms.size), "sent": sent}


def measure(period: int, quick: bool, workdir: Path) -> tuple[dict, dict]:
    from bench.jackprobe import JackProbe, PrivateServer, onset_delay, onsets

    n_engine = 32 if quick else 128
    n_wall = 40 if quick else 300
    hold_s = 5.0 if quick else 60.0  # the engine's whole run is at least this long (xrun count)
    baseline_s = 5.0 if quick else 30.0
    osc_port = 18000 + period
    patch = workdir / f"latency-{period}.toml"
    patch.write_text(PATCH % osc_port)
    delay = onset_delay(patch)
    server = PrivateServer(f"cadenza-bench-{os.getpid()}-{period}", period, RATE)
    server.start()
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    stats_path = workdir / f"stats-{period}.json"
    probes = []
    engine = None
    try:
        # the server with only the capture client first, to tell the machine's xruns from the engine's
        capture = JackProbe("capture", audio_in=True, capture_s=hold_s + 180, count_xruns=True)
        probes.append(capture)
        time.sleep(baseline_s)
        baseline_xruns = capture.xruns
        engine = _child(["--engine", str(patch), str(stats_path)], server.env)
        t_start = time.monotonic()
        _wait_port(capture.client, "cadenza:out_L")
        time.sleep(1.0)
        capture.connect("cadenza:out_L", "capture:audio_in")
        # (a) engine-added latency at chosen frame offsets, one note per ~60 ms
        sender = JackProbe("sender", midi_out=True)
        probes.append(sender)
        sender.connect("sender:midi_out", "cadenza:midi_in")
        gap = max(1, round(0.06 * RATE / period))
        offsets = [round(k * (period - 1) / (n_engine - 1)) for k in range(n_engine)]
        for off in offsets:
            sender.schedule([(off, bytes([0x90, 60, 100]))], *[[]] * (gap // 3 - 1),
                            [(off, bytes([0x80, 60, 0]))], *[[]] * (gap - gap // 3 - 1))
        while sender.queue:
            time.sleep(0.05)
        time.sleep(0.2)
        # (b) rtmidi from another process, into the same JACK MIDI port
        rt = _child(["--send-midi", str(n_wall)], server.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert rt.stdout.readline().strip() == "ready"
        _wait_port(capture.client, "rtsender:out")
        capture.connect("rtsender:out", "cadenza:midi_in")
        rt.stdin.write("go\n")
        rt.stdin.flush()
        midi_sent = np.array(json.loads(rt.stdout.readline()))
        rt.wait(10)
        # (c) OSC over UDP, (d) timetagged OSC bundles
        osc_sent = np.array(json.loads(_child(["--send-osc", str(osc_port), str(n_wall)], server.env,
                                              stdout=subprocess.PIPE).communicate(timeout=300)[0]))
        tag_sent = np.array(json.loads(_child(["--send-osc-timetag", str(osc_port), str(n_wall)], server.env,
                                              stdout=subprocess.PIPE).communicate(timeout=300)[0]))
        time.sleep(max(0.5, hold_s - (time.monotonic() - t_start)))
    finally:
        if engine is not None:
            engine.send_signal(signal.SIGINT)
            engine.wait(30)
        audio, frame0 = probes[0].audio() if probes else (np.zeros(0), 0)
        cycles = np.array(probes[0].cycles if probes else [], dtype=np.float64).reshape(-1, 4)
        for probe in probes:
            probe.close()
        server.stop()
    found = onsets(audio, gap=period * 4).astype(np.int64) + frame0 - delay  # note starts, JACK frames
    found, dropped = _clean(found, cycles, period)
    note_on_frames = np.array([f for f, d in sender.sent if d[0] == 0x90], np.int64)
    added = _match(note_on_frames, found, 4 * period) - note_on_frames
    # wall-clock: when the capture client woke up for the onset's cycle (+ offset), as observed, so a
    # late cycle counts late (JACK's own time estimates jump at xruns); timetags: the smoothed map
    # the engine schedules with
    found_t = _frame_to_time(cycles[:, [0, 3]], found.astype(np.float64))
    tag_frames = _time_to_frame(cycles[:, [0, 1]], tag_sent)
    tag_lat = _nearest(tag_frames, found.astype(np.float64), 2 * period) - tag_frames
    midi_lat = _nearest(midi_sent, found_t, MATCH_S) - midi_sent
    osc_lat = _nearest(osc_sent, found_t, MATCH_S) - osc_sent
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    fin = added[np.isfinite(added)]
    tag_fin = tag_lat[np.isfinite(tag_lat)]
    row = {
        "block": period,
        "floor_ms": round(period / RATE * 1e3, 3),
        "engine": {"added_frames": float(np.median(fin)) if fin.size else None,
                   "spread_frames": float(fin.max() - fin.min()) if fin.size else None,
                   "count": int(fin.size), "offsets": len(offsets), "detector_frames": delay},
        "midi": _stats_ms(midi_lat, len(midi_sent)),
        "osc": _stats_ms(osc_lat, len(osc_sent)),
        "osc_timetag": {"median_frames": round(float(np.median(tag_fin)), 2) if tag_fin.size else None,
                        "spread_frames": round(float(tag_fin.max() - tag_fin.min()), 2) if tag_fin.size else None,
                        "p1_p99_frames": [round(float(v), 2) for v in np.percentile(tag_fin, [1, 99])]
                        if tag_fin.size else None,
                        "count": int(tag_fin.size), "sent": int(len(tag_sent))},
        "xruns": stats.get("xruns"),
        "server_alone_xruns_per_min": round(baseline_xruns * 60.0 / baseline_s, 1),
        "run_s": round(stats.get("blocks", 0) * period / RATE, 1),
        "engine_load_max": round(stats.get("load_max", 0.0), 3),
        "engine_late_blocks": stats.get("late"),
        "onsets_dropped_by_capture_xruns": dropped,
    }
    raw = {"engine": fin.tolist(), "midi_ms": (midi_lat * 1e3).tolist(), "osc_ms": (osc_lat * 1e3).tolist(),
           "timetag": tag_fin.tolist()}
    return row, raw


def plot(raws: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(raws), 2, figsize=(10, 3.2 * len(raws)), squeeze=False)
    for row, (period, raw) in zip(axes, raws.items()):
        for name in ("midi_ms", "osc_ms"):
            data = np.array(raw[name], float)
            row[0].hist(data[np.isfinite(data)], bins=40, alpha=0.6, label=name.replace("_ms", ""))
        row[0].axvline(period / RATE * 1e3, color="k", ls="--", label="one period")
        row[0].set(title=f"wall-clock latency, {period} frames", xlabel="onset − send (ms)")
        row[0].legend()
        for name, label in (("engine", "JACK MIDI − event frame"), ("timetag", "onset − timetag frame")):
            row[1].hist(raw[name], bins=np.arange(-8.5, 8.5 + period, 1.0), alpha=0.6, label=label)
        row[1].set(title=f"sample accuracy, {period} frames", xlabel="frames")
        row[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def table(rows: list[dict]) -> str:
    lines = ["| block | floor ms | engine added / spread (frames) | rtmidi median / p99 / jitter ms | "
             "OSC median / p99 / jitter ms | timetag spread, frames | xruns (run s) | xruns/min, server alone | "
             "engine blocks over the period |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e, m, o, t = r["engine"], r["midi"], r["osc"], r["osc_timetag"]
        lines.append(f"| {r['block']} | {r['floor_ms']} | {e['added_frames']} / {e['spread_frames']} | "
                     f"{m['median_ms']} / {m['p99_ms']} / {m['jitter_ms']} ({m['count']}/{m['sent']}) | "
                     f"{o['median_ms']} / {o['p99_ms']} / {o['jitter_ms']} ({o['count']}/{o['sent']}) | "
                     f"{t['spread_frames']} "
                     f"(p1..p99 {t['p1_p99_frames']}, {t['count']}/{t['sent']}) | "
                     f"{r['xruns']} ({r['run_s']}) | {r['server_alone_xruns_per_min']} | {r['engine_late_blocks']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events, short runs (under 3 minutes)")
    parser.add_argument("--engine", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--send-midi", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--send-osc", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--send-osc-timetag", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        run_engine(*args.engine)
        return 0
    if args.send_midi:
        send_midi(args.send_midi)
        return 0
    if args.send_osc or args.send_osc_timetag:
        port, count = args.send_osc or args.send_osc_timetag
        send_osc(port, count, timetag=bool(args.send_osc_timetag))
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, raws = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for period in PERIODS:
            row, raw = measure(period, args.quick, Path(tmp))
            rows.append(row)
            raws[period] = raw
    result = {"jack": rows, "quick": args.quick, "sample_rate": RATE,
              "command": "python -m bench.latency" + (" --quick" if args.quick else ""),
              "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"}
    (RESULTS / "latency.json").write_text(json.dumps(result, indent=1))
    plot(raws, RESULTS / "latency.png")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
