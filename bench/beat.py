"""Beat tracking: the streaming tracker against anchors, on clips this script renders itself.

    python -m bench.beat [--quick] [--tune] [--compare-weights A.pt B.pt ...]

The test set (see :mod:`cadenza.models.beat.data`): 36 held-out 30 s clips
rendered with FluidSynth — steady, abrupt tempo change, rubato, no drums,
syncopated, 10 dB SNR noise, jazz swing, sixteenth-note funk and tempo curves,
in 4/4, 3/4, 6/8 and 12/8 (beats at the dotted quarter), 60–180 BPM. Every
tracker runs on every clip. ``--quick``: two clips of each kind. ``--tune``
searches the tracker's options on the tune split (other pieces, other drum
patterns) and never reads the held-out split; ``--compare-weights`` scores the
node at its defaults with each onset-network file on the tune split (how the
shipped weights were chosen).

Per tracker: mir_eval F-measure, CMLt, AMLt (mir_eval's default: the first
5 s are not scored), downbeat F (the same F-measure on downbeats, for trackers
that give them), F in the 8 s after each abrupt change, the time to the first
correct beat (first of four consecutive beats within ±70 ms), the error of
predicted beats (causal trackers that predict: each predicted beat issued after
5 s against the nearest true beat, per clip kind), real-time factor on one core.
Writes bench/results/beat.json, beat.png beside it (F per clip; predicted-beat
errors per kind) and prints markdown tables.

``cadenza`` is the node at its defaults (``activation = "mix"``: the geometric
mean of the flux activation and the onset network of models/beat);
``cadenza-flux`` and ``cadenza-net`` the same node with either one alone.
Anchors: aubio tempo (causal), librosa and essentia (offline references);
BeatNet and BTrack are listed with why they did not run when they cannot.
Writes bench/results/beat.json and prints a markdown table.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from cadenza.models.beat.data import SAMPLE_RATE, Clip, ClipSpec, clip_specs, load_clips  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "beat.json"
PLOT = RESULTS.with_suffix(".png")
KINDS = ("steady", "change", "rubato", "no_drums", "syncopated", "noise", "swing", "funk", "curve")
METERS = ("4/4", "3/4", "6/8", "12/8")
QUICK_CLIPS = 2 * len(KINDS)  # two of each kind


# ------------------------------------------------------------------ trackers


def run_cadenza(audio: np.ndarray, sr: int, **options) -> dict:
    from cadenza.engine.cli.beats import track

    t0 = time.perf_counter()
    result = track(audio, sr, 128, **options)
    elapsed = time.perf_counter() - t0
    return {"beats": result.beats, "downbeats": result.downbeats, "predicted": result.predicted,
            "issued": result.issued, "elapsed": elapsed}


def run_cadenza_flux(audio: np.ndarray, sr: int) -> dict:
    """The tracker with the flux activation alone (gamma 3: its best on the tune split)."""
    return run_cadenza(audio, sr, activation="flux", gamma=3.0)


def run_cadenza_net(audio: np.ndarray, sr: int) -> dict:
    """The tracker with the onset network's activation alone (gamma 2: the best of 1, 1.5, 2 on the tune split)."""
    return run_cadenza(audio, sr, activation="net", gamma=2.0)


def run_aubio(audio: np.ndarray, sr: int) -> dict:
    """aubio tempo at its documented defaults (1024-sample window, 512 hop), fed hop by hop."""
    import aubio

    win, hop = 1024, 512
    t0 = time.perf_counter()
    tracker = aubio.tempo("default", win, hop, sr)
    beats = []
    n = len(audio) // hop
    for i in range(n):
        if tracker(audio[i * hop: (i + 1) * hop].astype(np.float32)):
            beats.append(tracker.get_last_s())
    return {"beats": np.array(beats), "elapsed": time.perf_counter() - t0}


def run_librosa(audio: np.ndarray, sr: int) -> dict:
    import librosa

    t0 = time.perf_counter()
    y = librosa.resample(audio, orig_sr=sr, target_sr=22050)
    _, beats = librosa.beat.beat_track(y=y, sr=22050, units="time")
    return {"beats": np.asarray(beats), "elapsed": time.perf_counter() - t0}


def run_essentia(audio: np.ndarray, sr: int) -> dict:
    import essentia.standard as es

    t0 = time.perf_counter()
    beats, _ = es.BeatTrackerMultiFeature()(audio.astype(np.float32))
    return {"beats": np.asarray(beats), "elapsed": time.perf_counter() - t0}


def unavailable_anchors() -> dict[str, str]:
    """Anchors the issue names that cannot run in this environment, with the reason seen."""
    reasons = {}
    try:
        from BeatNet.BeatNet import BeatNet  # noqa: F401
        reasons["BeatNet online"] = "imports, but no runner here: it needs madmom, whose PyPI release does not import on 3.11"
    except Exception as exc:  # noqa: BLE001 - any import failure is the reason reported
        reasons["BeatNet online"] = (f"import failed ({type(exc).__name__}: {exc}); in a scratch venv PyPI's BeatNet "
                                     "1.1.1 installs, but its madmom (PyPI 0.16.1) builds and fails to import on "
                                     "Python 3.11 (collections.MutableSequence); madmom's git master cannot be fetched")[:300]
    reasons.setdefault("BTrack", "no Python package on PyPI ('btrack' is an unrelated cell tracker); "
                                 "its repository cannot be fetched here")
    return reasons


CAUSAL = {"cadenza": True, "cadenza-flux": True, "cadenza-net": True, "aubio": True, "librosa": False, "essentia": False}


# ------------------------------------------------------------------ scores


def first_correct(est: np.ndarray, ref: np.ndarray, run: int = 4, tol: float = 0.07) -> float:
    """Time of the first of ``run`` consecutive estimated beats each within ``tol`` s of a reference beat."""
    if len(est) < run or len(ref) == 0:
        return float("inf")
    ok = np.min(np.abs(est[:, None] - ref[None, :]), axis=1) <= tol
    for i in range(len(est) - run + 1):
        if ok[i: i + run].all():
            return float(est[i])
    return float("inf")


def score_clip(clip: Clip, out: dict) -> dict:
    import mir_eval

    ref, est = clip.beats, np.sort(np.asarray(out["beats"], float))
    scores = mir_eval.beat.evaluate(ref, est)
    row = {"f": scores["F-measure"], "cmlt": scores["Correct Metric Level Total"],
           "amlt": scores["Any Metric Level Total"], "first_correct_s": first_correct(est, ref),
           "rtf": out["elapsed"] / (len(clip.audio) / SAMPLE_RATE)}
    if "downbeats" in out:
        ref_down = mir_eval.beat.trim_beats(clip.downbeats)
        row["downbeat_f"] = mir_eval.beat.f_measure(ref_down, mir_eval.beat.trim_beats(np.sort(out["downbeats"])))
    if clip.change_s is not None:
        lo, hi = clip.change_s, clip.change_s + 8.0
        row["f_after_change"] = mir_eval.beat.f_measure(ref[(ref >= lo) & (ref < hi)], est[(est >= lo) & (est < hi)])
    if "predicted" in out and len(out["predicted"]):
        pred = out["predicted"][out["predicted"] >= 5.0]
        if len(pred):
            row["pred_err_s"] = (pred[:, None] - ref[None, :])[np.arange(len(pred)),
                                                              np.argmin(np.abs(pred[:, None] - ref[None, :]), axis=1)].tolist()
            row["pred_lead_s"] = float(np.min((out["predicted"] - out["issued"])))
    return row


def summarise(rows: list[dict], clips: list[Clip]) -> dict:
    f = np.array([r["f"] for r in rows])
    s = {"mean_f": float(f.mean()), "min_f": float(f.min()),
         "cmlt": float(np.mean([r["cmlt"] for r in rows])), "amlt": float(np.mean([r["amlt"] for r in rows])),
         "rtf": float(np.mean([r["rtf"] for r in rows]))}
    after = [r["f_after_change"] for r in rows if "f_after_change" in r]
    s["f_after_change"] = float(np.mean(after)) if after else None
    first = np.array([r["first_correct_s"] for r in rows])
    s["first_correct_median_s"] = float(np.median(first))
    s["first_correct_max_s"] = float(first.max()) if np.isfinite(first).all() else None
    s["first_correct_never"] = int((~np.isfinite(first)).sum())
    down = [r["downbeat_f"] for r in rows if "downbeat_f" in r]
    s["downbeat_f"] = float(np.mean(down)) if down else None
    s["downbeat_min_f"] = float(np.min(down)) if down else None
    errs = np.abs(np.concatenate([r.get("pred_err_s", []) for r in rows])) if rows else np.zeros(0)
    if len(errs):
        s["pred_err_median_ms"] = float(np.median(errs) * 1e3)
        s["pred_err_p90_ms"] = float(np.percentile(errs, 90) * 1e3)
        s["pred_min_lead_ms"] = float(min(r["pred_lead_s"] for r in rows if "pred_lead_s" in r) * 1e3)
        s["pred_err_per_kind_ms"] = {}
        for k in KINDS:
            e = np.abs(np.concatenate([r.get("pred_err_s", []) for r, c in zip(rows, clips) if c.spec.kind == k]
                                      or [np.zeros(0)]))
            if len(e):
                s["pred_err_per_kind_ms"][k] = [float(np.median(e) * 1e3), float(np.percentile(e, 90) * 1e3)]
    s["per_kind_f"] = {k: float(np.mean([r["f"] for r, c in zip(rows, clips) if c.spec.kind == k]))
                       for k in KINDS if any(c.spec.kind == k for c in clips)}
    s["per_meter_f"] = {m: float(np.mean([r["f"] for r, c in zip(rows, clips) if c.spec.meter == m]))
                        for m in METERS if any(c.spec.meter == m for c in clips)}
    return s


# ------------------------------------------------------------------ runs


def evaluate(clips: list[Clip], trackers: dict) -> dict:
    per_clip = {}
    for name, fn in trackers.items():
        rows = []
        for clip in clips:
            row = score_clip(clip, fn(clip.audio, SAMPLE_RATE))
            row["clip"] = clip.spec.name
            rows.append(row)
        per_clip[name] = rows
    return per_clip


TUNE_GRID = {
    "gamma": [1.0, 2.0, 3.0, 4.0],
    "kappa": [1.0, 2.0, 4.0],
    "low_boost": [0.0, 1.0, 3.0],
    "lambda_o": [8.0, 16.0, 32.0],
    "lambda_t": [30.0, 100.0, 300.0],
    "jump": [1e-4, 1e-3, 1e-2],
    "prior_bpm": [90.0, 110.0, 130.0],
    "prior_octaves": [0.5, 1.0, 2.0],
    "delay_ms": [5.0, 10.0, 15.0, 20.0],
    "max_filter": [0, 1, 2],
}


def tune(clips: list[Clip], rounds: int = 1) -> dict:
    """Coordinate search of the tracker's options on the tune split: maximise mean F (+ min F / 2)."""
    from cadenza.instruments.listeners.beat import BeatTracker

    best = {k: BeatTracker.OPTIONS[k].default for k in TUNE_GRID}

    def objective(opts):
        rows = [score_clip(c, run_cadenza(c.audio, SAMPLE_RATE, **opts)) for c in clips]
        f = np.array([r["f"] for r in rows])
        return float(f.mean() + 0.5 * f.min()), float(f.mean()), float(f.min())

    best_score = objective(best)
    print(f"start {best_score} {best}", flush=True)
    for _ in range(rounds):
        for key, values in TUNE_GRID.items():
            for v in values:
                if v == best[key]:
                    continue
                trial = dict(best, **{key: v})
                score = objective(trial)
                print(f"  {key}={v}: {score[0]:.4f} (mean {score[1]:.3f}, min {score[2]:.3f})", flush=True)
                if score[0] > best_score[0] + 1e-4:
                    best, best_score = trial, score
        print(f"round {best_score} {best}", flush=True)
    return {"options": best, "objective": best_score[0], "mean_f": best_score[1], "min_f": best_score[2]}


def table(summary: dict, unavailable: dict) -> str:
    def fmt(v, spec=".3f"):
        return "–" if v is None else format(v, spec)

    lines = ["| tracker | causal | mean F | min F | CMLt | AMLt | downbeat F (mean / min) | F after change "
             "| first correct (median / max s) | pred. err median / p90 (ms) | RTF |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        pred = (f"{s['pred_err_median_ms']:.1f} / {s['pred_err_p90_ms']:.1f}" if "pred_err_median_ms" in s else "–")
        first = f"{s['first_correct_median_s']:.2f} / {fmt(s['first_correct_max_s'], '.2f')}"
        if s["first_correct_never"]:
            first += f" ({s['first_correct_never']} never)"
        down = f"{fmt(s['downbeat_f'])} / {fmt(s['downbeat_min_f'])}" if s["downbeat_f"] is not None else "–"
        lines.append(f"| {name} | {'yes' if CAUSAL.get(name, True) else 'no (reference)'} | {s['mean_f']:.3f} | "
                     f"{s['min_f']:.3f} | {s['cmlt']:.3f} | {s['amlt']:.3f} | {down} | {fmt(s['f_after_change'])} | "
                     f"{first} | {pred} | {s['rtf']:.4f} |")
    for name, why in unavailable.items():
        lines.append(f"| {name} | yes | not run: {why} ||||||||||")
    kinds = list(next(iter(summary.values()))["per_kind_f"])
    meters = list(next(iter(summary.values()))["per_meter_f"])
    lines += ["", "Mean F per clip kind and meter:", "", "| tracker | " + " | ".join(kinds + meters) + " |",
              "|---|" + "---|" * (len(kinds) + len(meters))]
    for name, s in summary.items():
        lines.append(f"| {name} | " + " | ".join(f"{s['per_kind_f'][k]:.3f}" for k in kinds) + " | "
                     + " | ".join(f"{s['per_meter_f'][m]:.3f}" for m in meters) + " |")
    predicting = {name: s["pred_err_per_kind_ms"] for name, s in summary.items() if "pred_err_per_kind_ms" in s}
    if predicting:
        lines += ["", "Predicted-beat error per clip kind, median / p90 (ms):", "",
                  "| tracker | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
        for name, per_kind in predicting.items():
            lines.append(f"| {name} | " + " | ".join(
                f"{per_kind[k][0]:.1f} / {per_kind[k][1]:.1f}" if k in per_kind else "–" for k in kinds) + " |")
    return "\n".join(lines)


def plot(per_clip: dict, clips: list[Clip], summary: dict, path: Path) -> None:
    """Beat F of every tracker on every clip, and the predicted-beat error distribution per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 9))
    x = np.arange(len(clips))
    for k, (name, rows) in enumerate(per_clip.items()):
        top.plot(x + (k - len(per_clip) / 2) * 0.08, [r["f"] for r in rows], "o", ms=4, label=name)
    top.set_xticks(x, [c.spec.name.split("-", 2)[2] for c in clips], rotation=90, fontsize=7)
    top.set_ylabel("beat F (mir_eval)")
    top.set_ylim(0, 1.02)
    top.legend(ncol=len(per_clip), fontsize=8, loc="lower left")
    top.grid(alpha=0.3)
    kinds = [k for k in KINDS if any(c.spec.kind == k for c in clips)]
    for k, name in enumerate(n for n in per_clip if "pred_err_per_kind_ms" in summary[n]):
        errs = [np.abs(np.concatenate([r.get("pred_err_s", []) for r, c in zip(per_clip[name], clips)
                                       if c.spec.kind == kind] or [np.zeros(0)])) * 1e3 for kind in kinds]
        pos = np.arange(len(kinds)) + 0.25 * k
        bottom.boxplot([e if len(e) else [np.nan] for e in errs], positions=pos, widths=0.2, showfliers=False,
                       patch_artist=True, boxprops={"facecolor": f"C{k}", "alpha": 0.5})
        bottom.plot([], [], color=f"C{k}", lw=6, alpha=0.5, label=name)
    bottom.axhline(10, color="k", lw=0.8, ls="--")
    bottom.axhline(30, color="k", lw=0.8, ls=":")
    bottom.set_xticks(np.arange(len(kinds)) + 0.25, kinds)
    bottom.set_ylabel("|predicted − true beat| (ms)")
    bottom.set_yscale("log")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def quick_subset(specs: list[ClipSpec]) -> list[str]:
    """Names of two clips of each kind, of two different meters where the kind has them (6/8 first)."""
    chosen = []
    for kind in KINDS:
        of_kind = [c for c in specs if c.kind == kind]
        first = next((c for c in of_kind if c.meter == "6/8"), of_kind[0])
        other = next((c for c in of_kind if c.meter != first.meter), of_kind[1])
        chosen += [first.name, other.name]
    return chosen


def _finite(obj):
    """The result with infinities (never correct) as null, for strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CLIPS} held-out clips, under 3 minutes")
    parser.add_argument("--tune", action="store_true", help="search the tracker's options on the tune split")
    parser.add_argument("--compare-weights", nargs="+", type=Path, metavar="PT",
                        help="score onset-network weight files on the tune split (node defaults otherwise)")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    if args.tune:
        result = tune(load_clips("tune"))
        print(json.dumps(result, indent=1))
        return 0
    if args.compare_weights:
        clips = load_clips("tune")
        tracker = {str(w): functools.partial(run_cadenza, weights=str(w)) for w in args.compare_weights}
        summary = {name: summarise(rows, clips) for name, rows in evaluate(clips, tracker).items()}
        print(table(summary, {}))
        return 0
    clips = load_clips("test", quick_subset(clip_specs("test")) if args.quick else None)
    run_cadenza(clips[0].audio[:SAMPLE_RATE], SAMPLE_RATE)  # compile / load the numba cache first
    trackers = {"cadenza": run_cadenza, "cadenza-flux": run_cadenza_flux, "cadenza-net": run_cadenza_net,
                "aubio": run_aubio,
                "librosa": run_librosa, "essentia": run_essentia}
    per_clip = evaluate(clips, trackers)
    summary = {name: summarise(rows, clips) for name, rows in per_clip.items()}
    unavailable = unavailable_anchors()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python -m bench.beat" + (" --quick" if args.quick else ""),
        "clips": [{"name": c.spec.name, "kind": c.spec.kind, "meter": c.spec.meter, "bpm": c.spec.bpm,
                   "bpm2": c.spec.bpm2, "piece": c.spec.piece, "pattern": c.spec.pattern} for c in clips],
        "trackers": {name: {"causal": CAUSAL[name], **s} for name, s in summary.items()},
        "unavailable": unavailable,
        "per_clip": {name: [{k: v for k, v in r.items() if k != "pred_err_s"} for r in rows]
                     for name, rows in per_clip.items()},
    }
    RESULTS.write_text(json.dumps(_finite(result), indent=1))
    plot(per_clip, clips, summary, PLOT)
    print(table(summary, unavailable))
    print(f"\nwrote {RESULTS} and {PLOT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
