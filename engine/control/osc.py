"""OSC in and out over UDP: our own bounded packet parser in, python-osc's builder out.

python-osc's stock server sleeps until a bundle's timetag and drops parse
errors silently; here the socket is read on a control thread, every packet
is parsed at once (:mod:`cadenza.engine.control.oscpacket`, bounded in time and
size), each message is stamped with the sample at which it takes effect (a
future bundle timetag → that exact sample, as SuperCollider does; otherwise
arrival + the patch's scheduling delay) and pushed into the engine's event
ring. An address with OSC 1.0 pattern characters (``/cadenza/param/*/cutoff``)
is applied to every address of the playing patch it matches
(:mod:`cadenza.engine.control.oscpattern`). Every value is checked finite and
in range before it crosses into the engine; every bad packet gets a counted,
rate-limited log line.
"""

from __future__ import annotations

import collections
import math
import socket
import threading
import time

from pythonosc.osc_message_builder import OscMessageBuilder

from cadenza.engine.control.oscpacket import OscPacketError, parse_packet
from cadenza.engine.control.oscpattern import OscPatternError, is_pattern, matching
from cadenza.engine.events import BROADCAST, ENGINE, Kind
from cadenza.engine.harmony import chord_label, key_label

PREFIX = "/cadenza"
MAX_AHEAD_S = 10.0  # timetags further ahead than this are refused (the scheduler is no score store)
TEMPO_RANGE = (20.0, 400.0)
RCVBUF_BYTES = 1 << 20
STATUS_REPLIES_PER_S = 10  # /cadenza/status answers per second per source IP; more are dropped

# The address space, for the README and for error messages: address, argument types, meaning.
ADDRESSES_IN = [
    ("/cadenza/note", "i note, i velocity[, i channel]",
     "note on (velocity 0 = off), routed like MIDI through the patch's [midi] table; velocity 0-127, "
     "or 0..1 where the patch says [osc] velocity = \"unit\""),
    ("/cadenza/note_off", "i note[, i channel]", "note off"),
    ("/cadenza/cc", "i controller, i value[, i channel]", "control change 0-127, mapped by [midi] cc"),
    ("/cadenza/bend", "f bend[, i channel]", "pitch bend, -1..1"),
    ("/cadenza/program", "i program[, i channel]", "program change 0-127"),
    ("/cadenza/genie/button", "i button, i velocity", "Piano Genie button 0-7 (velocity 0 releases; "
                                                      "0..1 with [osc] velocity = \"unit\"); "
                                                      "/cadenza/button is the same"),
    ("/cadenza/param/<node>/<name>", "f value", "set a node parameter, clamped to its range"),
    ("/cadenza/tempo", "f bpm", "engine tempo, 20-400 bpm (clamped)"),
    ("/cadenza/transport", "s start, stop or continue", "transport (MIDI clock out and an Ableton Link session "
                                                        "follow)"),
    ("/cadenza/panic", "", "all notes off, tails cut, on every node"),
    ("/cadenza/reload", "[s patch]", "build the patch (default: the playing one) off the audio thread "
                                       "and swap it in at a block boundary; on error the old one plays on"),
    ("/cadenza/patch", "s name | i index", "switch to a patch of the run's patch list (the first patch's "
                                           "[set], else its folder) by name or 0-based index, through "
                                           "the reload path; names only, never paths"),
    ("/cadenza/link", "[d host_us[, i port]]", "with Ableton Link on: reply /cadenza/link f bpm, i peers, "
                                               "i playing, d host_us, d link_beat, d clock_beat, f quantum — the "
                                               "session's beat and the engine clock's at Link host time host_us "
                                               "(this machine's Link clock, microseconds; default now) — to the "
                                               "sender's IP at `port` (default its own); shares /cadenza/status's "
                                               "10 replies a second"),
    ("/cadenza/status", "[i port]", "reply /cadenza/status s line, f load, i xruns, i events_in, "
                                    "i events_out, i errors to the sender's IP at `port` (default: the "
                                    "sender's own port); at most 10 replies a second per sender IP"),
]
ADDRESSES_OUT = [
    ("/cadenza/pitch", "f f0_hz, i voiced, f loudness_db", "a pitch listener's report, one per hop it reports"),
    ("/cadenza/beat", "i beat, f bpm, f phase", "a beat listener's beat (phase 0: sent on the beat)"),
    ("/cadenza/downbeat", "i bar", "a beat listener's downbeat, sent on the beat that starts bar `bar`"),
    ("/cadenza/chord", "s label", "a chord listener's new chord, as mir_eval writes it: C:maj, A:min, N"),
    ("/cadenza/key", "s label", "a chord listener's new key: C major, A minor"),
    ("/cadenza/out/<node>/note", "i note, i velocity, i channel",
     "a note a generator emits, or a voice plays when the patch lists it in [osc] report_notes "
     "(velocity 0 = off)"),
    ("/cadenza/out/<node>/beat", "i beat, f bpm", "a beat listener's beat"),
    ("/cadenza/out/<node>/downbeat", "i bar, i beats_per_bar", "a beat listener's downbeat"),
    ("/cadenza/out/<node>/pitch", "f f0_hz, i voiced", "a pitch listener's report (rate-limited by [osc] pitch_rate_hz)"),
    ("/cadenza/out/engine/tempo", "f bpm", "the engine's tempo, when it changes (/cadenza/tempo, "
                                           "[clock] follow) by 0.01 bpm or more"),
    ("/cadenza/out/<node>/loudness", "f dB", "a loudness report"),
    ("/cadenza/out/<node>/beat_prediction", "f seconds", "time until the predicted next beat"),
    ("/cadenza/out/<node>/chord", "s label, f confidence", "a chord change"),
    ("/cadenza/out/<node>/key", "s label, f confidence", "a key change"),
    ("/cadenza/out/<node>/<kind>", "i channel, i a, i b, f value", "any other event a node sends out"),
]


class OscArgError(ValueError):
    """A message with the wrong number, type or range of arguments."""


def _number(args, i: int, name: str, lo: float | None = None, hi: float | None = None,
            default=None, integer: bool = False):
    if i >= len(args):
        if default is not None:
            return default
        raise OscArgError(f"missing argument {i + 1} ({name})")
    value = args[i]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OscArgError(f"argument {i + 1} ({name}): found {type(value).__name__} {value!r}, allowed a number")
    if not math.isfinite(value):
        raise OscArgError(f"argument {i + 1} ({name}): found {value!r}, allowed a finite number")
    if integer:
        value = int(round(value))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise OscArgError(f"argument {i + 1} ({name}): found {value!r}, allowed {lo:g}..{hi:g}")
    return value


def build_message(address: str, args) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


class OscIn:
    """Listens on ``(host, port)``; ``layer`` is the ControlLayer (reload, status, transport)."""

    def __init__(self, layer, host: str = "127.0.0.1", port: int = 8000):
        self.layer = layer
        self.engine = layer.engine
        self.log = layer.log
        self.ring = self.engine.input_ring()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # room for a controller's burst while the GIL is busy elsewhere (UDP drops what does not fit)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise OSError(f"OSC: cannot listen on {host}:{port} ({exc.strerror})") from None
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self.received = 0
        self.late = 0
        self.status_limiter = ReplyLimiter(STATUS_REPLIES_PER_S)
        self._address_graph = None  # the graph ``addresses`` was listed for
        self._addresses: list[str] = []
        self._running = False
        self._thread = threading.Thread(target=self._serve, name="cadenza-osc-in", daemon=True)

    def start(self) -> None:
        self._running = True
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.sock.close()

    def _serve(self) -> None:
        while self._running:
            try:
                data, addr = self.sock.recvfrom(65536)  # releases the GIL while waiting
            except socket.timeout:
                continue
            except OSError as exc:
                if self._running:
                    self.log.report("osc-socket", str(exc))
                    time.sleep(0.05)
                continue
            try:
                self.handle(data, addr)
            except Exception as exc:  # nothing a packet does may end this thread
                self.log.report("osc-error", f"{len(data)}-byte packet from {addr[0]}:{addr[1]}: "
                                             f"{type(exc).__name__}: {exc}")

    def handle(self, data: bytes, addr) -> None:
        """Parse and apply one datagram (public so tests and scripts can inject packets)."""
        mono, wall = time.monotonic(), time.time()
        arrival = int(self.engine.sample_at(mono))
        try:
            messages = parse_packet(data)
        except OscPacketError as exc:
            self.log.report("osc-malformed", f"{len(data)}-byte packet from {addr[0]}:{addr[1]} dropped ({exc})")
            return
        for tag, address, args in messages:
            try:
                self._apply(tag, address, args, arrival, mono, wall, addr)
            finally:
                self.received += 1  # counted once handled, so a reader of it sees the event pushed

    def _apply(self, tag: float | None, address: str, args: list, arrival: int, mono: float, wall: float,
               addr) -> None:
        """Stamp one message from its timetag (None: now) and dispatch it to every address it names."""
        if is_pattern(address):
            try:
                targets = matching(address, self.addresses())
            except OscPatternError as exc:
                self.log.report("osc-pattern", f"{address}: {exc}; dropped")
                return
            if not targets:
                self.log.report("osc-unknown-address", f"{address}: the pattern matches no address of this "
                                                       f"patch (see the README's OSC table); dropped")
                return
        else:
            targets = [address]
        if tag is None:
            when = self.engine.stamp(arrival)
        elif tag - wall > MAX_AHEAD_S:
            self.log.report("osc-timetag", f"{address}: timetag {tag - wall:.1f} s ahead, "
                                           f"allowed at most {MAX_AHEAD_S:g} s; dropped")
            return
        elif tag < wall:
            self.late += 1
            when = arrival
        else:  # one rounding from the block's anchor: sample-accurate
            when = round(self.engine.sample_at(mono + (tag - wall)))
        for target in targets:
            try:
                self.dispatch(target, args, when, addr)
            except OscArgError as exc:
                self.log.report("osc-args", f"{target}: {exc}; dropped")
            except Exception as exc:  # a malformed message must never stop the thread
                self.log.report("osc-error", f"{target}: {type(exc).__name__}: {exc}")

    def addresses(self) -> list[str]:
        """Every concrete address the playing patch answers (what a pattern is matched against)."""
        graph = self.engine.graph
        if graph is not self._address_graph:
            fixed = [address for address, _, _ in ADDRESSES_IN if "<" not in address]
            params = [f"{PREFIX}/param/{node.id}/{name}" for node in graph.nodes for name in node.PARAMS]
            self._addresses, self._address_graph = [*fixed, PREFIX + "/button", *params], graph
        return self._addresses

    # -- the address space ---------------------------------------------------------

    def dispatch(self, address: str, args: list, when: int, addr) -> None:
        engine = self.engine
        push = self.ring.push
        if address.startswith(PREFIX + "/param/"):
            self._param(address, args, when)
            return
        channel = None
        if address == PREFIX + "/note":
            note = _number(args, 0, "note", 0, 127, integer=True)
            vel = self._velocity(args, 1)
            channel = _number(args, 2, "channel", 0, 15, default=0, integer=True)
            self._midi(0x90 | channel, note, vel, when)
        elif address == PREFIX + "/note_off":
            note = _number(args, 0, "note", 0, 127, integer=True)
            channel = _number(args, 1, "channel", 0, 15, default=0, integer=True)
            self._midi(0x80 | channel, note, 0, when)
        elif address == PREFIX + "/cc":
            cc = _number(args, 0, "controller", 0, 127, integer=True)
            value = _number(args, 1, "value", 0, 127, integer=True)
            channel = _number(args, 2, "channel", 0, 15, default=0, integer=True)
            self._midi(0xB0 | channel, cc, value, when)
        elif address == PREFIX + "/bend":
            bend = _number(args, 0, "bend", -1.0, 1.0)
            channel = _number(args, 1, "channel", 0, 15, default=0, integer=True)
            raw = min(int(round((bend + 1.0) * 8192)), 16383)
            self._midi(0xE0 | channel, raw & 0x7F, raw >> 7, when)
        elif address == PREFIX + "/program":
            program = _number(args, 0, "program", 0, 127, integer=True)
            channel = _number(args, 1, "channel", 0, 15, default=0, integer=True)
            self._midi(0xC0 | channel, program, 0, when)
        elif address in (PREFIX + "/genie/button", PREFIX + "/button"):
            button = _number(args, 0, "button", 0, 7, integer=True)
            vel = self._velocity(args, 1)
            target = engine.midi_map.buttons_to
            if target < 0:
                raise OscArgError("this patch routes no buttons ([midi] buttons)")
            push(when, Kind.BUTTON, target, 0, button, vel, 0.0)
        elif address == PREFIX + "/tempo":
            bpm = self._clamped(address, _number(args, 0, "bpm"), *TEMPO_RANGE)
            push(when, Kind.TEMPO, ENGINE, 0, 0, 0, float(bpm))
        elif address == PREFIX + "/transport":
            self._transport(args, when)
        elif address == PREFIX + "/panic":
            push(when, Kind.PANIC, BROADCAST)
        elif address == PREFIX + "/reload":
            if args and not isinstance(args[0], str):
                raise OscArgError(f"argument 1 (patch): found {args[0]!r}, allowed a path string")
            self.layer.reload(args[0] if args else None)
        elif address == PREFIX + "/patch":
            self._patch(args)
        elif address == PREFIX + "/status":
            self._status(args, addr)
        elif address == PREFIX + "/link":
            self._link(args, addr)
        else:
            self.log.report("osc-unknown-address",
                            f"{address}: unknown address (see the README's OSC table; "
                            f"e.g. {PREFIX}/note, {PREFIX}/param/<node>/<name>)")

    def _velocity(self, args: list, i: int) -> int:
        """MIDI velocity 0-127 from argument ``i``: as sent, or scaled from 0..1 under
        ``[osc] velocity = "unit"`` (any value above 0 sounds: at least velocity 1)."""
        if self.engine.patch.table("osc")["velocity"] != "unit":
            raw = _number(args, i, "velocity", 0, 127)
            if 0 < raw < 1:  # it would play at velocity 1, some 86 dB down: say what the sender meant
                raise OscArgError(f"argument {i + 1} (velocity): found {raw!r}, allowed 0-127 (for a 0..1 "
                                  f"controller set [osc] velocity = \"unit\" in the patch)")
            return int(round(raw))
        unit = _number(args, i, "velocity", 0.0, 1.0)
        return 0 if unit == 0 else max(1, round(unit * 127))

    def _patch(self, args: list) -> None:
        """/cadenza/patch s name | i index: switch within the patch list (PatchSetError is one line)."""
        which = args[0] if args else None
        if isinstance(which, float) and which.is_integer():
            which = int(which)
        if isinstance(which, bool) or not isinstance(which, (str, int)):
            raise OscArgError(f"argument 1 (patch): found {which!r}, allowed a patch name or an index")
        try:
            self.layer.switch_patch(which)
        except ValueError as exc:
            raise OscArgError(str(exc)) from None

    def _status(self, args: list, addr) -> None:
        """Answer /cadenza/status to the sender's IP, at the port it names or its own."""
        port = _number(args, 0, "port", 1, 65535, default=addr[1], integer=True)
        if not self.status_limiter.allow(addr[0], time.monotonic()):
            self.log.report("osc-status-rate", f"/cadenza/status from {addr[0]}: more than "
                                               f"{STATUS_REPLIES_PER_S} a second; not answered")
            return
        self.layer.send_status((addr[0], port))

    def _link(self, args: list, addr) -> None:
        """Answer /cadenza/link: the Link session's beat and the engine clock's at one host time."""
        link = self.engine.link
        if link is None:
            raise OscArgError("Ableton Link is off (cadenza play --link, or [clock] link = true in the patch)")
        host_us = float(_number(args, 0, "host_us", 0.0, 1e18, default=link.host_us()))
        port = _number(args, 1, "port", 1, 65535, default=addr[1], integer=True)
        if not self.status_limiter.allow(addr[0], time.monotonic()):
            self.log.report("osc-status-rate", f"/cadenza/link from {addr[0]}: more than "
                                               f"{STATUS_REPLIES_PER_S} a second; not answered")
            return
        link_beat, clock_beat = link.beats_at(host_us)
        _, _, bpm, playing, peers = link.state.tolist()
        builder = OscMessageBuilder(PREFIX + "/link")
        for value, tag in [(bpm, "f"), (int(peers), "i"), (int(playing), "i"), (host_us, "d"), (link_beat, "d"),
                           (clock_beat, "d"), (link.quantum, "f")]:
            builder.add_arg(value, tag)
        try:
            self.sock.sendto(builder.build().dgram, (addr[0], port))
        except OSError as exc:
            self.log.report("osc-send", f"/cadenza/link to {addr[0]}:{port}: {exc.strerror or exc}")

    def _midi(self, status: int, d1: int, d2: int, when: int) -> None:
        for kind, target, ch, a, b, value in self.engine.midi_map.events(status, d1, d2):
            self.ring.push(when, kind, target, ch, a, b, value)

    def _param(self, address: str, args: list, when: int) -> None:
        node_id, _, name = address[len(PREFIX) + len("/param/"):].partition("/")
        try:
            node, index, lo, hi = self.engine.graph.param_target(f"{node_id}.{name}")
        except KeyError:
            params = [f"{n.id}/{p}" for n in self.engine.graph.nodes for p in n.PARAMS]
            raise OscArgError(f"no such node parameter, allowed one of {', '.join(params)}") from None
        value = self._clamped(address, float(_number(args, 0, "value")), lo, hi)
        self.ring.push(when, Kind.PARAM, node, 0, index, 0, value)

    def _clamped(self, address: str, value: float, lo: float, hi: float) -> float:
        """``value`` (finite) clamped to lo..hi, with a line when it had to be."""
        if not lo <= value <= hi:
            self.log.report("osc-range", f"{address}: {value:g} outside {lo:g}..{hi:g}; clamped")
            value = min(max(value, lo), hi)
        return value

    def _transport(self, args: list, when: int) -> None:
        word = args[0] if args else None
        codes = {"stop": 0, "start": 1, "continue": 2}
        if word not in codes:
            raise OscArgError(f"argument 1: found {word!r}, allowed 'start', 'stop' or 'continue'")
        self.layer.transport(word)
        self.ring.push(when, Kind.TRANSPORT, BROADCAST, 0, codes[word], 0, 0.0)


class ReplyLimiter:
    """At most ``per_second`` replies to each source in any one-second window.

    Remembers the last ``max_sources`` sources (the oldest is forgotten first), so a
    flood from many addresses costs bounded memory.
    """

    def __init__(self, per_second: int, max_sources: int = 256):
        self.per_second = per_second
        self.max_sources = max_sources
        self._times: dict[str, collections.deque] = {}

    def allow(self, source: str, now: float) -> bool:
        """True (and counted) when ``source`` may have a reply at ``now`` (monotonic s)."""
        times = self._times.get(source)
        if times is None:
            if len(self._times) >= self.max_sources:
                del self._times[next(iter(self._times))]
            times = self._times[source] = collections.deque(maxlen=self.per_second)
        if len(times) == self.per_second and now - times[0] < 1.0:
            return False
        times.append(now)
        return True


class OscOut:
    """Sends outbound engine events to every target: ``/cadenza/out/<node>/<kind> ...``."""

    def __init__(self, targets: list[tuple[str, int]], pitch_rate_hz: float = 0.0):
        self.targets = targets
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.pitch_interval_s = 1.0 / pitch_rate_hz if pitch_rate_hz > 0 else 0.0
        self._last_pitch: dict[int, float] = {}
        self._pending_pitch: dict[int, tuple[float, int]] = {}  # node → (f0, voiced) awaiting loudness
        self.sent = 0
        self.failed = 0

    def messages(self, ev, node_name: str) -> list[bytes]:
        """The OSC datagrams for one outbound event (none when rate-limited away).

        Besides ``/cadenza/out/<node>/<kind>``, a beat also goes out as ``/cadenza/beat`` (a
        downbeat as ``/cadenza/downbeat``), a pitch report (PITCH then LOUDNESS at the same
        sample) as one ``/cadenza/pitch``, and a chord or key change as ``/cadenza/chord`` /
        ``/cadenza/key`` with its label.
        """
        kind = int(ev["kind"])
        base = f"{PREFIX}/out/{node_name}/"
        ch, a, b, value = int(ev["channel"]), int(ev["a"]), int(ev["b"]), float(ev["value"])
        key = int(ev["target"])
        if kind in (Kind.NOTE_ON, Kind.NOTE_OFF, Kind.PLAYED):  # PLAYED: a voice's report, b = 0 when off
            return [build_message(base + "note", [a, b if kind != Kind.NOTE_OFF else 0, ch])]
        if kind == Kind.BEAT:
            return [build_message(base + "beat", [a, value]), build_message(PREFIX + "/beat", [a, value, 0.0])]
        if kind == Kind.DOWNBEAT:
            return [build_message(base + "downbeat", [a, int(value)]), build_message(PREFIX + "/downbeat", [a])]
        if kind == Kind.PITCH:
            if self.pitch_interval_s:
                now = time.monotonic()
                if now - self._last_pitch.get(key, -1e9) < self.pitch_interval_s:
                    return []
                self._last_pitch[key] = now
            self._pending_pitch[key] = (value, a)
            return [build_message(base + "pitch", [value, a])]
        if kind == Kind.LOUDNESS and key in self._pending_pitch:
            f0, voiced = self._pending_pitch.pop(key)
            return [build_message(base + "loudness", [value]),
                    build_message(PREFIX + "/pitch", [f0, voiced, value])]
        if kind in (Kind.CHORD, Kind.KEY):
            word, label = ("chord", chord_label(a, b)) if kind == Kind.CHORD else ("key", key_label(a, b))
            return [build_message(base + word, [label, value]), build_message(f"{PREFIX}/{word}", [label])]
        if kind in (Kind.TEMPO, Kind.LOUDNESS, Kind.BEAT_PREDICTION):
            return [build_message(base + Kind.NAMES[kind], [value])]
        return [build_message(base + Kind.NAMES.get(kind, f"kind{kind}"), [ch, a, b, value])]

    def send(self, data: bytes, log=None) -> None:
        for target in self.targets:
            try:
                self.sock.sendto(data, target)
                self.sent += 1
            except OSError as exc:  # unreachable target: count, keep going
                self.failed += 1
                if log is not None:
                    log.report("osc-send", f"to {target[0]}:{target[1]}: {exc.strerror or exc}")

    def close(self) -> None:
        self.sock.close()
