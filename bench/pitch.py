"""Pitch: the streaming listener against pYIN, YIN, aubio, Praat, CREPE, SwiftF0, PESTO on the same audio.

    python -m bench.pitch [--quick] [--tune] [--only NAME ...]

Builds its test set itself (models/pitch/clips.py, which describes it):
synthetic harmonic tones, FluidSynth melodies of seven instruments (three the
tuning never saw) and glottal-pulse voices (low 62-147 Hz and mid
110-392 Hz; modal, breathy, pressed), each clean, at 20 and 10 dB SNR (white,
pink, babble or crowd noise, cycling per clip) and in rooms of RT60 0.4-0.9 s
(``reverb``) and 1.0-1.5 s (``room``), with exact ground truth. The full run
has 6 synth, 7 fluid (one per instrument) and 6 voice clips, each in all five
conditions (95 clips of 4 s); ``--quick`` has 1 synth and 1 low voice
(10 clips; no fluid, so no ``fluid`` or ``unseen`` subsets). Both add two
2 s delay probes. Every tracker runs on every clip; CREPE full runs with a
40 ms hop and weighted-argmax decoding (see :func:`_crepe`; CREPE tiny and
the others at their usual 10 ms or finer): at 10 ms it takes ~6.5x real
time on one thread here.

Scoring: mir_eval.melody (RPA, RCA at 50 cents, voicing recall VR and false
alarm VFA, overall accuracy) on the clip's scored frames, pooled over clips
weighted by frames. Subsets: per condition (``clean``, ``snr20`` ...), per
source and condition (``voice/room``), the unseen instruments per condition
(``unseen/snr10``) and per noise kind (``snr10/babble``). The goals (GOALS)
are checked for ``cadenza`` on every subset: RPA and RCA at least 0.97
(clean, snr20) or 0.93 (snr10, reverb, room); RPA at least the best causal
anchor's (aubio yinfft) and at most 0.02 below the best offline anchor's
(pYIN, Praat, CREPE full and tiny, SwiftF0, PESTO — librosa's YIN is shown
but is no goal anchor: it makes no voicing decision); VFA at most 0.05,
reverb tails included. Each check's margin is value minus target (a ceiling:
target minus value), negative where missed.

Delay: the lag that best aligns a tracker's f0 to the truth, the median over
the clean synth clips (``delay_ms``) and on sustained vibrato tones at 100 Hz
and 65 Hz (``delay_100_ms``, ``delay_65_ms``); goals 8 ms at 100 Hz and up
(both of the first two), 15 ms at 65 Hz. Cost per hop: the listener's 2 ms
hops each timed alone, one thread (goal p99 at most 150 µs); batch anchors:
total time / frames.

Time stamps: the listener's rows are stamped at emission time minus its
fixed ``DELAY_S``, exactly as ``cadenza pitch`` prints them; aubio (causal)
at emission minus half its window; offline anchors at their own frame times.
``delay_ms`` of a causal tracker is measured from emission (what a performer
waits); of an offline tracker, from its own stamps (it needs the whole file).

``cadenza rules`` is the listener without its learned head (``PitchTracker`` with no ``head``:
YIN's rules alone), shown beside it; no goal anchor.

``--tune`` searches the rules' settings on the training part (other
seeds, four instruments, voices, all five conditions) and prints them; it
never looks at the test part. Writes bench/results/pitch.json, prints
markdown tables (trackers; RPA per subset; cadenza's goals per subset) and
draws bench/results/pitch_subsets.png and pitch_errors.png
(bench/pitch_plots.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

from bench import pitch_plots
from cadenza.engine.dsp.pitch import DEFAULTS, PitchTracker
from cadenza.models.pitch import clips as S
from cadenza.models.pitch.model import numba_weights

RESULTS = Path(__file__).resolve().parent / "results" / "pitch.json"
FMIN, FMAX = 50.0, 1700.0  # search range given to every anchor
LAGS_MS = np.arange(-20.0, 60.01, 0.5)
CREPE_FULL_HOP_S = 0.04
GOALS = {
    "rpa_rca": {"clean": 0.97, "snr20": 0.97, "snr10": 0.93, "reverb": 0.93, "room": 0.93},  # floors
    "rpa_vs_best_causal": 0.0,  # RPA minus the best causal anchor's: floor
    "rpa_vs_best_offline": -0.02,  # RPA minus the best offline anchor's: floor
    "vfa": 0.05,  # ceiling
    "delay_ms": 8.0,  # ceiling, at 100 Hz and up
    "delay_65_ms": 15.0,  # ceiling
    "hop_us_p99": 150.0,  # ceiling, one thread
}
GOAL_ANCHORS = ("pyin (librosa)", "praat ac", "crepe full", "crepe tiny", "swiftf0", "pesto", "aubio yinfft")


# -- trackers: audio (float32, SR) -> (times s, f0 Hz best guess, voiced bool) --------------

def ours(x, settings=None, learned=True):
    frames = PitchTracker(S.SR, head=numba_weights() if learned else None, **(settings or {})).process_file(x, 128)
    return frames.time_s, frames.f0_hz, frames.voiced


def rules(x):
    """The listener without its learned head: YIN's rules alone (shown, not a goal anchor)."""
    return ours(x, learned=False)


def _resample(x, sr_to):
    import soxr

    return soxr.resample(x, S.SR, sr_to).astype(np.float32)


def pyin(x):
    import librosa

    y = _resample(x, 22050)
    f0, voiced, _ = librosa.pyin(y, fmin=FMIN, fmax=FMAX, sr=22050, frame_length=2048, hop_length=256,
                                 fill_na=None)
    return librosa.times_like(f0, sr=22050, hop_length=256), f0, voiced


def yin(x):
    import librosa

    y = _resample(x, 22050)
    f0 = librosa.yin(y, fmin=FMIN, fmax=FMAX, sr=22050, frame_length=2048, hop_length=128)
    return librosa.times_like(f0, sr=22050, hop_length=128), f0, np.ones(len(f0), bool)  # no voicing


AUBIO_BUF, AUBIO_HOP = 2048, 96


def aubio_yinfft(x):
    import aubio

    p = aubio.pitch("yinfft", AUBIO_BUF, AUBIO_HOP, S.SR)
    p.set_unit("Hz")
    p.set_tolerance(0.85)
    p.set_silence(-60.0)
    n = len(x) // AUBIO_HOP
    f0 = np.zeros(n)
    for k in range(n):
        f0[k] = p(x[k * AUBIO_HOP:(k + 1) * AUBIO_HOP])[0]
    emitted = (np.arange(n) + 1) * AUBIO_HOP / S.SR
    # aubio marks unvoiced (below its tolerance or silence) with 0 Hz; its yinfft confidence reads ~0
    return emitted - AUBIO_BUF / 2 / S.SR, f0, f0 > 0


def praat(x):
    import parselmouth

    pitch = parselmouth.Sound(x.astype(np.float64), S.SR).to_pitch_ac(
        time_step=0.005, pitch_floor=FMIN, pitch_ceiling=FMAX)
    f0 = pitch.selected_array["frequency"]
    return pitch.xs(), f0, f0 > 0  # Praat gives no f0 guess on unvoiced frames


def _crepe(model, hop_s=0.01):
    """torchcrepe at 16 kHz every ``hop_s``. At the 10 ms hop: viterbi decoding, periodicity
    median-filtered over 3 frames. At a coarser hop: weighted argmax (the CREPE paper's local
    average) and no filter: viterbi's transition prior (at most 240 cents a frame) would drag
    every leap over several 40 ms frames, and 3 frames would bridge whole gaps."""
    def run(x):
        import torch
        import torchcrepe

        audio = torch.from_numpy(_resample(x, 16000))[None]
        fine = hop_s <= 0.01
        decoder = torchcrepe.decode.viterbi if fine else torchcrepe.decode.weighted_argmax
        f0, periodicity = torchcrepe.predict(audio, 16000, int(round(hop_s * 16000)), FMIN, FMAX, model,
                                             batch_size=512, device="cpu", return_periodicity=True,
                                             decoder=decoder)
        if fine:
            periodicity = torchcrepe.filter.median(periodicity, 3)
        f0, periodicity = f0[0].numpy(), periodicity[0].numpy()
        return np.arange(len(f0)) * hop_s, f0, periodicity >= 0.21
    return run


def swift_f0(x):
    from swift_f0 import SwiftF0

    if not hasattr(swift_f0, "detector"):
        swift_f0.detector = SwiftF0(threads=1, spin=False)
    r = swift_f0.detector.detect(x, S.SR, fmin=FMIN, fmax=FMAX)
    return r.timestamps, r.pitch_hz, r.confidence >= 0.5


def pesto_(x):
    import pesto
    import torch

    t, f0, conf, _ = pesto.predict(torch.from_numpy(_resample(x, 16000)), 16000, step_size=10.0)
    return t.numpy() / 1000.0, f0.numpy().reshape(-1), conf.numpy().reshape(-1) >= 0.5


# name -> (function, causal)
TRACKERS = {
    "cadenza": (ours, True),
    "cadenza rules": (rules, True),
    "pyin (librosa)": (pyin, False),
    "yin (librosa)": (yin, False),
    "aubio yinfft": (aubio_yinfft, True),
    "praat ac": (praat, False),
    "crepe tiny": (_crepe("tiny"), False),
    "crepe full": (_crepe("full", CREPE_FULL_HOP_S), False),
    "swiftf0": (swift_f0, False),
    "pesto": (pesto_, False),
}
STAMP_OFFSET_S = {"cadenza": None, "cadenza rules": None, "aubio yinfft": AUBIO_BUF / 2 / S.SR}  # None: the listener's DELAY_S


def prepare_imports() -> dict[str, str]:
    """Import what each anchor needs; returns {name: reason} for those that cannot run.

    torchcrepe and pesto import torchaudio only for file loading; PyPI's
    torchaudio fails to load beside the CPU torch, so an empty stand-in is
    registered when the real one is missing (bench only).
    """
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    import torch

    torch.set_num_threads(1)
    needs = {"pyin (librosa)": "librosa", "yin (librosa)": "librosa", "aubio yinfft": "aubio",
             "praat ac": "parselmouth", "crepe tiny": "torchcrepe", "crepe full": "torchcrepe",
             "swiftf0": "swift_f0", "pesto": "pesto"}
    missing = {}
    for name, module in needs.items():
        try:
            __import__(module)
        except Exception as exc:  # an anchor that does not install is reported, not fatal
            missing[name] = f"{module}: {type(exc).__name__}: {exc}"[:200]
    return missing


# -- scoring ----------------------------------------------------------------------------------

def score(clip: S.Clip, times, f0, voiced, shift_s=0.0) -> dict:
    """mir_eval.melody measures on the clip's scored frames; est stamped ``times - shift_s``.

    ``cents``: the estimate minus the truth (cents) on scored, truly voiced frames where the
    tracker gives a pitch (voiced or not), for the error histograms."""
    import mir_eval

    f0 = np.nan_to_num(np.asarray(f0, float), nan=0.0)
    signed = np.where(voiced, np.abs(f0), -np.abs(f0))
    ref_v, ref_c, est_v, est_c = mir_eval.melody.to_cent_voicing(
        clip.times, clip.f0, np.asarray(times, float) - shift_s, signed)
    m = clip.scored
    ref_v, ref_c, est_v, est_c = ref_v[m], ref_c[m], est_v[m], est_c[m]
    recall, false_alarm = mir_eval.melody.voicing_measures(ref_v, est_v)
    has = (ref_v > 0) & (est_c > 0)
    return {"rpa": mir_eval.melody.raw_pitch_accuracy(ref_v, ref_c, est_v, est_c),
            "rca": mir_eval.melody.raw_chroma_accuracy(ref_v, ref_c, est_v, est_c),
            "vr": recall, "vfa": false_alarm,
            "oa": mir_eval.melody.overall_accuracy(ref_v, ref_c, est_v, est_c),
            "n_voiced": int(ref_v.sum()), "n_unvoiced": int((ref_v == 0).sum()),
            "cents": (est_c[has] - ref_c[has]).astype(np.float32)}


def best_lag_ms(clip: S.Clip, times, f0, voiced) -> float:
    """The lag (ms) that best aligns the estimate to the truth: min mean |cents| (clipped at 100)."""
    times = np.asarray(times, float)
    f0 = np.nan_to_num(np.asarray(f0, float), nan=0.0)
    ok = (f0 > 0) & voiced
    if ok.sum() < 10:
        return float("nan")
    ref_ok = (clip.f0 > 0) & clip.scored
    ref_cents = 1200 * np.log2(clip.f0[ref_ok] / 10.0)
    est_cents = 1200 * np.log2(np.where(f0 > 0, f0, 10.0) / 10.0)
    errs = []
    for lag in LAGS_MS:  # compare where the estimate is voiced at t + lag (nearest frame)
        at = clip.times[ref_ok] + lag * 1e-3
        near = np.clip(np.searchsorted(times, at), 0, len(times) - 1)
        use = ok[near]
        e = np.interp(at[use], times, est_cents)
        errs.append(np.mean(np.minimum(np.abs(e - ref_cents[use]), 100.0)) if use.sum() > 10 else 1e9)
    return float(LAGS_MS[int(np.argmin(errs))])


def pool(rows: list[dict]) -> dict:
    """Frame-weighted pooling of per-clip scores."""
    nv = np.array([r["n_voiced"] for r in rows], float)
    nu = np.array([r["n_unvoiced"] for r in rows], float)
    out = {"clips": len(rows)}
    for k in ("rpa", "rca", "vr", "oa"):
        w = nv if k != "oa" else nv + nu
        out[k] = float(np.sum([r[k] for r in rows] * w) / max(w.sum(), 1))
    out["vfa"] = float(np.sum([r["vfa"] for r in rows] * nu) / max(nu.sum(), 1))
    return out


def subset_keys(clip: S.Clip) -> list[str]:
    """The subsets a clip counts in: its condition, source/condition, unseen/condition, condition/noise."""
    cond = clip.condition
    keys = [cond, f"{clip.source}/{cond}"]
    if clip.source == "fluid" and any(clip.name.startswith(u) for u in S.UNSEEN_INSTRUMENTS):
        keys.append(f"unseen/{cond}")
    if clip.noise:
        keys.append(f"{cond}/{clip.noise}")
    return keys


def subset_order(key: str) -> tuple:
    """Conditions first, then source/condition, unseen, noise kinds; conditions in CONDITIONS order."""
    head, _, tail = key.partition("/")
    if not tail:
        return (0, S.CONDITIONS.index(head), "")
    if head in S.CONDITIONS:
        return (3, S.CONDITIONS.index(head), tail)
    return (2 if head == "unseen" else 1, S.CONDITIONS.index(tail), head)


def subsets(rows) -> dict:
    groups = {}
    for clip, sc in rows:
        if clip.condition == "probe":
            continue
        for key in subset_keys(clip):
            groups.setdefault(key, []).append(sc)
    return {k: pool(groups[k]) for k in sorted(groups, key=subset_order)}


def _check(value, target, floor: bool) -> dict:
    if value is None:
        return {"value": None, "target": target, "met": None, "margin": None}
    margin = value - target if floor else target - value
    return {"value": value, "target": target, "met": bool(margin >= 0), "margin": margin}


def goal_report(trackers: dict, name: str = "cadenza") -> dict:
    """Each goal checked for ``name``: per subset (RPA, RCA, anchors, VFA) and overall (delay, cost)."""
    ours_ = trackers[name]
    anchors = {n: e for n, e in trackers.items() if n in GOAL_ANCHORS and "error" not in e}
    per_subset = {}
    for key, sub in ours_["subsets"].items():
        head, _, tail = key.partition("/")
        floor = GOALS["rpa_rca"][head if head in S.CONDITIONS else tail]
        causal = {n: e["subsets"][key]["rpa"] for n, e in anchors.items() if e["causal"] and key in e["subsets"]}
        offline = {n: e["subsets"][key]["rpa"] for n, e in anchors.items()
                   if not e["causal"] and key in e["subsets"]}
        row = {"clips": sub["clips"], "rpa": _check(sub["rpa"], floor, True),
               "rca": _check(sub["rca"], floor, True), "vfa": _check(sub["vfa"], GOALS["vfa"], False)}
        if causal:
            best = max(causal, key=causal.get)
            row["best_causal"] = {"name": best, "rpa": causal[best],
                                  **_check(sub["rpa"] - causal[best], GOALS["rpa_vs_best_causal"], True)}
        if offline:
            best = max(offline, key=offline.get)
            row["best_offline"] = {"name": best, "rpa": offline[best],
                                   **_check(sub["rpa"] - offline[best], GOALS["rpa_vs_best_offline"], True)}
        row["met"] = all(v["met"] is not False for k, v in row.items() if isinstance(v, dict))
        per_subset[key] = row
    overall = {"delay_ms": _check(ours_["delay_ms"], GOALS["delay_ms"], False),
               "delay_100_ms": _check(ours_["delay_100_ms"], GOALS["delay_ms"], False),
               "delay_65_ms": _check(ours_["delay_65_ms"], GOALS["delay_65_ms"], False),
               "hop_us_p99": _check(ours_["hop_us_p99"], GOALS["hop_us_p99"], False)}
    return {"tracker": name, "subsets": per_subset, "overall": overall,
            "subsets_met": sum(r["met"] for r in per_subset.values()), "subsets_total": len(per_subset)}


# -- cost ---------------------------------------------------------------------------------------

def hop_cost_us(x: np.ndarray) -> tuple[float, float, str]:
    """The listener's cost per 2 ms hop (with its learned head), each hop timed alone (µs): median, p99, scheduling.

    Timed under SCHED_FIFO (priority 50) where allowed, as the engine's audio thread runs
    under JACK (-R); else under the normal scheduler.
    """
    import os

    tracker = PitchTracker(S.SR, head=numba_weights())
    hops, pub = tracker.buffers(tracker.hop)
    h = tracker.hop
    tracker.process_into(x[:h], hops, pub)  # compiled
    times = np.zeros(len(x) // h)
    policy = "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
        policy = "SCHED_FIFO 50"
    except (AttributeError, PermissionError, OSError):
        pass
    try:
        for k in range(len(times)):
            t0 = time.perf_counter_ns()
            tracker.process_into(x[k * h:(k + 1) * h], hops, pub)
            times[k] = time.perf_counter_ns() - t0
    finally:
        if policy != "normal":
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return float(np.median(times) / 1e3), float(np.percentile(times, 99) / 1e3), policy


# -- the run ------------------------------------------------------------------------------------

def run_trackers(clips, names):
    """{name: {"rows": [(clip, score)], "lags": [(clip name, ms)], "seconds", "frames", "audio_s"}}."""
    out = {}
    for name in names:
        fn, causal = TRACKERS[name]
        rec = {"rows": [], "lags": [], "seconds": 0.0, "frames": 0, "audio_s": 0.0}
        shift = STAMP_OFFSET_S.get(name, 0.0)
        shift = PitchTracker(S.SR).delay_s if shift is None else shift
        for clip in clips:
            t0 = time.perf_counter()
            times, f0, voiced = fn(clip.audio)
            rec["seconds"] += time.perf_counter() - t0
            rec["frames"] += len(times)
            rec["audio_s"] += len(clip.audio) / S.SR
            rec["rows"].append((clip, score(clip, times, f0, voiced)))
            if (clip.source == "synth" and clip.condition == "clean") or clip.condition == "probe":
                lag = best_lag_ms(clip, times, f0, voiced)
                rec["lags"].append((clip.name, lag + (shift * 1e3 if causal else 0.0)))
        out[name] = rec
        print(f"  {name}: {len(rec['rows'])} clips, {rec['seconds']:.1f} s", file=sys.stderr)
    return out


def summarise(results, missing, cost, quick, n_sources) -> dict:
    trackers = {}
    for name, rec in results.items():
        causal = TRACKERS[name][1]
        rows = [sc for clip, sc in rec["rows"] if clip.condition != "probe"]
        allp = pool(rows)
        lags = {clip: lag for clip, lag in rec["lags"] if np.isfinite(lag)}  # nan: too few voiced frames
        synth = [lag for clip, lag in rec["lags"] if not clip.startswith("low") and np.isfinite(lag)]
        entry = {
            "causal": causal, "clips": len(rows),
            "rpa": allp["rpa"], "rca": allp["rca"], "vr": allp["vr"], "vfa": allp["vfa"], "oa": allp["oa"],
            "delay_ms": float(np.median(synth)) if synth else None,
            "delay_100_ms": lags.get("low100"), "delay_65_ms": lags.get("low65"),
            "rtf": rec["seconds"] / max(rec["audio_s"], 1e-9),
            "subsets": subsets(rec["rows"]),
        }
        if name == "cadenza":
            entry["hop_us_p50"], entry["hop_us_p99"], entry["hop_timing"] = cost
        else:
            entry["hop_us_p50"] = rec["seconds"] / max(rec["frames"], 1) * 1e6  # batch: per frame
            entry["hop_us_p99"] = None
        trackers[name] = entry
    for name, why in missing.items():
        trackers[name] = {"causal": TRACKERS[name][1], "error": why}
    summary = {"trackers": trackers, "goals": GOALS, "goal_anchors": list(GOAL_ANCHORS), "quick": quick,
               "set": {"sources": n_sources, "conditions": list(S.CONDITIONS), "clip_s": S.CLIP_S,
                       "noises": list(S.NOISES), "rt60_s": S.RT60_S, "snr_db": S.SNR_DB},
               "listener_delay_s": PitchTracker(S.SR).delay_s, "settings": DEFAULTS,
               "note": (f"every tracker runs on every clip; crepe full with a {CREPE_FULL_HOP_S * 1e3:.0f} ms hop "
                        "and weighted-argmax decoding (at 10 ms it is ~6.5x slower than real time on one thread "
                        "here), crepe tiny at 10 ms. "
                        "yin (librosa) gives no voicing: shown, not a goal anchor. hop_us of batch anchors is "
                        "total time / frames. Timings on a shared 2-core machine, nice 10.")}
    if "cadenza" in trackers and "error" not in trackers["cadenza"]:
        summary["goal_report"] = goal_report(trackers)
    return summary


def _fmt(v, p=3):
    return "–" if v is None else f"{v:.{p}f}"


def table(summary) -> str:
    """Trackers: RPA per condition, RCA / VR / VFA over all, delays, cost."""
    cols = list(S.CONDITIONS)
    head = (["tracker", "causal"] + [f"RPA {c}" for c in cols]
            + ["RCA all", "VR", "VFA", "delay ms", "delay 100 Hz ms", "delay 65 Hz ms", "hop µs p50 / p99", "RTF"])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, e in summary["trackers"].items():
        if "error" in e:
            lines.append(f"| {name} | {'yes' if e['causal'] else 'no'} | not run: {e['error'][:60]} |"
                         + " |" * (len(head) - 3))
            continue
        rpa = [e["subsets"].get(c, {}).get("rpa") for c in cols]
        cost = f"{_fmt(e['hop_us_p50'], 1)} / {_fmt(e['hop_us_p99'], 1)}"
        lines.append(f"| {name} | {'yes' if e['causal'] else 'no (offline)'} | "
                     + " | ".join(_fmt(v) for v in rpa)
                     + f" | {_fmt(e['rca'])} | {_fmt(e['vr'])} | {_fmt(e['vfa'])} | {_fmt(e['delay_ms'], 1)} | "
                       f"{_fmt(e['delay_100_ms'], 1)} | {_fmt(e['delay_65_ms'], 1)} | {cost} | {_fmt(e['rtf'], 3)} |")
    return "\n".join(lines)


def subset_table(summary) -> str:
    """RPA of every tracker on every subset (clips in the subset per tracker are the same)."""
    ok = {n: e for n, e in summary["trackers"].items() if "error" not in e}
    keys = next(iter(ok.values()))["subsets"]
    lines = ["| subset | clips | " + " | ".join(ok) + " |", "|---" * (len(ok) + 2) + "|"]
    for key in keys:
        vals = [e["subsets"].get(key, {}).get("rpa") for e in ok.values()]
        best = max(v for v in vals if v is not None)
        cells = [f"**{_fmt(v)}**" if v == best else _fmt(v) for v in vals]
        lines.append(f"| {key} | {keys[key]['clips']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_table(report) -> str:
    """The listener's goals per subset: value (margin) for each check, and the verdict."""
    def cell(c):
        if c is None or c["value"] is None:
            return "–"
        return f"{c['value']:.3f} ({c['margin']:+.3f}){'' if c['met'] else ' ✗'}"

    lines = ["| subset | clips | RPA (floor) | RCA (floor) | VFA (≤ 0.05) | vs best causal RPA | "
             "vs best offline RPA (−0.02) | met |", "|---" * 8 + "|"]
    for key, r in report["subsets"].items():
        bc, bo = r.get("best_causal"), r.get("best_offline")
        bc_s = f"{bc['value']:+.3f} vs {bc['name']}{'' if bc['met'] else ' ✗'}" if bc else "–"
        bo_s = f"{bo['value']:+.3f} vs {bo['name']}{'' if bo['met'] else ' ✗'}" if bo else "–"
        lines.append(f"| {key} | {r['clips']} | {cell(r['rpa'])} | {cell(r['rca'])} | {cell(r['vfa'])} | "
                     f"{bc_s} | {bo_s} | {'yes' if r['met'] else 'no'} |")
    o = report["overall"]
    lines.append("")
    lines.append(f"subsets meeting every goal: {report['subsets_met']} / {report['subsets_total']}; "
                 + "; ".join(f"{k} {cell(v)}" for k, v in o.items()) + " (✗: missed; margins: + met)")
    return "\n".join(lines)


def tune(quick: bool) -> None:
    """Coordinate search of the listener's settings on the training part; prints the best."""
    clips = S.build("train", 3 if quick else 8, 1 if quick else 2, n_voice=2 if quick else 6)

    def objective(settings):
        rows = []
        for clip in clips:
            t, f, v = ours(clip.audio, settings, learned=False)
            rows.append((clip, score(clip, t, f, v)))
        subs = subsets(rows)
        goal = [subs[c]["rpa"] + subs[c]["rca"] + subs[c]["vr"] - 4 * max(subs[c]["vfa"] - 0.03, 0)
                - subs[c]["vfa"] for c in S.CONDITIONS]
        return float(np.mean(goal)), subs

    grid = {
        "voicing_center": [0.2, 0.4],
        "voicing_slope": [0.03, 0.08],
        "voicing_hysteresis": [0.0, 0.1],
        "octave_ratio": [0.2, 0.5],
        "threshold": [0.1, 0.2],
        "stick": [0.0, 0.05],
        "near_best": [0.0, 0.2],
        "cmndf_weight": [0.0, 0.8],
    }
    best = dict(DEFAULTS)
    best_val, _ = objective(best)
    print(f"start {best_val:.4f}", file=sys.stderr)
    for key, values in grid.items():
        for v in values:
            trial = dict(best, **{key: v})
            val, _ = objective(trial)
            print(f"  {key}={v}: {val:.4f}", file=sys.stderr)
            if val > best_val + 1e-4:
                best, best_val = trial, val
    _, subs = objective(best)
    print(json.dumps({"settings": best, "objective": best_val,
                      "train": {c: subs[c] for c in S.CONDITIONS}}, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 clips: 1 synth, 1 voice in 5 conditions")
    parser.add_argument("--tune", action="store_true", help="tune the listener on the training part")
    parser.add_argument("--only", nargs="*", help="run only these trackers (writes no JSON or PNG)")
    args = parser.parse_args(argv)
    if args.tune:
        tune(args.quick)
        return 0
    missing = prepare_imports()
    print("building the test set...", file=sys.stderr)
    if args.quick:
        n_sources = {"synth": 1, "fluid": 0, "voice": 1}
        clips = S.build("test", 1, 0, n_voice=1)
    else:
        n_sources = {"synth": 6, "fluid": len(S.INSTRUMENTS), "voice": 6}
        clips = S.build("test", 6, 1, n_voice=6)
    clips += [S.low_note_clip(100.0), S.low_note_clip(65.0)]
    names = [n for n in TRACKERS if n not in missing and (not args.only or n in args.only)]
    results = run_trackers(clips, names)
    cost = hop_cost_us(np.concatenate([c.audio for c in clips]))
    summary = summarise(results, {k: v for k, v in missing.items() if not args.only or k in args.only},
                        cost, args.quick, n_sources)
    if not args.only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(summary, indent=1, default=float))
        errors = {n: np.concatenate([sc["cents"] for c, sc in rec["rows"] if c.condition != "probe"])
                  for n, rec in results.items()}
        pitch_plots.subsets_png(summary, RESULTS.with_name("pitch_subsets.png"))
        pitch_plots.errors_png(errors, RESULTS.with_name("pitch_errors.png"))
    print(table(summary))
    print()
    print(subset_table(summary))
    if "goal_report" in summary:
        print()
        print(goal_table(summary["goal_report"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
