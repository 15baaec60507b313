"""The chord and key listener: which triad sounds, and in which key, as the music plays.

:class:`ChordListener` (node type ``"chords"``) hears one audio input and per
frame publishes

- ``root``: the chord's root pitch class 0-11 (C = 0), -1 while no chord sounds;
- ``quality``: 0 major, 1 minor, -1 no chord (names in :mod:`cadenza.engine.harmony`);
- ``key``: tonic pitch class + 12 × mode (0 major, 1 minor), -1 until known;
- ``confidence``: 0..1, the chord's posterior;
- ``key_confidence``: 0..1, the key's share of the 24 keys' evidence;

and emits, out of the engine, a ``Kind.CHORD`` event (a = root or -1, b =
quality, value = confidence) whenever the chord changes and a ``Kind.KEY``
event (a = tonic, b = mode, value = key confidence) whenever the key does —
OSC ``/cadenza/chord s label`` and ``/cadenza/key s label``.

The chord classifier and the key's chord probabilities are learned
(``models/chords/chords.pt``, trained by ``python -m bench.chords --train``
on the bench's train renders; see its card ``models/chords/CARD.md``).

Causal, zero lookahead, one analysis every ``hop_ms``. Its fixed delay
(``delay_s``, the node's declared latency) is half the analysis window plus
the decimation filter's half length: a
label emitted live at time t describes the audio around ``t - delay_s``. A
chord change shows once the classifier and the chord HMM are convinced —
sometimes before ``delay_s``, from the newest part of the window, never
before the change sounds (see the README for the measured figures). The kernels and the
algorithm are in :mod:`cadenza.instruments.listeners.chord_kernels`;
:func:`track` runs the same node over a whole signal (``cadenza chords``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.engine import harness
from cadenza.engine.errors import ModelError
from cadenza.engine.events import OUTBOUND, Kind
from cadenza.engine.harmony import chord_label, key_label
from cadenza.engine.node import Context, Node, NodeIO, Option
from cadenza.instruments.listeners import chord_kernels as ck

MAX_EVENTS = 8  # per block: a chord and a key change per hop, hops at most every 5 ms

WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "chords" / "chords.pt"

DEFAULTS = {  # chosen on the tune part (bench.chords --tune)
    "window_ms": 170.0,
    "hop_ms": 20.0,
    "beta": 1.5,
    "stay": 0.8,
    "key_tau_s": 30.0,
    "key_margin": 0.1,
}


@dataclass
class ChordModel:
    """The learned parts: the chord classifier (see :mod:`chord_kernels`) and the key's chord log-probabilities."""

    lags: np.ndarray  # (n,) int64: hops back of the lagged treble and bass chroma among the features
    w1: np.ndarray  # (hidden, (4 + 2 n) * 12): the ReLU layer over the features rolled to a root
    b1: np.ndarray  # (hidden,)
    w2: np.ndarray  # (2, hidden): major and minor scores
    bias: np.ndarray  # (3,): major, minor, no chord
    key_lp: np.ndarray  # (24 keys, 24 chords): log P(chord | key)
    gamma: float  # front end: log(1 + gamma * x) of the semitone bands
    smooth: float  # front end: weight kept of the previous hop's chroma

    @property
    def n_features(self) -> int:
        """Chroma vectors per hop."""
        return ck.N_BASE + 2 * len(self.lags)


def load_model(path: Path = WEIGHTS) -> ChordModel:
    """The chord model saved by ``python -m bench.chords --train``, checked against its sha256."""
    from cadenza.models.weights import load_weights, reading

    if not path.is_file():
        raise ModelError(f"{path}: chord weights not found (train them: python -m bench.chords --train)")
    sd = load_weights(path)
    with reading(path, "chord listener weights"):
        arrays = {k: np.ascontiguousarray(sd[k].double().numpy()) for k in ("w1", "b1", "w2", "bias")}
        model = ChordModel(lags=sd["lags"].long().numpy().copy(), **arrays,
                           key_lp=ck.key_chord_logp(sd["mode_logp"].double().numpy()),
                           gamma=float(sd["gamma"]), smooth=float(sd["smooth"]))
    hidden = len(model.b1)
    if (model.w1.shape != (hidden, model.n_features * 12) or model.w2.shape != (2, hidden)
            or model.bias.shape != (3,) or (model.lags < 1).any()):
        raise ModelError(f"{path}: chord classifier of shapes {model.w1.shape} / {model.w2.shape} / "
                         f"{model.bias.shape} with lags {model.lags.tolist()}, allowed "
                         f"(hidden, {model.n_features * 12}) / (2, hidden) / (3,) with lags of 1 hop or more")
    return model


class ChordListener(Node):
    """Streaming chord and key recognition: one mono audio input, controls and CHORD / KEY events out."""

    OPTIONS = {
        "window_ms": Option(float, default=DEFAULTS["window_ms"], lo=40.0, hi=800.0,
                            doc="analysis window, ms (rounded to a power of two in samples; the model was "
                                "trained at the default)"),
        "hop_ms": Option(float, default=DEFAULTS["hop_ms"], lo=5.0, hi=100.0,
                         doc="analysis hop, ms (the model was trained at the default)"),
        "beta": Option(float, default=DEFAULTS["beta"], lo=0.1, hi=20.0,
                       doc="chord HMM emission sharpness: exp(beta * classifier score)"),
        "stay": Option(float, default=DEFAULTS["stay"], lo=0.0, hi=0.9999,
                       doc="chord HMM probability of keeping the chord per hop"),
        "gate_db": Option(float, default=-60.0, lo=-120.0, hi=0.0,
                          doc="window level (dBFS) below which no chord sounds"),
        "key_tau_s": Option(float, default=DEFAULTS["key_tau_s"], lo=1.0, hi=600.0,
                            doc="time constant of the key's chord histogram, s"),
        "key_margin": Option(float, default=DEFAULTS["key_margin"], lo=0.0, hi=1.0,
                             doc="mean chord log-probability a new key must gain over the current one"),
        "weights": Option(str, default="", doc="chord model (default: models/chords/chords.pt)"),
    }
    CONTROLS = {
        "root": "chord root pitch class 0-11 (C = 0), -1 no chord",
        "quality": "chord quality: 0 major, 1 minor, -1 no chord",
        "key": "key: tonic pitch class + 12 x mode (0 major, 1 minor), -1 until known",
        "confidence": "0..1 posterior of the chord",
        "key_confidence": "0..1 share of the key among the 24 keys",
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        self.inputs = {"in": 1}
        self.controls = dict(self.CONTROLS)

    def prepare(self, ctx: Context) -> None:
        o = self.options
        self.model = model = self.load_model()
        self.sample_rate = sr = float(ctx.sample_rate)
        factor, self.fir = ck.decimation(sr)
        rate = sr / factor  # the analysis rate, Hz
        self.n = n = 1 << round(math.log2(o["window_ms"] * 1e-3 * rate))
        hop = max(1, round(o["hop_ms"] * 1e-3 * rate))
        self.delay_s = n / 2 / rate + (ck.FIR_TAPS - 1) / 2 / sr
        self.latency_samples = round(self.delay_s * sr)
        cfg = np.zeros(ck.N_CFG, np.float64)
        cfg[ck.C_DECIMATE] = factor
        cfg[ck.C_BIN_TO_MIDI] = math.log2(rate / n)
        cfg[ck.C_HOP] = hop
        cfg[ck.C_GATE] = 10.0 ** (o["gate_db"] / 10.0)
        cfg[ck.C_GAMMA] = model.gamma
        cfg[ck.C_SMOOTH] = model.smooth
        cfg[ck.C_BETA] = o["beta"]
        cfg[ck.C_STAY] = o["stay"]
        cfg[ck.C_KEY_COEF] = math.exp(-hop / (o["key_tau_s"] * rate))
        cfg[ck.C_KEY_MARGIN] = o["key_margin"]
        cfg[ck.C_KEY_MIN_HOPS] = math.ceil(ck.KEY_MIN_S * rate / hop)
        self.cfg = cfg
        self.st = np.zeros(ck.N_ST, np.float64)
        self.hist = np.zeros(ck.FIR_TAPS, np.float64)
        self.ring = np.zeros(n, np.float64)
        self.window = np.hanning(n + 1)[:n]
        self.frame = np.zeros(n, np.float64)
        self.spec = np.zeros(n // 2 + 1, np.complex128)
        self.mag = np.zeros(n // 2 + 1, np.float64)
        self.semi = np.zeros(ck.P_HI - ck.P_LO, np.float64)
        self.chroma = np.zeros((model.n_features, 12), np.float64)  # the classifier's features
        self.past = np.zeros((int(model.lags.max(initial=0)) + 1, 2, 12), np.float64)  # treble, bass per hop
        self.u = np.zeros(model.n_features * 12, np.float64)
        self.hid = np.zeros(len(model.b1), np.float64)
        self.score = np.zeros(ck.NO_CHORD_STATE + 1, np.float64)
        self.post = np.zeros(ck.NO_CHORD_STATE + 1, np.float64)
        self.key_acc = np.zeros(ck.N_CHORDS, np.float64)
        self.ev_off = np.zeros(MAX_EVENTS, np.int64)
        self.ev_kind = np.zeros(MAX_EVENTS, np.int64)
        self.ev_a = np.zeros(MAX_EVENTS, np.int64)
        self.ev_b = np.zeros(MAX_EVENTS, np.int64)
        self.ev_val = np.zeros(MAX_EVENTS, np.float64)
        self.reset()
        # compile (or load from cache) on a cleared state; open() resets again after
        scratch = {k: np.zeros(ctx.block, np.float32) for k in self.CONTROLS}
        self._run(np.zeros(ctx.block, np.float32), scratch)

    def load_model(self) -> ChordModel:
        """The chord model this node runs (``weights``, else the shipped one); called by ``prepare``."""
        return load_model(Path(self.options["weights"] or WEIGHTS))

    def reset(self) -> None:
        self.st[:] = 0.0
        self.st[ck.S_CHORD] = ck.NO_CHORD_STATE
        self.st[ck.S_CONF] = 1.0
        self.st[ck.S_KEY] = -1.0
        self.hist[:] = 0.0
        self.ring[:] = 0.0
        self.chroma[:] = 0.0
        self.past[:] = 0.0
        self.post[:] = 0.0
        self.post[ck.NO_CHORD_STATE] = 1.0
        self.key_acc[:] = 0.0

    def _run(self, x: np.ndarray, out: dict) -> int:
        m = self.model
        return ck.chord_block(
            x, self.cfg, self.st, self.fir, self.hist, self.ring, self.window, self.frame, self.spec, self.mag,
            self.semi, self.chroma, self.past, m.lags, self.u, self.hid, m.w1, m.b1, m.w2, m.bias, self.score,
            self.post, self.key_acc, m.key_lp, out["root"], out["quality"], out["key"], out["confidence"], out["key_confidence"],
            self.ev_off, self.ev_kind, self.ev_a, self.ev_b, self.ev_val)

    def process(self, io: NodeIO) -> None:
        n = self._run(io.inputs["in"][0], io.published)
        for k in range(n):
            io.emit(int(self.ev_off[k]), Kind(self.ev_kind[k]), 0, int(self.ev_a[k]), int(self.ev_b[k]),
                    float(self.ev_val[k]), target=OUTBOUND)


@dataclass
class ChordTrack:
    """What the listener emitted over a whole signal. Times in seconds from the start, as emitted live."""

    delay_s: float  # the listener's fixed delay: a label emitted at t describes t - delay_s
    chord_times: np.ndarray
    chord_labels: list[str]
    chord_confidence: np.ndarray
    key_times: np.ndarray
    key_labels: list[str]
    key_confidence: np.ndarray
    block_us: np.ndarray  # time in the node's process per block, microseconds

    def final_key(self) -> str:
        """The key reported last ("" when none was)."""
        return self.key_labels[-1] if self.key_labels else ""


def track(audio: np.ndarray, sample_rate: int, block: int = 128, **options) -> ChordTrack:
    """Run a fresh listener over mono or (channels, frames) ``audio`` block by block, the stream
    starting in no-chord (a first ``N`` row at 0 s)."""
    x = np.asarray(audio, np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
    node = ChordListener("chords", **options)
    result = harness.run(node, x, sample_rate, block=block, frames=x.shape[0])
    ev = result.events
    chords = ev[ev["kind"] == Kind.CHORD]
    keys = ev[ev["kind"] == Kind.KEY]
    return ChordTrack(
        delay_s=node.delay_s,
        chord_times=np.concatenate([[0.0], chords["time"] / sample_rate]),
        chord_labels=["N"] + [chord_label(int(e["a"]), int(e["b"])) for e in chords],
        chord_confidence=np.concatenate([[1.0], chords["value"].astype(np.float64)]),
        key_times=keys["time"] / sample_rate,
        key_labels=[key_label(int(e["a"]), int(e["b"])) for e in keys],
        key_confidence=keys["value"].astype(np.float64), block_us=result.block_us)
