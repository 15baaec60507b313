"""``cadenza``: render, play, demo, list patches — and the listeners' and models' tools.

Every failure a user can cause (a broken patch, a bad MIDI or WAV file, a
missing model) ends in one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from pathlib import Path

import numpy as np

from cadenza.engine.errors import CadenzaError

# Subcommands that live beside the instruments and models, imported only when used.
# Each module has ``add_arguments(parser)`` and ``run(args) -> int``.
TOOLS: dict[str, tuple[str, str]] = {
    "beats": ("cadenza.engine.cli.beats", "print the beats of a WAV as the streaming beat tracker emits them"),
    "chords": ("cadenza.engine.cli.chords", "print the chords and key of a WAV as the streaming chord listener hears them"),
    "genie": ("cadenza.engine.cli.genie", "decode a CSV of Piano Genie button presses to MIDI pitches"),
    "pitch": ("cadenza.engine.cli.pitch", "track f0, voicing and loudness of a WAV with the streaming pitch listener"),
}


FILE_TAIL_S = 1.0  # play --input without --loop: seconds played after the file ends (tails, last reports)


class UserError(CadenzaError):
    """Something the user can fix; printed as one line."""


def _progress(total: int, label: str):
    from tqdm import tqdm

    # tqdm's monitor thread starts even for a disabled bar and outlives it, waking every 10 s to run
    # Python in the audio process; our bars are refreshed by hand, so they need no monitor
    tqdm.monitor_interval = 0
    bar = tqdm(total=total, unit="frame", unit_scale=True, desc=label, leave=False,
               disable=None, file=sys.stderr)

    def update(done: int) -> None:
        bar.n = done
        bar.refresh()

    return bar, update


def build_engine(patch_name, sample_rate=None, block=None):
    from cadenza.engine.engine import Engine
    from cadenza.engine.patch import load_patch

    return Engine(load_patch(patch_name), sample_rate, block)


def render(patch_name, out: Path, midi: Path | None = None, input_wav: Path | None = None,
           tail_s: float = 2.0, sample_rate: int | None = None, block: int | None = None,
           quiet: bool = False, notes_out: Path | None = None) -> np.ndarray:
    """Render a patch offline from a MIDI file and/or input audio to ``out`` (WAV); ``notes_out``:
    also write the notes the patch's generators played, at their samples, as a MIDI file."""
    from cadenza.engine.audio_io import read_audio, write_wav
    from cadenza.engine.backends.offline import OfflineBackend
    from cadenza.engine.events import Kind
    from cadenza.engine.midi import midi_to_events, read_midi_file, write_notes_file

    if midi is None and input_wav is None:
        raise UserError("render needs --midi IN.mid, --input IN.wav, or both")
    messages = read_midi_file(midi) if midi is not None else []
    engine = build_engine(patch_name, sample_rate, block)
    try:
        sr = engine.sample_rate
        adc = read_audio(input_wav, sr) if input_wav is not None else None
        events = midi_to_events(messages, engine.midi_map, sr) if messages else None
        end = max(adc.shape[1] if adc is not None else 0,
                  int(events["time"].max()) + 1 if events is not None and len(events) else 0)
        frames = end + int(tail_s * sr)
        bar, update = _progress(frames, f"render {Path(out).name}")
        generated = []

        def keep_generated(_block: int) -> None:
            rows = engine.outbound.pop_all()
            generated.append(rows[np.isin(rows["kind"], (Kind.NOTE_ON, Kind.NOTE_OFF)) & (rows["target"] >= 0)])

        with bar:
            audio = OfflineBackend(engine).render(frames, adc, events, None if quiet else update,
                                                  keep_generated if notes_out is not None else None)
        write_wav(out, audio, sr)
        if notes_out is not None:
            rows = np.concatenate(generated) if generated else np.zeros(0, engine.outbound.buf.dtype)
            nodes = engine.graph.nodes
            write_notes_file(notes_out, {nodes[i].id: rows[rows["target"] == i] for i in np.unique(rows["target"])}, sr)
        return audio
    finally:
        engine.close()


def play(patch_name, backend: str | None, seconds: float | None, record: Path | None,
         script=None, status: bool = True, control=None, sample_rate: int | None = None,
         block: int | None = None, input_file: Path | None = None, loop: bool = False,
         ui_port: int | None = None, ui_host: str = "127.0.0.1", link: bool = False,
         **live_options) -> Path | None:
    """Play a patch live. ``script(engine)`` may schedule events before the audio starts.

    ``control``: a ``ControlOptions`` for the OSC / MIDI layer (default: as the patch says).
    On JACK the engine runs at the server's rate and period unless told otherwise.
    ``input_file``: a sound file played as the audio input instead of the backend's (``loop``:
    again and again); played once, it ends the show when it ends unless ``seconds`` is given.
    ``ui_port``: serve the browser panel there (0: any free port) on ``ui_host``; its URL is printed.
    ``link``: join an Ableton Link session, as the patch's ``[clock] link = true`` does (needs the
    ``cadenza[link]`` extra: without it, a one-line error before any device opens).
    """
    from cadenza.engine.audio_io import write_wav
    from cadenza.engine.backends import backend_class, pick_live_backend
    from cadenza.engine.control import ControlLayer, realtime_mode
    from cadenza.engine.control.log import ErrorLog, capture_logging, release_logging

    name = backend or pick_live_backend()
    cls = backend_class(name)
    server = cls.server_format() if sample_rate is None or block is None else None
    if server is not None:
        sample_rate, block = sample_rate or server[0], block or server[1]
    engine = build_engine(patch_name, sample_rate, block)
    live = None
    try:
        link = link or engine.patch.table("clock")["link"]
        if link:
            from cadenza.engine.link import load_link

            load_link()
        if input_file is not None:
            from cadenza.engine.fileinput import FileInput

            engine.input_file = FileInput(input_file, engine.sample_rate, engine.graph.adc.shape[0],
                                          engine.block, loop)
            if seconds is None and not loop:
                seconds = engine.input_file.seconds + FILE_TAIL_S
        live = cls(engine, **({"record": record is not None} | live_options))  # a show unrecorded keeps no audio
        if script is not None:
            script(engine)
        print(f"cadenza: playing {engine.patch.name} on {name} at {engine.sample_rate} Hz, "
              f"{engine.block} frames ({engine.period_s * 1e3:.2f} ms), patch latency "
              f"{engine.graph.latency_samples / engine.sample_rate * 1e3:.2f} ms"
              + ("" if seconds else " — Ctrl-C stops"), file=sys.stderr)
        log = ErrorLog(engine.stats)
        layer = ControlLayer(engine, live, control, log)
        session = None
        if link:
            from cadenza.engine.link import LinkSession

            session = LinkSession(engine, log, layer.midi_clock)

        def tick() -> None:  # the control layer refreshes the line (and answers /cadenza/status with it)
            if status and layer.status:
                log.console.status(layer.status)

        panel = _panel(layer, ui_host, ui_port)
        handler = capture_logging(log)  # python-osc and friends go through the same rate limiter
        try:
            with realtime_mode(), layer, session or contextlib.nullcontext(), panel or contextlib.nullcontext():
                if panel is not None:
                    print(f"cadenza: panel at {panel.url}", file=sys.stderr, flush=True)
                live.run(seconds, on_tick=tick)
        except KeyboardInterrupt:
            pass
        finally:
            log.console.end_status()
            release_logging(handler)
        if record is not None:
            write_wav(record, live.recording(), engine.sample_rate)
            print(f"cadenza: recorded {live.recording().shape[1] / engine.sample_rate:.1f} s to {record}",
                  file=sys.stderr)
        if layer.log.counts:
            print(f"cadenza: problems seen: {layer.log.summary()}", file=sys.stderr)
        return record
    finally:
        if live is not None:
            live.close()
        engine.close()


def _panel(layer, host: str, port: int | None):
    """The browser panel's server for ``layer`` (not started), or None without ``--ui``."""
    if port is None:
        return None
    from cadenza.engine.ui.server import PanelServer, warn_if_open

    warning = warn_if_open(host)
    if warning:
        print(warning, file=sys.stderr)
    return PanelServer(layer, host, port)


def cmd_patches(args) -> int:
    from cadenza.engine.patch import list_patches

    for name, description in list_patches():
        print(f"{name:<24} {description}")
    return 0


def cmd_render(args) -> int:
    render(args.patch, args.out, args.midi, args.input, args.tail, args.rate, args.block, notes_out=args.notes_out)
    print(f"cadenza: wrote {args.out}" + (f" and {args.notes_out}" if args.notes_out else ""), file=sys.stderr)
    return 0


def cmd_play(args) -> int:
    from cadenza.engine.control import ControlOptions
    from cadenza.engine.hostport import parse_hostport

    if args.loop and args.input is None:
        raise UserError("--loop: found no --input, allowed only with --input FILE")
    checks = [("--osc-send", target, False) for target in args.osc_send]
    if args.osc_host is not None or args.osc_port is not None:
        checks.append(("--osc-host/--osc-port", f"{args.osc_host or '127.0.0.1'}:{args.osc_port or 8000}", True))
    for flag, address, listen in checks:
        try:
            parse_hostport(address, 9000, listen=listen)
        except ValueError as exc:
            raise UserError(f"{flag}: {exc}") from None
    control = ControlOptions(osc=not args.no_osc, osc_host=args.osc_host, osc_port=args.osc_port,
                             osc_send=args.osc_send, midi=not args.no_midi, midi_in=args.midi_in,
                             midi_out=args.midi_out, clock_out=True if args.midi_clock else None)
    options = {"connect": args.connect} if args.connect else {}
    if args.device is not None:
        options["device"] = args.device
    if args.ui_host is not None and args.ui is None:
        raise UserError("--ui-host: found no --ui, allowed only with --ui [PORT]")
    play(args.patch, args.backend, args.seconds, args.record, status=not args.quiet, control=control,
         sample_rate=args.rate, block=args.block, input_file=args.input, loop=args.loop,
         ui_port=args.ui, ui_host=args.ui_host or "127.0.0.1", link=args.link, **options)
    return 0


def cmd_demo(args) -> int:
    from cadenza.engine.cli.demo import demo

    demo(args.out, args.backend, args.seconds)
    return 0


def seconds(text: str, hi: float = 24 * 3600.0, zero: bool = False) -> float:
    """An argparse type: a finite duration in seconds, 0 < s ≤ ``hi`` (a day); 0 too if ``zero``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"found {text!r}, allowed a number of seconds") from None
    if not (0.0 <= value if zero else 0.0 < value) or not value <= hi:  # also refuses nan
        raise argparse.ArgumentTypeError(f"found {text!r}, allowed {'0 <=' if zero else '0 <'} seconds <= {hi:g}")
    return value


def tcp_port(text: str) -> int:
    """An argparse type: a TCP port 0-65535 (0: any free one)."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"found {text!r}, allowed a port 0-65535")
    return int(text)


def tail_seconds(text: str) -> float:
    """--tail: 0 ≤ s ≤ 10 minutes (what is rendered after the last event)."""
    return seconds(text, 600.0, zero=True)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, where the help is) and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cadenza", description="Real-time AI live-performance engine.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("patches", help="list the patches with their descriptions")
    p.set_defaults(func=cmd_patches)

    p = sub.add_parser("render", help="render a patch offline to a WAV")
    p.add_argument("patch", help="patch file or name in patches/")
    p.add_argument("--midi", type=Path, help="MIDI file to play")
    p.add_argument("--input", type=Path, help="audio file fed to the patch's input (resampled)")
    p.add_argument("--out", type=Path, required=True, help="output WAV")
    p.add_argument("--notes-out", type=Path, help="MIDI file of the notes the generators played, at their samples "
                                                  "(tempo 120, 480 ticks per beat: a tick is 1/960 s)")
    p.add_argument("--tail", type=tail_seconds, default=2.0, help="seconds rendered after the last event (≤ 600)")
    p.add_argument("--rate", type=int, help="sample rate, Hz (default: the patch's)")
    p.add_argument("--block", type=int, help="block size, frames (default: the patch's)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("play", help="play a patch live (JACK, a sound card, or null)")
    p.add_argument("patch", nargs="?", help="patch file or name (default: patches/default.toml)")
    p.add_argument("--backend", choices=["jack", "portaudio", "null"], help="default: what exists")
    p.add_argument("--record", type=Path, help="keep a WAV of the performance")
    p.add_argument("--seconds", type=seconds, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--rate", type=int, help="sample rate, Hz (default: JACK's, else the patch's)")
    p.add_argument("--block", type=int, help="block size, frames (default: JACK's period, else the patch's)")
    p.add_argument("--osc-host", help="OSC listen address (default 127.0.0.1; 0.0.0.0 opens it to the network)")
    p.add_argument("--osc-port", type=int, help="OSC listen port (default: the patch's, 8000)")
    p.add_argument("--osc-send", action="append", default=[], metavar="HOST:PORT",
                   help="another OSC target for outgoing events (repeatable)")
    p.add_argument("--no-osc", action="store_true", help="open no OSC socket")
    p.add_argument("--midi-in", help="MIDI input port name substring (JACK: ports connected to cadenza:midi_in)")
    p.add_argument("--midi-out", help="MIDI output port name substring")
    p.add_argument("--midi-clock", action="store_true", help="send MIDI clock (24 ppqn) and Start/Stop")
    p.add_argument("--no-midi", action="store_true", help="open no MIDI ports")
    p.add_argument("--connect", help="JACK: 'system' (default), 'none' or a port-name substring for the audio")
    p.add_argument("--device", help="PortAudio: output device name substring or index")
    p.add_argument("--input", type=Path, metavar="FILE",
                   help="a sound file played as the audio input instead of the device's (resampled); "
                        "the show ends when it does, unless --loop or --seconds")
    p.add_argument("--loop", action="store_true", help="with --input: play the file again and again")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.add_argument("--link", action="store_true", help="join an Ableton Link session: tempo, bar phase, start/stop "
                                                      "(as [clock] link = true; needs pip install 'cadenza[link]')")
    p.add_argument("--ui", nargs="?", const=8080, type=tcp_port, metavar="PORT",
                   help="serve the browser panel (default port 8080; 0 = any free port) and print its URL")
    p.add_argument("--ui-host", help="panel listen address (default 127.0.0.1; 0.0.0.0 opens it to the "
                                     "network, with a warning)")
    p.set_defaults(func=cmd_play)

    p = sub.add_parser("demo", help="play a scripted performance through the default patch")
    p.add_argument("--out", type=Path, default=Path("cadenza-demo.wav"), help="WAV to write")
    p.add_argument("--backend", choices=["jack", "portaudio", "null"], help="default: what exists")
    p.add_argument("--seconds", type=seconds, default=16.0, help="length of the performance")
    p.set_defaults(func=cmd_demo)

    for name, (module, help_text) in TOOLS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(tool=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:  # a tool parses its own arguments
        module = importlib.import_module(TOOLS[argv[0]][0])
        tool_parser = OneLineParser(prog=f"cadenza {argv[0]}", description=TOOLS[argv[0]][1])
        module.add_arguments(tool_parser)
        args = tool_parser.parse_args(argv[1:])
        run = module.run
    else:
        args = parser.parse_args(argv)
        run = args.func
    try:
        return run(args)
    except (CadenzaError, OSError) as exc:  # OSError: a file or folder the user named
        print(f"cadenza: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
