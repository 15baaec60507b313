"""A causal streaming beat tracker: beats as they happen, and the next one before it happens.

:class:`BeatTracker` is a listener node. It hears one audio input, and per
block publishes

- ``bpm``: the tracked tempo (beats per minute); it holds its last value
  through silence, and is 0 until the first confident frame;
- ``phase``: position inside the current beat, 0 at the beat, rising to 1;
- ``confidence``: 0..1, how concentrated the beat-phase belief is (0 while
  the input is silent);
- ``next_beat_s``: seconds from this block's first frame to the next
  predicted beat (so it is known a block or more before the beat); 0 while
  the tracker is not confident (silence);
- ``bar_phase``: position inside the bar, 0 at the downbeat, rising to 1;
  0 until the bar is known and while the tracker is not confident;
- ``beats_per_bar``: the bar's length in beats that ``bar_phase`` counts (0
  at the same times);

and emits ``Kind.BEAT`` events (value = bpm, a = beat index) at the sample
where the tracker places the beat — the predicted sample when it is locked,
else the sample where it decides — plus one ``Kind.BEAT_PREDICTION`` per beat,
``lead`` seconds ahead (value = seconds from the event to the predicted beat),
and a ``Kind.DOWNBEAT`` (a = bar number, value = beats per bar) at the sample
of each beat that starts a bar. The bar is inferred causally from the accents
of past beats (:mod:`cadenza.instruments.listeners.bar_kernels`): its length
is ``beats_per_bar``, or, when that is 0, whichever of 2, 3 or 4 beats the
accents show most clearly (6/8 and 12/8 count in dotted quarters: 2 and 4).

The beat activation is, by default, the geometric mean of a log-filtered
spectral-flux ratio and a tiny causal onset GRU (models/beat, run as a numba
port); either may be used alone (``activation``). The onset novelty, the
network step are in :mod:`cadenza.engine.dsp.onset` (shared with the
network's trainer), the bar-pointer forward pass in
:mod:`cadenza.instruments.listeners.beat_kernels`, the downbeat inference in
:mod:`cadenza.instruments.listeners.bar_kernels`. Zero lookahead; deterministic.
The same object runs over a file in :mod:`cadenza.engine.cli.beats`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cadenza.engine.errors import ModelError
from cadenza.engine.events import Kind
from cadenza.engine.dsp import onset
from cadenza.engine.dsp.onset import N_GROUPS, OnsetFrontEnd
from cadenza.engine.node import Context, Node, NodeIO, Option
from cadenza.instruments.listeners import bar_kernels, beat_kernels as bk

MAX_EVENTS = 16  # per block: a few beats, downbeats and predictions at most
KINDS = {int(k): k for k in (Kind.BEAT, Kind.BEAT_PREDICTION, Kind.DOWNBEAT)}  # kernel's number → Kind
NET_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "beat" / "onset_gru.pt"


_NO_NET = {k: np.zeros((0, 0) if k.startswith("w_h") or k == "w_ih" else 0, np.float64)
           for k in ("w_ih", "w_hh", "b_ih", "b_hh", "w_out", "b_out", "w_down", "b_down")}


def load_onset_net(path: Path = NET_WEIGHTS) -> dict[str, np.ndarray]:
    """The onset GRU's weights as float64 arrays for :func:`cadenza.engine.dsp.onset.gru_step`; the
    downbeat read-out (``w_down``, ``b_down``) is empty for a network with one output (beats only)."""
    from cadenza.models.weights import load_weights, reading

    if not path.is_file():
        raise ModelError(f"{path}: beat weights not found; activation 'net' and 'mix' need them "
                         "(train them: python -m cadenza.models.beat.train, or use activation = 'flux')")
    sd = load_weights(path)
    with reading(path, "onset GRU weights"):
        net = {"w_ih": sd["gru.weight_ih_l0"], "w_hh": sd["gru.weight_hh_l0"], "b_ih": sd["gru.bias_ih_l0"],
               "b_hh": sd["gru.bias_hh_l0"], "w_out": sd["out.weight"][0], "b_out": sd["out.bias"][:1],
               "w_down": sd["out.weight"][1:2].reshape(-1), "b_down": sd["out.bias"][1:2]}
        net = {k: np.ascontiguousarray(v.double().numpy()) for k, v in net.items()}
    if net["w_ih"].ndim != 2 or net["w_ih"].shape[1] != N_GROUPS:
        raise ModelError(f"{path}: the network takes inputs of shape {net['w_ih'].shape[1:]}, allowed ({N_GROUPS},)")
    hidden = net["w_hh"].shape[-1]
    if len(net["w_out"]) != hidden or len(net["w_down"]) not in (0, hidden) or len(net["b_down"]) != (
            1 if len(net["w_down"]) else 0):
        raise ModelError(f"{path}: the read-out weights have shape {tuple(sd['out.weight'].shape)} and "
                         f"{tuple(sd['out.bias'].shape)}, allowed (1 or 2, {hidden}) and (1 or 2,)")
    return net


class BeatTracker(Node):
    """Streaming beat tracker node: one mono audio input, controls and beat events out."""

    OPTIONS = {
        "min_bpm": Option(float, default=55.0, lo=20.0, hi=300.0, doc="slowest tempo tracked, BPM"),
        "max_bpm": Option(float, default=190.0, lo=30.0, hi=400.0, doc="fastest tempo tracked, BPM"),
        "fps": Option(float, default=onset.FPS, lo=50.0, hi=400.0, doc="novelty frames per second"),
        "window_ms": Option(float, default=onset.WINDOW_MS, lo=10.0, hi=200.0,
                            doc="analysis window, ms (rounded to a power of two in samples)"),
        "delay_ms": Option(float, default=onset.DELAY_MS, lo=0.0, hi=200.0,
                           doc="how far a frame's onset evidence lags its last sample, ms"),
        "kappa": Option(float, default=2.0, lo=0.01, hi=100.0,
                        doc="novelty → activation: (flux / (flux + kappa * running mean)) ** gamma"),
        "activation": Option(str, default="mix", choices=("flux", "net", "mix"),
                             doc="beat activation: the flux formula, the onset network in models/beat, "
                                 "or their geometric mean"),
        "weights": Option(str, default="", doc="onset network weights (default: models/beat/onset_gru.pt)"),
        "gamma": Option(float, default=2.0, lo=0.25, hi=8.0,
                        doc="activation exponent: > 1 keeps only the strongest onsets"),
        "lambda_o": Option(float, default=32.0, lo=2.0, hi=64.0,
                           doc="observation: the first 1/lambda_o of each beat is the (tapered) beat region"),
        "lambda_t": Option(float, default=30.0, lo=1.0, hi=1000.0,
                           doc="tempo transition sharpness at each beat"),
        "jump": Option(float, default=1e-3, lo=0.0, hi=0.5, doc="probability of a free tempo jump per beat"),
        "prior_bpm": Option(float, default=110.0, lo=30.0, hi=300.0, doc="centre of the tempo prior, BPM"),
        "prior_octaves": Option(float, default=1.0, lo=0.0, hi=10.0,
                                doc="width of the tempo prior, octaves (0: flat)"),
        "bands_per_octave": Option(int, default=onset.BANDS_PER_OCTAVE, lo=3, hi=48),
        "low_boost": Option(float, default=onset.LOW_BOOST, lo=0.0, hi=20.0,
                            doc="extra weight of the flux below 250 Hz (kick, bass)"),
        "max_filter": Option(int, default=onset.MAX_FILTER, lo=0, hi=8, doc="SuperFlux neighbour bands each side"),
        "gate_db": Option(float, default=-60.0, lo=-120.0, hi=0.0,
                          doc="input power (dBFS) below which no beats are emitted"),
        "conf_min": Option(float, default=0.3, lo=0.0, hi=1.0, doc="confidence below which no beats are emitted"),
        "lead": Option(float, default=0.1, lo=0.0, hi=2.0,
                       doc="how long before a predicted beat its prediction event is sent, s"),
        "beats_per_bar": Option(int, default=0, lo=0, hi=bar_kernels.MAX_M,
                                doc="beats in a bar (6/8: 2, 12/8: 4, counted in dotted quarters); "
                                    "0 infers 2, 3 or 4 from the accents"),
    }
    CONTROLS = {
        "bpm": "tempo, beats per minute",
        "phase": "position in the beat, 0 at the beat .. 1",
        "confidence": "0..1 belief in the beat phase (0 when silent)",
        "next_beat_s": "seconds from the block start to the next predicted beat",
        "bar_phase": "position in the bar, 0 at the downbeat .. 1 (0 until the bar is known)",
        "beats_per_bar": "beats in the bar bar_phase counts (0 until the bar is known)",
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        if self.options["min_bpm"] >= self.options["max_bpm"]:
            raise ValueError(f"node.{node_id}: min_bpm must be below max_bpm")
        if self.options["beats_per_bar"] == 1:
            raise ValueError(f"node.{node_id}: beats_per_bar: found 1, allowed 0 (infer) or 2..{bar_kernels.MAX_M}")
        self.inputs = {"in": 1}
        self.controls = dict(self.CONTROLS)

    def prepare(self, ctx: Context) -> None:
        o = self.options
        sr = float(ctx.sample_rate)
        self.sample_rate = sr
        self.front = f = OnsetFrontEnd(sr, o["fps"], o["window_ms"], o["bands_per_octave"], o["low_boost"],
                                       o["max_filter"])
        hop, fps, win = f.hop, f.fps, f.win
        self.hop, self.fps, self.win = hop, fps, win
        self.tau, self.off, self.obs_w, self.trans, self.t_lo, self.t_hi, self.prior = bk.state_space(
            fps, o["min_bpm"], o["max_bpm"], o["lambda_t"], o["jump"], o["prior_bpm"],
            o["prior_octaves"], o["lambda_o"])
        n_states = int(self.tau.sum())
        self.state_tempo = np.repeat(np.arange(self.tau.shape[0]), self.tau).astype(np.int64)
        positions = np.arange(n_states) - self.off[self.state_tempo]
        self.hist = np.zeros(20, np.float64)
        self.state_bin = (positions * len(self.hist)) // self.tau[self.state_tempo]
        self.xin = np.zeros(N_GROUPS, np.float64)
        self.net = _NO_NET if o["activation"] == "flux" else load_onset_net(Path(o["weights"] or NET_WEIGHTS))
        hidden = self.net["w_hh"].shape[1]
        self.h = np.zeros(hidden, np.float64)
        self.gates_i = np.zeros(3 * hidden, np.float64)
        self.gates_h = np.zeros(3 * hidden, np.float64)
        cfg = np.zeros(bk.N_CFG, np.float64)
        cfg[bk.C_SR] = sr
        cfg[bk.C_HOP] = hop
        cfg[bk.C_WIN] = win
        cfg[bk.C_DELAY] = o["delay_ms"] * 1e-3 * sr
        cfg[bk.C_KAPPA] = o["kappa"]
        cfg[bk.C_GAMMA] = o["gamma"]
        cfg[bk.C_JUMP] = o["jump"]
        cfg[bk.C_MIX] = 1.0 if o["activation"] == "mix" else 0.0
        cfg[bk.C_MU_COEF] = np.exp(-1.0 / (2.0 * fps))  # 2 s running mean of the flux
        cfg[bk.C_LEVEL_COEF] = np.exp(-1.0 / (0.5 * sr))  # 0.5 s power average
        cfg[bk.C_GATE_DB] = o["gate_db"]
        cfg[bk.C_CONF_MIN] = o["conf_min"]
        cfg[bk.C_LEAD] = o["lead"] * sr
        cfg[bk.C_MIN_LEAD] = ctx.block
        cfg[bk.C_LATE_TOL] = 0.25
        cfg[bk.C_OBS_FLOOR] = 1e-3
        cfg[bk.C_NOVELTY_FLOOR] = 1e-3
        self.cfg = cfg
        self.st = np.zeros(bk.N_ST, np.float64)
        self.ring = np.zeros(win, np.float64)
        self.alpha = np.zeros(n_states, np.float64)
        self.tmp = np.zeros(n_states, np.float64)
        self.ends = np.zeros(self.tau.shape[0], np.float64)
        self.ev_off = np.zeros(MAX_EVENTS, np.int64)
        self.ev_kind = np.zeros(MAX_EVENTS, np.int64)
        self.ev_a = np.zeros(MAX_EVENTS, np.int64)
        self.ev_val = np.zeros(MAX_EVENTS, np.float64)
        self.act_log = np.zeros(0, np.float64)
        centre_hz = (f.b_start + f.b_len / 2) * sr / win
        self.low_band = (centre_hz < onset.LOW_HZ).astype(np.float64)
        (self.bar, self.bar_hist, self.bar_pend, self.bar_acc, self.bar_accw,
         self.body_a, self.body_b) = bar_kernels.new_state(int(self.tau.max()), f.cur.shape[0])
        self.reset()
        # compile (or load from cache) on a cleared state; open() resets again after
        scratch = {k: np.zeros(ctx.block, np.float32) for k in self.CONTROLS}
        self._run(np.zeros(ctx.block, np.float32), 0, scratch)

    def reset(self) -> None:
        self.st[:] = 0.0
        self.st[bk.S_LAST_BEAT] = -1e18
        self.st[bk.S_LAST_PRED] = -1e18
        self.ring[:] = 0.0
        self.front.prev[:] = 0.0
        self.h[:] = 0.0
        bar_kernels.bar_reset(self.bar, self.bar_hist, self.bar_pend, self.bar_acc, self.bar_accw)
        bk.reset_alpha(self.alpha, self.tau, self.off, self.prior)

    def log_activations(self, frames: int) -> None:
        """Keep the first ``frames`` observations (0..1) in ``self.act_log`` (not for live use)."""
        self.act_log = np.zeros(frames, np.float64)

    def _run(self, x: np.ndarray, block_start: int, out: dict) -> int:
        f = self.front
        return bk.beat_block(
            x, block_start, self.cfg, self.st, self.ring, f.window, f.frame, f.spec, f.mag, f.b_start, f.b_len, f.b_w, f.b_gain, f.cur, f.prev,
            f.bdiff, f.max_filter, f.group, self.xin, self.net["w_ih"], self.net["w_hh"], self.net["b_ih"],
            self.net["b_hh"], self.net["w_out"], self.net["b_out"], self.net["w_down"], self.net["b_down"], self.h, self.gates_i, self.gates_h, self.alpha, self.tmp, self.ends, self.hist, self.tau, self.off,
            self.trans, self.t_lo, self.t_hi, self.prior, self.obs_w, self.options["lambda_o"], self.state_tempo, self.state_bin,
            out["bpm"], out["phase"], out["confidence"], out["next_beat_s"],
            self.ev_off, self.ev_kind, self.ev_a, self.ev_val, self.act_log,
            self.low_band, self.bar, self.bar_hist, self.bar_pend, self.bar_acc, self.bar_accw, self.body_a,
            self.body_b, self.options["beats_per_bar"], out["bar_phase"])

    def process(self, io: NodeIO) -> None:
        x = io.inputs["in"][0]
        out = io.published
        n = self._run(x, io.block_start, out)
        out["beats_per_bar"][:] = self.bar[bar_kernels.B_M] if self.st[bk.S_ACTIVE] > 0.0 else 0.0
        for k in range(n):
            io.emit(int(self.ev_off[k]), KINDS[self.ev_kind[k]], 0, int(self.ev_a[k]), 0, float(self.ev_val[k]))
