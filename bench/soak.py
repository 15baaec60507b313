"""Soak: Cadenza beside a C JACK client pair on one private server, for minutes, under OSC load.

Per configuration (patch × period) this starts a private ``jackd -R -d dummy``
and runs, at the same time and on the same server:

- the C reference pair from Debian's ``jackd2``: ``jack_midisine`` (a MIDI synth)
  fed by ``jack_midiseq`` (a sequencer);
- ``cadenza play`` of the patch (a separate process), fed by the same
  ``jack_midiseq`` port, ``jack_midisine``'s melody on ``in_1`` (what the
  listening patches hear: a C client, so no Python client of ours sits
  upstream of Cadenza in the graph), and from a sender
  process 200 OSC messages/s over UDP: a CC fader sweep mapped to one of the
  patch's params, and bundles timetagged 50-100 ms ahead with a probe note that
  Cadenza's MIDI thru sends out of ``midi_out`` at the sample it lands on;
- a listener client on ``cadenza:midi_out`` that stamps each probe note with its
  JACK frame, its realtime thread at the lowest priority so it never takes a core
  from the clients it measures (it is a Python client too).

In 30 s windows it records how often jackd named each client "not finished"
(``JackEngine::XRun: client = NAME was not finished``: the server's own
attribution, unlike the xrun callback, which also counts the dummy driver's
timer overshoots), Cadenza's blocks over the period, mean and peak load, its
RSS, and every bundle's timetag error: probe-note frame − the frame the
timetag names, where frame ↔ time is JACK's own cycle-time estimate around
that moment (the median of its offset from ``frame / rate`` over the ±4
cycles around it, seen by the listener: the dummy driver falls behind the
wall clock under load, so no single line fits a whole run). Bundles due within two periods
of a cycle in which jackd named Cadenza late are scored apart.

    python -m bench.soak [--quick]

Full run: default, tone-transfer and harmonizer patches at 128 and 64 frames,
5 minutes each; ``--quick``: the default patch at 128 frames for 2 minutes.
Writes bench/results/soak.json, bench/results/soak.png and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
RATE = 48000
WINDOW_S = 30.0
WARMUP_S = 8.0  # from the engine's start until the first window: loading, compiling, connecting
FULL = [(patch, period) for period in (128, 64) for patch in ("default", "tone_transfer_violin", "harmonizer")]
QUICK = [("default", 128)]
FADER_CC = {"default": 91, "tone_transfer_violin": 91, "harmonizer": 7}  # a CC the patch maps to a param
C_CLIENT = "midisine"  # the C client fed by the sequencer, as Cadenza is
# jack_midiseq: a 0.5 s loop of four notes (start, note, length in frames at 48 kHz)
SEQ_ARGS = ["seq", "24000", "0", "60", "6000", "6000", "64", "6000", "12000", "67", "6000", "18000", "72", "6000"]
PROBE_CHANNEL = 15
TRUTH_CYCLES = 4  # the frame a timetag names: JACK's cycle times, median offset over ±4 cycles around it
OSC_RATE_HZ = 200.0
BUNDLE_EVERY = 10  # one in this many messages is a timetagged note-on bundle (its note-off bundle is another)


def soak_patch(name: str, osc_port: int) -> str:
    """The named patch with MIDI thru on and OSC listening on ``osc_port`` (no OSC out)."""
    from cadenza.engine.patch import read_patch_text, resolve_patch_path

    text = read_patch_text(resolve_patch_path(name))
    text = re.sub(r"(?ms)^\[osc\].*?(?=^\[|\Z)", "", text)
    if re.search(r"(?m)^\[midi\]", text):
        text = re.sub(r"(?m)^\[midi\]\n", "[midi]\nthru = true\n", text)
    else:
        text += "\n[midi]\nthru = true\n"
    return text + f'\n[osc]\nlisten = "127.0.0.1:{osc_port}"\nsend = []\n'


# -- the child processes -------------------------------------------------------------------


def run_engine(patch: str, stats_path: str) -> None:
    """Child: ``cadenza play`` on JACK until SIGINT; every second a JSON line of its counters."""
    from cadenza.engine.cli import play
    from cadenza.engine.control import ControlOptions

    out = open(stats_path, "w", buffering=1)

    def report(engine) -> None:
        def loop() -> None:
            while True:
                s = engine.stats
                out.write(json.dumps({"t": time.monotonic(), "blocks": s.blocks, "late": s.deadline_misses,
                                      "xruns": s.xruns, "busy_s": s.busy_s, "load_max": s.load_max,
                                      "errors": s.errors}) + "\n")
                time.sleep(1.0)

        threading.Thread(target=loop, daemon=True).start()

    play(patch, "jack", None, None, script=report, status=False, control=ControlOptions(midi=False),
         connect="system")


def send_osc(port: int, seconds: float, cc: int, out_path: str) -> None:
    """Child: 200 messages/s to ``port`` for ``seconds``: a CC fader sweep, and every tenth message a
    note-on bundle timetagged 50-100 ms ahead (its note-off bundle 30 ms later is another).
    Writes the note-ons' due times (``time.monotonic()`` s) and notes as JSON."""
    import random
    import socket

    from pythonosc.osc_bundle_builder import OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder

    def message(address: str, *args: int):
        msg = OscMessageBuilder(address)
        for arg in args:
            msg.add_arg(arg)
        return msg.build()

    def bundle(tag: float, note: int, velocity: int) -> bytes:
        b = OscBundleBuilder(tag)
        b.add_content(message("/cadenza/note", note, velocity, PROBE_CHANNEL))
        return b.build().dgram

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(3)
    sent = []
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < seconds:
        k += 1
        due = start + k / OSC_RATE_HZ
        time.sleep(max(0.0, due - time.monotonic()))
        mono, wall = time.monotonic(), time.time()
        if k % BUNDLE_EVERY == 0:
            ahead, note = rng.uniform(0.05, 0.1), 100 + (k // BUNDLE_EVERY) % 16
            sock.sendto(bundle(wall + ahead, note, 100), ("127.0.0.1", port))
            sent.append((mono + ahead, note))
        elif k % BUNDLE_EVERY == BUNDLE_EVERY // 2 and sent:
            sock.sendto(bundle(wall + sent[-1][0] + 0.03 - mono, sent[-1][1], 0), ("127.0.0.1", port))
        else:
            fader = int(round(63.5 + 63.5 * np.sin(2 * np.pi * (mono - start) / 4.0)))
            sock.sendto(message("/cadenza/cc", cc, fader).dgram, ("127.0.0.1", port))
    Path(out_path).write_text(json.dumps(sent))


# -- the conductor ----------------------------------------------------------------------------


def _child(args: list[str], env, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.soak", *args], cwd=REPO, env=env, **kw)


def _wait_port(client, name: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_ports(name):
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {name} did not appear")


def _connect(client, src: str, dst: str, timeout: float = 60.0) -> None:
    """Connect once both clients are active (a client's ports exist before it activates)."""
    import jack

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.connect(src, dst)
            return
        except jack.JackError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def timetag_errors(cycles: np.ndarray, received: list[tuple[int, bytes]], sent: list, late_times: np.ndarray,
                   period: int) -> dict:
    """Per bundle: (due time, error in frames or NaN when its note never came, in a late cycle?)."""
    frames, measured = cycles[:, 0], cycles[:, 2]
    offset = measured - frames / RATE  # JACK's time of frame 0, per cycle; its local median is the truth
    notes = {}
    for frame, data in received:
        if len(data) == 3 and data[0] == 0x90 | PROBE_CHANNEL and data[2] > 0:
            notes.setdefault(data[1], []).append(frame)
    notes = {n: np.array(f, np.float64) for n, f in notes.items()}
    due = np.array([t for t, _ in sent], np.float64)
    errors = np.full(len(sent), np.nan)
    late = np.zeros(len(sent), bool)
    slack = 2 * period / RATE
    for i, (t, note) in enumerate(sent):
        c = int(np.searchsorted(measured, t))
        if not TRUTH_CYCLES <= c <= len(measured) - TRUTH_CYCLES:
            continue
        frame = (t - np.median(offset[c - TRUTH_CYCLES:c + TRUTH_CYCLES])) * RATE
        got = notes.get(note)
        if got is not None:
            j = int(np.argmin(np.abs(got - frame)))
            if abs(got[j] - frame) < 0.05 * RATE:
                errors[i] = got[j] - frame
        k = np.searchsorted(late_times, t - slack)
        late[i] = k < len(late_times) and late_times[k] <= t + slack + 0.005  # + the log's read delay
    return {"due": due, "errors": errors, "late": late}


def measure(patch_name: str, period: int, seconds: float, workdir: Path) -> tuple[dict, dict]:
    from bench.jackprobe import JackProbe, PrivateServer

    osc_port = 19000 + period
    patch = workdir / f"soak-{patch_name}-{period}.toml"
    patch.write_text(soak_patch(patch_name, osc_port))
    server = PrivateServer(f"cadenza-soak-{os.getpid()}-{period}", period, RATE, watch=True)
    server.start()
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    stats_path, sent_path = workdir / "stats.jsonl", workdir / "sent.json"
    procs, probes, engine = [], [], None
    try:
        procs.append(subprocess.Popen(["jack_midisine"], env=server.env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["jack_midiseq", *SEQ_ARGS], env=server.env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        engine = _child(["--engine", str(patch), str(stats_path)], server.env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True)
        procs.append(engine)
        listener = JackProbe("listener", midi_in=True, clock=True, yield_cpu=True)
        probes.append(listener)
        for port in ("cadenza:midi_out", "midisine:midi_in", "seq:out"):
            _wait_port(listener.client, port)
        for src, dst in (("seq:out", "midisine:midi_in"), ("seq:out", "cadenza:midi_in"),
                         ("midisine:audio_out", "system:playback_1"), ("midisine:audio_out", "cadenza:in_1"),
                         ("cadenza:midi_out", "listener:midi_in")):
            _connect(listener.client, src, dst)
        time.sleep(WARMUP_S)
        sender = _child(["--send-osc", str(osc_port), str(seconds), str(FADER_CC[patch_name]), str(sent_path)],
                        server.env)
        procs.append(sender)
        t0 = time.monotonic()
        rss = []
        for w in range(int(seconds // WINDOW_S)):
            time.sleep(max(0.0, t0 + (w + 1) * WINDOW_S - time.monotonic()))
            rss.append(_rss_mb(engine.pid))
        sender.wait(60)
        sent = json.loads(sent_path.read_text())
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is engine else signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        engine_log = engine.stderr.read() if engine is not None else ""
        for probe in probes:
            probe.close()
        server.stop()
    cycles = np.array(listener.cycles, np.float64).reshape(-1, 4)
    named, states = {}, {}
    for t, client, state in server.late:
        named.setdefault(client, []).append(t)
        states.setdefault(client, {}).setdefault(state, 0)
        states[client][state] += 1
    named = {c: np.array(ts) for c, ts in named.items()}
    stats = [json.loads(line) for line in stats_path.read_text().splitlines() if line.strip()]
    st = {k: np.array([s[k] for s in stats], np.float64) for k in ("t", "blocks", "late", "busy_s", "load_max")}
    tags = timetag_errors(cycles, listener.received, sent, named.get("cadenza", np.zeros(0)), period)
    windows = []
    for w in range(len(rss)):
        lo, hi = t0 + w * WINDOW_S, t0 + (w + 1) * WINDOW_S
        count = {c: int(((ts >= lo) & (ts < hi)).sum()) for c, ts in named.items()}
        i0, i1 = np.searchsorted(st["t"], [lo, hi])
        i1 = min(i1, len(st["t"]) - 1)
        wall = st["t"][i1] - st["t"][i0]
        windows.append({"cadenza": count.get("cadenza", 0), "c_client": count.get(C_CLIENT, 0),
                        "seq": count.get("seq", 0), "others": {c: n for c, n in count.items()
                                                               if c not in ("cadenza", C_CLIENT, "seq")},
                        "late_blocks": int(st["late"][i1] - st["late"][i0]),
                        "load_mean": round(float((st["busy_s"][i1] - st["busy_s"][i0]) / wall), 4) if wall else None,
                        "load_max_so_far": round(float(st["load_max"][i1]), 3), "rss_mb": round(rss[w], 1)})
    minutes = len(windows) * WINDOW_S / 60.0
    cad = sum(w["cadenza"] for w in windows)
    ref = sum(w["c_client"] for w in windows)
    ok = np.isfinite(tags["errors"])
    on_time = tags["errors"][ok & ~tags["late"]]
    in_late = tags["errors"][ok & tags["late"]]
    ratios = [w["cadenza"] / max(w["c_client"], 1) for w in windows]
    row = {
        "patch": patch_name, "period": period, "minutes": minutes,
        "cadenza_per_min": round(cad / minutes, 1), "c_client_per_min": round(ref / minutes, 1),
        "seq_per_min": round(sum(w["seq"] for w in windows) / minutes, 1),
        "pooled_ratio": round(cad / max(ref, 1), 2), "worst_window_ratio": round(max(ratios), 2),
        "late_blocks": sum(w["late_blocks"] for w in windows),
        "states": states,  # whole run, warm-up included: per client, how often each state was named
        "timetag": {"on_time": len(on_time), "in_late_cycles": len(in_late), "missing": int((~ok).sum()),
                    "sent": len(sent),
                    "median_frames": round(float(np.median(on_time)), 2) if len(on_time) else None,
                    "p99_abs_frames": round(float(np.percentile(np.abs(on_time), 99)), 2) if len(on_time) else None,
                    "late_median_frames": round(float(np.median(in_late)), 2) if len(in_late) else None},
        "rss_growth_mb": round(rss[-1] - rss[0], 2), "rss_mb": [round(r, 1) for r in rss],
        "engine_problems": [line for line in engine_log.splitlines() if "problems seen" in line],
        "windows": windows,
    }
    return row, {"errors_on_time": on_time.tolist(), "errors_late": in_late.tolist()}


def plot(rows: list[dict], raws: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.0 * len(rows)), squeeze=False)
    for (left, right), row, raw in zip(axes, rows, raws):
        x = np.arange(len(row["windows"]))
        per_min = 60.0 / WINDOW_S
        for shift, key, label in ((-0.27, "cadenza", "cadenza"), (0.0, "c_client", C_CLIENT), (0.27, "seq", "seq")):
            left.bar(x + shift, [w[key] * per_min for w in row["windows"]], width=0.27, label=label)
        left.set(title=f"{row['patch']} @ {row['period']}: jackd 'not finished' per minute, per window",
                 xlabel=f"window ({WINDOW_S:g} s)")
        left.legend()
        bins = np.arange(-20.5, 2 * row["period"] + 1.5, 1.0)  # errors beyond two periods pile into the last bin
        edge = 2 * row["period"]
        right.hist(np.clip(raw["errors_on_time"], -20, edge), bins=bins, label="cycle not named late")
        right.hist(np.clip(raw["errors_late"], -20, edge), bins=bins, alpha=0.6, label="cycle named late")
        right.set(title="timetag error", xlabel="probe-note frame − timetag frame", yscale="log")
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def table(rows: list[dict]) -> str:
    lines = ["| patch | frames | min | 'not finished'/min: cadenza / midisine / seq | pooled ratio | worst window "
             "ratio | late blocks | timetag median / p99 abs (frames), on time | bundles in late cycles "
             "(median) | missing | RSS growth MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["timetag"]
        lines.append(f"| {r['patch']} | {r['period']} | {r['minutes']:g} | {r['cadenza_per_min']} / "
                     f"{r['c_client_per_min']} / {r['seq_per_min']} | {r['pooled_ratio']} | "
                     f"{r['worst_window_ratio']} | {r['late_blocks']} | {t['median_frames']} / "
                     f"{t['p99_abs_frames']} ({t['on_time']}) | {t['in_late_cycles']} ({t['late_median_frames']}) | "
                     f"{t['missing']}/{t['sent']} | {r['rss_growth_mb']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the default patch at 128 frames for 2 minutes")
    parser.add_argument("--minutes", type=float, help="per configuration (default 5, --quick 2)")
    parser.add_argument("--only", help="patch:period, e.g. harmonizer:64 (one configuration)")
    parser.add_argument("--engine", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--send-osc", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        run_engine(*args.engine)
        return 0
    if args.send_osc:
        port, seconds, cc, out = args.send_osc
        send_osc(int(port), float(seconds), int(cc), out)
        return 0
    configs = QUICK if args.quick else FULL
    if args.only:
        name, _, period = args.only.partition(":")
        configs = [(name, int(period or 128))]
    seconds = 60.0 * (args.minutes or (2.0 if args.quick else 5.0))
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, raws = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for patch_name, period in configs:
            print(f"soak: {patch_name} at {period} frames for {seconds / 60:g} min", file=sys.stderr, flush=True)
            row, raw = measure(patch_name, period, seconds, Path(tmp))
            rows.append(row)
            raws.append(raw)
    command = "python -m bench.soak" + (" --quick" if args.quick else "") + \
        (f" --minutes {args.minutes:g}" if args.minutes else "") + (f" --only {args.only}" if args.only else "")
    result = {"configs": rows, "window_s": WINDOW_S, "sample_rate": RATE, "command": command,
              "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"}
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=1))
    plot(rows, raws, RESULTS / "soak.png")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
