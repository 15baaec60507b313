"""Chords and keys: the streaming listener against essentia and a librosa chroma + template baseline.

    python -m bench.chords [--quick] [--tune]

The set (:mod:`bench.datasets.chord_set`, cached in ``data/chords/``):
FluidSynth renders of Bach chorales from music21's corpus (chord truth from
``chordify()`` per beat reduced to its triad, else N; key truth from the key
signature and the final chord) and generated pop progressions with drums,
bass and melody (their own chords and key). ``--tune`` searches the
listener's options on the tune part; the table is the held-out test part
(other chorales, other seeds).

Per system, pooled over the clips (weighted by duration): ``mir_eval.chord``
root and majmin; ``mir_eval.key.weighted_score`` of the key reported at the
clip's end (the listener's last KEY event; the offline anchors' one key per
clip); **delay**: the median time from a true chord change to the first
correct (majmin) label after it, with the changes never labelled correctly
before the next change counted apart. The listener is scored with its rows
stamped as ``cadenza chords`` prints them (emission − ``delay_s``), and its
delay from the emission times (what a performer waits); ``majmin as emitted``
scores the unshifted emission times. Anchors are offline and their delay is
measured from their own frame times. Block cost: the listener's ``process``
per 128-frame block at 48 kHz, every block of every clip, one core.
Writes bench/results/chords.json, bench/results/chords.png and prints a markdown table.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.datasets.chord_set import SR, Clip, load_clips  # noqa: E402
from cadenza.engine.harmony import chord_label, key_label  # noqa: E402
from cadenza.instruments.listeners.chord_kernels import chord_templates, key_profiles  # noqa: E402
from cadenza.instruments.listeners.chords import track  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "chords.json"
GOALS = {"majmin": 0.80, "key": 0.85, "delay_s": 0.25, "block_us_p99": 200.0}


# ------------------------------------------------------------------ systems: clip -> estimate


def run_cadenza(clip: Clip, **options) -> dict:
    t0 = time.perf_counter()
    result = track(clip.audio, SR, 128, **options)
    elapsed = time.perf_counter() - t0
    emitted = result.chord_times
    return {"times": np.maximum(emitted - result.delay_s, 0.0), "labels": result.chord_labels,
            "emitted": emitted, "key": result.final_key(), "elapsed": elapsed, "block_us": result.block_us}


def _essentia_chord(name: str) -> str:
    """essentia's "F#m" / "Bb" as mir_eval's "F#:min" / "Bb:maj"."""
    return f"{name[:-1]}:min" if name.endswith("m") else f"{name}:maj"


def run_essentia(clip: Clip) -> dict:
    """essentia's TonalExtractor chords (HPCP + ChordsDetection) and KeyExtractor, at 44.1 kHz (offline)."""
    import essentia.standard as es
    import soxr

    t0 = time.perf_counter()
    y = soxr.resample(clip.audio, SR, 44100).astype(np.float32)
    frame, hop = 4096, 2048
    outputs = dict(zip(es.TonalExtractor().outputNames(), es.TonalExtractor(frameSize=frame, hopSize=hop)(y)))
    key, scale, _ = es.KeyExtractor()(y)
    labels = [_essentia_chord(c) for c in outputs["chords_progression"]]
    times = np.arange(len(labels)) * hop / 44100.0
    return {"times": times, "labels": labels, "emitted": times, "key": f"{key} {scale}",
            "elapsed": time.perf_counter() - t0}


def run_librosa(clip: Clip) -> dict:
    """librosa chroma_cqt, cosine with binary triad templates (no-chord below a threshold), Viterbi with a
    self-loop transition; key: Krumhansl–Schmuckler on the mean chroma (offline)."""
    import librosa

    t0 = time.perf_counter()
    sr, hop = 22050, 2048
    y = librosa.resample(clip.audio, orig_sr=SR, target_sr=sr)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=hop)
    binary, _ = chord_templates(0.0)
    unit = chroma / (np.linalg.norm(chroma, axis=0, keepdims=True) + 1e-9)
    scores = np.vstack([binary @ unit, np.full(unit.shape[1], 0.6)])
    prob = np.exp(10.0 * scores)
    prob /= prob.sum(axis=0, keepdims=True)
    path = librosa.sequence.viterbi(prob, librosa.sequence.transition_loop(25, 0.9))
    labels = ["N" if s == 24 else chord_label(s % 12, s // 12) for s in path]
    mean = chroma.mean(axis=1)
    k = int(np.argmax(key_profiles() @ (mean - mean.mean())))
    times = librosa.frames_to_time(np.arange(len(labels)), sr=sr, hop_length=hop)
    return {"times": times, "labels": labels, "emitted": times, "key": key_label(k % 12, k // 12),
            "elapsed": time.perf_counter() - t0}


# ------------------------------------------------------------------ scores


def _as_intervals(times: np.ndarray, labels: list[str], end: float) -> tuple[np.ndarray, list[str]]:
    times = np.asarray(times, float)
    ends = np.append(times[1:], max(end, times[-1] + 1e-3))
    keep = ends > times
    return np.stack([times[keep], ends[keep]], axis=1), [lab for lab, k in zip(labels, keep) if k]


def chord_scores(clip: Clip, times: np.ndarray, labels: list[str]) -> dict:
    """mir_eval root / majmin accuracy (and the scored seconds) of one clip."""
    import mir_eval

    ref_iv, ref_lab = clip.intervals, clip.labels
    est_iv, est_lab = _as_intervals(times, labels, ref_iv[-1, 1])
    est_iv, est_lab = mir_eval.util.adjust_intervals(est_iv, est_lab, ref_iv.min(), ref_iv.max(),
                                                     mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD)
    iv, ref, est = mir_eval.util.merge_labeled_intervals(ref_iv, ref_lab, est_iv, est_lab)
    dur = mir_eval.util.intervals_to_durations(iv)
    out = {}
    for name in ("root", "majmin"):
        comp = getattr(mir_eval.chord, name)(ref, est)
        out[name] = float(mir_eval.chord.weighted_accuracy(comp, dur))
        out[name + "_s"] = float(dur[comp >= 0].sum())
    return out


def change_delays(clip: Clip, times: np.ndarray, labels: list[str]) -> list[float]:
    """Per true chord change (into a chord), seconds to the first correct label; inf if none before the next."""
    import mir_eval

    times = np.asarray(times, float)
    out = []
    for i in range(1, len(clip.labels)):
        start, end = clip.intervals[i]
        want = clip.labels[i]
        if want == clip.labels[i - 1]:
            continue
        # the label in force at `start`, then every change before `end`
        idx = [max(int(np.searchsorted(times, start, side="right")) - 1, 0)]
        idx += list(np.nonzero((times > start) & (times < end))[0])
        hit = [j for j in idx if mir_eval.chord.majmin([want], [labels[j]])[0] == 1]
        out.append(max(float(times[hit[0]]) - start, 0.0) if hit else float("inf"))
    return out


def key_score(clip: Clip, key: str) -> float | None:
    import mir_eval

    if not clip.key:
        return None
    return float(mir_eval.key.weighted_score(clip.key, key)) if key else 0.0


def evaluate(clips: list[Clip], systems: dict) -> dict:
    """Per system: pooled scores and per-clip rows."""
    out = {}
    for name, fn in systems.items():
        rows, delays, block_us = [], [], []
        for clip in clips:
            est = fn(clip)
            row = {"clip": clip.name, **chord_scores(clip, est["times"], est["labels"]),
                   "key_est": est["key"], "key_ref": clip.key, "key": key_score(clip, est["key"]),
                   "rtf": est["elapsed"] / (len(clip.audio) / SR)}
            row["majmin_emitted"] = chord_scores(clip, est["emitted"], est["labels"])["majmin"]
            delays += change_delays(clip, est["emitted"], est["labels"])
            if "block_us" in est:
                block_us.append(est["block_us"])
            rows.append(row)
        out[name] = {"summary": summarise(rows, delays, block_us), "per_clip": rows}
    return out


def summarise(rows: list[dict], delays: list[float], block_us: list[np.ndarray]) -> dict:
    def pooled(key, weight):
        w = np.array([r[weight] for r in rows])
        return float(np.sum([r[key] * r[weight] for r in rows]) / w.sum())

    keys = [r["key"] for r in rows if r["key"] is not None]
    d = np.array(delays)
    found = d[np.isfinite(d)]
    s = {"root": pooled("root", "root_s"), "majmin": pooled("majmin", "majmin_s"),
         "majmin_emitted": pooled("majmin_emitted", "majmin_s"),
         "key": float(np.mean(keys)), "key_clips": len(keys),
         "delay_median_s": float(np.median(found)) if len(found) else None,
         "changes": int(len(d)), "changes_missed": int(np.sum(~np.isfinite(d))),
         "rtf": float(np.mean([r["rtf"] for r in rows]))}
    for source in ("chorale", "pop"):
        of = [r for r in rows if f"-{source}-" in r["clip"]]
        w = sum(r["majmin_s"] for r in of)
        s[f"majmin_{source}"] = float(sum(r["majmin"] * r["majmin_s"] for r in of) / w) if w else None
    if block_us:
        us = np.concatenate(block_us)
        s["block_us_p50"], s["block_us_p99"], s["block_us_max"] = (float(np.percentile(us, q)) for q in (50, 99, 100))
    return s


# ------------------------------------------------------------------ tuning


TUNE_GRID = {  # searched one group at a time, each from the best so far
    "chord": {"smooth": [0.0, 0.3, 0.5], "stay": [0.95, 0.99, 0.995], "beta": [5.0, 10.0, 20.0]},
    "front": {"whiten": [0, 6], "gamma": [10.0, 100.0], "bass_weight": [0.0, 0.25, 0.5]},
    "templates": {"harmonic_decay": [0.0, 0.3, 0.6], "n_score": [0.5, 0.6, 0.7]},
    "key": {"key_tau_s": [10.0, 30.0, 100.0], "key_bass_weight": [0.0, 1.0, 2.0], "key_margin": [0.0, 0.05]},
}

def tune(clips: list[Clip]) -> dict:
    """Coordinate search on the tune part: majmin with the delay goal met (chord groups), then key score."""
    best: dict = {}
    for group, grid in TUNE_GRID.items():
        names = list(grid)
        best_score, best_trial = None, best
        for values in itertools.product(*grid.values()):
            trial = best | dict(zip(names, values))
            s = evaluate(clips, {"cadenza": lambda c, t=trial: run_cadenza(c, **t)})["cadenza"]["summary"]
            ok = s["delay_median_s"] is not None and s["delay_median_s"] <= GOALS["delay_s"]
            score = (s["key"],) if group == "key" else (ok, s["majmin"])
            if best_score is None or score > best_score:
                best_score, best_trial = score, trial
            print(f"{group} {trial} majmin {s['majmin']:.3f} key {s['key']:.3f} "
                  f"delay {s['delay_median_s']} ", flush=True)
        best = best_trial
        print(f"== {group}: {best_score} {best}", flush=True)
    return best


# ------------------------------------------------------------------ report


def table(summary: dict) -> str:
    def f(v, spec=".3f"):
        return "–" if v is None else format(v, spec)

    lines = ["| system | causal | root | majmin | majmin as emitted | majmin chorales / pop | key (weighted) "
             "| delay median (s) | changes never right | block p50 / p99 / max (µs) | RTF |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        cost = (f"{s['block_us_p50']:.1f} / {s['block_us_p99']:.1f} / {s['block_us_max']:.1f}"
                if "block_us_p99" in s else "–")
        lines.append(f"| {name} | {'yes' if name == 'cadenza' else 'no (offline)'} | {s['root']:.3f} | "
                     f"{s['majmin']:.3f} | {s['majmin_emitted']:.3f} | {f(s['majmin_chorale'])} / {f(s['majmin_pop'])} | "
                     f"{s['key']:.3f} ({s['key_clips']} clips) | {f(s['delay_median_s'])} | "
                     f"{s['changes_missed']} of {s['changes']} | {cost} | {s['rtf']:.4f} |")
    return "\n".join(lines)


def plot(per_system: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    names = list(per_system)
    clips = [r["clip"].split("-", 1)[1] for r in per_system[names[0]]["per_clip"]]
    x = np.arange(len(clips))
    for i, name in enumerate(names):
        ax.bar(x + (i - 1) * 0.27, [r["majmin"] for r in per_system[name]["per_clip"]], 0.27, label=name)
    ax.set_xticks(x, clips, rotation=70, fontsize=6)
    ax.set_ylabel("majmin")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a third of each part, under 3 minutes")
    parser.add_argument("--tune", action="store_true", help="search the listener's options on the tune part")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    if args.tune:
        print(json.dumps(tune(load_clips("tune", args.quick)), indent=1))
        return 0
    clips = load_clips("test", args.quick)
    track(clips[0].audio[:SR], SR)  # compile / load the numba cache first
    per_system = evaluate(clips, {"cadenza": run_cadenza, "essentia": run_essentia, "librosa": run_librosa})
    summary = {name: r["summary"] for name, r in per_system.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "python -m bench.chords" + (" --quick" if args.quick else ""), "goals": GOALS,
        "systems": per_system}, indent=1))
    plot(per_system, RESULTS.with_suffix(".png"))
    print(table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
