"""The classic channel vocoder: a voice's spectral envelope imposed on a carrier.

The modulator (a voice, mono) and the carrier (any voice of the patch, stereo,
or an internal saw / noise) each pass through a bank of log-spaced band-pass
filters (two cascaded RBJ biquads per band, 4th order). An envelope follower
(attack / release one-pole on the rectified band) measures each modulator
band; the matching carrier band is scaled by it and the bands are summed.

- **Formant shift**: the carrier bank's centres are the modulator bank's times
  ``2 ** (formant / 12)``, so the voice's formants move up or down while the
  carrier's pitch stays put.
- **Unvoiced / sibilant pass-through**: a detector compares the modulator's
  energy above ``SIBILANT_HZ`` with its total energy. When the voice is
  unvoiced (an "s", "f", "t") white noise is mixed into the carrier, so the
  high bands have something to shape, and the modulator's own high band is
  passed to the output — words stay intelligible even when no key is held.

Everything runs in one numba kernel per block over preallocated state.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from cadenza.engine.dsp.noise import next_noise, noise_state
from cadenza.engine.dsp.units import semitones_to_ratio
from cadenza.engine.node import Node, Option, Param

CARRIERS = ("input", "saw", "noise")
SIBILANT_HZ = 4000.0  # the high band the unvoiced detector and pass-through use, Hz
DETECT_MS = 8.0  # smoothing of the unvoiced detector's energies, ms
UNVOICED_LO, UNVOICED_HI = 0.25, 0.6  # high/total energy ratio mapped to 0..1 "unvoiced"
NOISE_LEVEL = 0.3  # white noise injected into the carrier when fully unvoiced (linear)
CARRIER_ATTACK_MS, CARRIER_RELEASE_MS = 2.0, 20.0  # carrier band followers (whitening), ms
CARRIER_FLOOR = 1e-3  # carrier band level (linear) below which a band is not whitened further
CHUNK = 32  # frames between carrier-follower updates (every block size allowed is a multiple)
BAND_GAIN = 1.2  # make-up gain: whitened bands sum back to about the voice's level
NOISE_SEED = 12345  # the carrier noise's generator: the same stream after every load and reset


@njit(nogil=True, cache=True)
def bandpass_coefs(coefs, centres_hz, ratio, sr):
    """RBJ band-pass (0 dB peak) coefficients for each band into ``coefs`` (3, bands).

    ``ratio``: spacing between neighbouring centres (>1); the band-width spans it.
    Rows: b0 (b1 = 0, b2 = -b0), a1, a2. Bands above 0.45 × sr get zeros (silent).
    """
    half = math.sqrt(ratio)
    q = 1.0 / (half - 1.0 / half)
    for k in range(centres_hz.shape[0]):
        f = centres_hz[k]
        if f >= 0.45 * sr:
            coefs[:, k] = 0.0
            continue
        w0 = 2.0 * math.pi * f / sr
        alpha = math.sin(w0) / (2.0 * q)
        a0 = 1.0 + alpha
        coefs[0, k] = alpha / a0
        coefs[1, k] = -2.0 * math.cos(w0) / a0
        coefs[2, k] = (1.0 - alpha) / a0


@njit(nogil=True, cache=True, inline="always")
def _biquad(x, c, s):
    """One transposed direct-form II biquad step; ``c`` = b0, b1, b2, a1, a2; state ``s`` (2,)."""
    y = c[0] * x + s[0]
    s[0] = c[1] * x - c[3] * y + s[1]
    s[1] = c[2] * x - c[4] * y
    return y


@njit(nogil=True, cache=True, inline="always")
def _band(x, k, b0s, a1s, a2s, s0, s1, s2, s3):
    """One sample through band k: two cascaded band-pass biquads (b1 = 0, b2 = -b0), TDF-II."""
    b0, a1, a2 = b0s[k], a1s[k], a2s[k]
    y = b0 * x + s0[k]
    s0[k] = -a1 * y + s1[k]
    s1[k] = -b0 * x - a2 * y
    z = b0 * y + s2[k]
    s2[k] = -a1 * z + s3[k]
    s3[k] = -b0 * y - a2 * z
    return z


@njit(nogil=True, cache=True)
def vocoder_kernel(out, modulator, carrier, mod_coefs, car_coefs, mod_state, car_state, env,
                   car_env, misc, noise_state, hp_coefs, scratch, env_trace, carrier_mode, carrier_hz, sr,
                   attack_s, release_s, sibilance, gain):
    """Vocode one block as ``CHUNK``-frame pieces (see :func:`vocode_chunk` for the arguments): the
    carrier followers move once a chunk, so the output does not depend on the engine's block size."""
    for lo in range(0, out.shape[1], CHUNK):
        hi = min(lo + CHUNK, out.shape[1])
        vocode_chunk(out[:, lo:hi], modulator[:, lo:hi], carrier[:, lo:hi], mod_coefs, car_coefs, mod_state,
                     car_state, env, car_env, misc, noise_state, hp_coefs, scratch[:, :hi - lo],
                     env_trace[:hi - lo], carrier_mode, carrier_hz, sr, attack_s, release_s, sibilance, gain)


@njit(nogil=True, cache=True, fastmath=True)
def vocode_chunk(out, modulator, carrier, mod_coefs, car_coefs, mod_state, car_state, env,
                 car_env, misc, noise_state, hp_coefs, scratch, env_trace, carrier_mode, carrier_hz, sr,
                 attack_s, release_s, sibilance, gain):
    """Vocode one chunk.

    out: (2, frames) float32; modulator: (1, frames) float32 (row 0 is read: a per-block row view
    passed in from Python would cost an allocation numba keeps); carrier: (2, frames) float32
    (read only when ``carrier_mode`` is 0 = input; 1 = internal saw at ``carrier_hz``, 2 = noise).
    mod_coefs / car_coefs: (3, bands) band-pass biquads (see :func:`bandpass_coefs`), each band
    run twice in cascade; mod_state: (4, bands); car_state: (2, 4, bands); env: (bands,) voice
    band envelopes; car_env: (3, bands) carrier band envelopes and work rows (each carrier band
    is divided by its own envelope as of the previous block — whitened — then scaled by the
    voice's); misc: [saw phase, high energy, total energy, hp state 1, hp state 2]; noise_state: the
    node's own white-noise generator (:func:`cadenza.engine.dsp.noise.noise_state`);
    hp_coefs: (5,) high-pass biquad; scratch: (3, frames) float64; env_trace: (frames, bands)
    float64. Times in seconds, gain linear. Band loops are innermost so they vectorise across
    bands. A carrier whose two channels are equal (an internal one, or a mono voice) is
    filtered once.
    """
    frames = out.shape[1]
    bands = env.shape[0]
    att = 1.0 - math.exp(-1.0 / max(attack_s * sr, 1.0))
    rel = 1.0 - math.exp(-1.0 / max(release_s * sr, 1.0))
    det = 1.0 - math.exp(-1.0 / (DETECT_MS * 1e-3 * sr))
    c_att = 1.0 - math.exp(-frames / (CARRIER_ATTACK_MS * 1e-3 * sr))
    c_rel = 1.0 - math.exp(-frames / (CARRIER_RELEASE_MS * 1e-3 * sr))
    car_gain = car_env[1]
    car_sum = car_env[2]
    for k in range(bands):  # carrier whitening gains from the envelopes up to the last block
        car_gain[k] = 1.0 / (car_env[0, k] + CARRIER_FLOOR)
        car_sum[k] = 0.0
    hp_state = misc[3:5]
    stereo = False
    if carrier_mode == 0:
        for i in range(frames):
            if carrier[0, i] != carrier[1, i]:
                stereo = True
                break
    # pass 1, per sample: unvoiced detector, carrier (+ noise when unvoiced)
    for i in range(frames):
        x = modulator[0, i]
        hp = _biquad(x, hp_coefs, hp_state)
        misc[1] += det * (hp * hp - misc[1])
        misc[2] += det * (x * x - misc[2])
        ratio = misc[1] / (misc[2] + 1e-12)
        unvoiced = min(max((ratio - UNVOICED_LO) / (UNVOICED_HI - UNVOICED_LO), 0.0), 1.0)
        noise = next_noise(noise_state)
        if carrier_mode == 1:
            phase = misc[0] + carrier_hz / sr
            misc[0] = phase - math.floor(phase)
            c0 = 2.0 * misc[0] - 1.0
            c1 = c0
        elif carrier_mode == 2:
            c0 = noise
            c1 = noise
        else:
            c0 = carrier[0, i]
            c1 = carrier[1, i]
        scratch[0, i] = c0 + unvoiced * NOISE_LEVEL * noise
        scratch[1, i] = c1 + unvoiced * NOISE_LEVEL * noise
        scratch[2, i] = sibilance * unvoiced * hp
    # pass 2: the voice's band envelopes, per sample (two cascaded biquads per band)
    b0s, a1s, a2s = mod_coefs[0], mod_coefs[1], mod_coefs[2]
    s0, s1, s2, s3 = mod_state[0], mod_state[1], mod_state[2], mod_state[3]
    for i in range(frames):
        x = modulator[0, i]
        trace = env_trace[i]
        for k in range(bands):
            z = _band(x, k, b0s, a1s, a2s, s0, s1, s2, s3)
            level = abs(z)
            e = env[k]
            e += (att if level > e else rel) * (level - e)
            env[k] = e
            trace[k] = e * car_gain[k]
    # pass 3: each carrier channel through the same bands, whitened, scaled and summed
    b0s, a1s, a2s = car_coefs[0], car_coefs[1], car_coefs[2]
    channels = 2 if stereo else 1
    for c in range(channels):
        s0, s1, s2, s3 = car_state[c, 0], car_state[c, 1], car_state[c, 2], car_state[c, 3]
        src = scratch[c]
        for i in range(frames):
            x = src[i]
            trace = env_trace[i]
            acc = 0.0
            for k in range(bands):
                z = _band(x, k, b0s, a1s, a2s, s0, s1, s2, s3)
                car_sum[k] += abs(z)
                acc += z * trace[k]
            out[c, i] = (acc * BAND_GAIN + scratch[2, i]) * gain
    if not stereo:
        for i in range(frames):
            out[1, i] = out[0, i]
        car_state[1] = car_state[0]
    for k in range(bands):  # carrier band followers, updated once per block
        level = car_sum[k] / (channels * frames)
        ce = car_env[0, k]
        car_env[0, k] = ce + (c_att if level > ce else c_rel) * (level - ce)


def band_centres(bands: int, lo_hz: float, hi_hz: float) -> np.ndarray:
    """``bands`` log-spaced centre frequencies from ``lo_hz`` to ``hi_hz`` (Hz)."""
    return np.geomspace(lo_hz, hi_hz, bands)


def highpass_coefs(cutoff_hz: float, sr: float) -> np.ndarray:
    """RBJ high-pass biquad (Q = 0.707): b0, b1, b2, a1, a2."""
    w0 = 2.0 * math.pi * cutoff_hz / sr
    alpha = math.sin(w0) / (2.0 * 0.7071)
    cw = math.cos(w0)
    a0 = 1.0 + alpha
    return np.array([(1 + cw) / 2 / a0, -(1 + cw) / a0, (1 + cw) / 2 / a0,
                     -2 * cw / a0, (1 - alpha) / a0], np.float64)


class ChannelVocoder(Node):
    """Channel vocoder voice: ``modulator`` (1 ch, the voice) shapes ``carrier`` (2 ch); stereo out.

    Wire it with ``input = { modulator = "adc", carrier = "piano" }``, or set
    ``carrier = "saw"`` / ``"noise"`` to use an internal carrier.
    """

    OPTIONS = {
        "bands": Option(int, default=20, lo=8, hi=40, doc="number of bands"),
        "carrier": Option(str, default="input", choices=CARRIERS,
                          doc="'input' (the carrier port), or an internal saw / noise"),
        "lo_hz": Option(float, default=100.0, lo=20.0, hi=1000.0, doc="lowest band centre, Hz"),
        "hi_hz": Option(float, default=10000.0, lo=2000.0, hi=20000.0, doc="highest band centre, Hz"),
    }
    PARAMS = {
        "attack": Param(0.004, 0.0005, 0.2, "s", "envelope follower attack"),
        "release": Param(0.03, 0.002, 1.0, "s", "envelope follower release"),
        "formant": Param(0.0, -12.0, 12.0, "semitones", "shift of the voice's formants"),
        "sibilance": Param(0.7, 0.0, 1.0, "level", "unvoiced high band passed through"),
        "carrier_hz": Param(110.0, 20.0, 2000.0, "Hz", "internal saw carrier frequency"),
        "gain_db": Param(0.0, -60.0, 24.0, "dB"),
    }

    def __init__(self, node_id: str, **options):
        super().__init__(node_id, **options)
        if self.options["lo_hz"] * 2 >= self.options["hi_hz"]:
            raise ValueError(f"node.{node_id}: lo_hz must be below hi_hz / 2")
        self.inputs = {"modulator": 1, "carrier": 2}
        self.outputs = {"out": 2}
        self.carrier_mode = CARRIERS.index(self.options["carrier"])

    def prepare(self, ctx) -> None:
        self.sample_rate = float(ctx.sample_rate)
        n = self.options["bands"]
        self.centres = band_centres(n, self.options["lo_hz"], self.options["hi_hz"])
        self.ratio = float(self.centres[1] / self.centres[0])
        self.mod_coefs = np.zeros((3, n))
        self.car_coefs = np.zeros((3, n))
        self.shifted = np.zeros(n)
        self.mod_state = np.zeros((4, n))
        self.car_state = np.zeros((2, 4, n))
        self.env = np.zeros(n)
        self.car_env = np.zeros((3, n))
        self.misc = np.zeros(5)
        self.noise = noise_state(NOISE_SEED)
        bandpass_coefs(self.mod_coefs, self.centres, self.ratio, self.sample_rate)
        self.hp_coefs = highpass_coefs(SIBILANT_HZ, self.sample_rate)
        self.scratch = np.zeros((3, ctx.block))
        self.env_trace = np.zeros((ctx.block, self.options["bands"]))
        self._formant = math.nan

    def process(self, io) -> None:
        p, P = self.params, self.P
        if p[P.formant] != self._formant:  # formant shift moved: re-tune the carrier bank
            self._formant = p[P.formant]
            np.multiply(self.centres, semitones_to_ratio(float(p[P.formant])), out=self.shifted)
            bandpass_coefs(self.car_coefs, self.shifted, self.ratio, self.sample_rate)
        vocoder_kernel(io.outputs["out"], io.inputs["modulator"], io.inputs["carrier"],
                       self.mod_coefs, self.car_coefs, self.mod_state, self.car_state, self.env,
                       self.car_env, self.misc, self.noise, self.hp_coefs, self.scratch, self.env_trace,
                       self.carrier_mode, p[P.carrier_hz],
                       self.sample_rate, p[P.attack], p[P.release], p[P.sibilance], 10.0 ** (p[P.gain_db] / 20.0))

    def reset(self) -> None:
        self.mod_state[:] = 0.0
        self.car_state[:] = 0.0
        self.env[:] = 0.0
        self.car_env[:] = 0.0
        self.misc[:] = 0.0
        self.noise[0] = NOISE_SEED  # a reset (and the load's warm-up) always leaves the same stream
