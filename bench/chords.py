"""Chords and keys: the streaming listener against essentia and a librosa chroma + template baseline.

    python -m bench.chords [--quick] [--tune] [--train]

The set (:mod:`bench.datasets.chord_set`, cached in ``data/chords/``):
FluidSynth renders of Bach chorales from music21's corpus (chord truth from
``chordify()`` per beat reduced to its triad, else N; key truth from the key
signature and the final chord) and generated pop progressions with drums,
bass and melody (their own chords and key). ``--train`` fits the listener's
model on the train part (``models/chords/chords.pt``); ``--tune`` searches
the listener's options on the tune part; the table is the held-out test part
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
from cadenza.engine.node import Context  # noqa: E402
from cadenza.instruments.listeners import chord_kernels as ck  # noqa: E402
from cadenza.instruments.listeners.chords import WEIGHTS, ChordListener, ChordModel, track  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "chords.json"
GOALS = {"majmin": 0.80, "key": 0.85, "delay_s": 0.25, "block_us_p99": 200.0}

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first (the librosa baseline's key)
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def triad_templates() -> np.ndarray:
    """(24, 12) unit-norm binary triad templates: row ``q * 12 + r`` is root ``r``, quality ``q`` (0 maj, 1 min)."""
    out = np.zeros((24, 12))
    for q, third in enumerate((4, 3)):
        for r in range(12):
            out[q * 12 + r, [r, (r + third) % 12, (r + 7) % 12]] = 1.0
    return out / np.sqrt(3.0)


def key_profiles() -> np.ndarray:
    """(24, 12) zero-mean, unit-norm key profiles: row ``m * 12 + t`` is tonic ``t``, mode ``m``."""
    rows = [np.roll(profile, t) for profile in (KK_MAJOR, KK_MINOR) for t in range(12)]
    prof = np.array(rows) - np.mean(rows, axis=1, keepdims=True)
    return prof / np.linalg.norm(prof, axis=1, keepdims=True)


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
    binary = triad_templates()
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


# ------------------------------------------------------------------ the listener's model

# ``--train`` fits the listener's learned parts on the train part (40 chorales, 24 pop clips; the tune part is
# where options are chosen, the held-out test part is never read) and writes models/chords/chords.pt (+ sha256)
# and train_log.json. Features, per 20 ms hop: the listener's own chroma vectors (treble, bass, both smoothed,
# and the treble and bass of LAGS hops ago), read from the streaming node itself after each hop. Chords: a
# softmax over the 24 triads and no-chord whose network is shared by the 12 roots (the features rolled to each
# root, one ReLU layer of HIDDEN units, a major and a minor score; no-chord a learned constant), fitted by Adam;
# targets are the chord truth at each hop's time less the node's delay, silent hops left out. Key: per mode,
# the share of time each chord (relative to the tonic) sounds in the truth, PRIOR_S added to every chord, as
# log-probabilities.

GAMMA = 100.0  # front end: log(1 + GAMMA * x) of the semitone bands
SMOOTH = 0.3  # front end: weight kept of the previous hop's chroma
LAGS = (3, 8)  # hops back of the lagged chroma among the features
HIDDEN = 64  # ReLU units
EPOCHS, BATCH, LR, WEIGHT_DECAY = 25, 1024, 3e-3, 1e-5
PRIOR_S = 0.5  # seconds added to every chord of a mode's chord histogram
LABELS = [chord_label(j % 12, j // 12) for j in range(ck.N_CHORDS)] + ["N"]


class _Untrained(ChordListener):
    """The listener with a blank classifier: only its chroma features are read."""

    def load_model(self) -> ChordModel:
        n_features = ck.N_BASE + 2 * len(LAGS)
        return ChordModel(np.array(LAGS, np.int64), np.zeros((1, n_features * 12)), np.zeros(1), np.zeros((2, 1)),
                          np.zeros(3), np.zeros((ck.N_KEYS, ck.N_CHORDS)), GAMMA, SMOOTH)


def features(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(hops, features, 12) chroma features of ``audio`` as the streaming node computes them, each
    hop's emission time (s) and the node's delay (s)."""
    node = _Untrained("chords")
    node.prepare(Context(sr, 4096))
    hop = round(node.cfg[ck.C_HOP] * node.cfg[ck.C_DECIMATE])  # input samples per hop
    out = {k: np.zeros(hop, np.float32) for k in node.CONTROLS}
    n_hops = len(audio) // hop
    x = np.zeros((n_hops, *node.chroma.shape))
    for i in range(n_hops):  # one block per hop: the hop ends on the block's last sample
        node._run(audio[i * hop:(i + 1) * hop], out)
        x[i] = node.chroma
    return x, np.arange(1, n_hops + 1) * hop / sr, node.delay_s


def rolled(x: np.ndarray) -> np.ndarray:
    """(hops, features, 12) → (hops, 12 roots, features * 12): feature ``[f, c]`` at root ``r`` is
    ``x[f, (c + r) % 12]``, as :func:`chord_kernels.chord_scores` reads it."""
    idx = (np.arange(12)[:, None] + np.arange(12)[None, :]) % 12
    return x[:, :, idx].transpose(0, 2, 1, 3).reshape(len(x), 12, -1)


def hop_targets(clip, times: np.ndarray) -> np.ndarray:
    """The truth's state (0-23 triads, 24 no chord) at each time; -1 outside the clip's truth."""
    starts = clip.intervals[:, 0]
    j = np.clip(np.searchsorted(starts, times, "right") - 1, 0, len(starts) - 1)
    y = np.array([LABELS.index(clip.labels[k]) for k in j])
    y[(times < starts[0]) | (times >= clip.intervals[-1, 1])] = -1
    return y


def fit_classifier(r, y):
    """The root-shared network fitted by Adam (seed 0): its layers (``l1``, ReLU, ``l2``: a major and a
    minor score per root), the no-chord logit, and the mean training loss of the last epoch."""
    import torch

    torch.manual_seed(0)
    l1, l2 = torch.nn.Linear(r.shape[2], HIDDEN), torch.nn.Linear(HIDDEN, 2)
    no_chord = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([*l1.parameters(), *l2.parameters(), no_chord], LR, weight_decay=WEIGHT_DECAY)
    for _ in range(EPOCHS):
        total = 0.0
        for idx in torch.randperm(len(r)).split(BATCH):
            chords = l2(torch.relu(l1(r[idx]))).permute(0, 2, 1).reshape(len(idx), ck.N_CHORDS)
            loss = torch.nn.functional.cross_entropy(torch.cat([chords, no_chord.expand(len(idx), 1)], 1), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
    return l1, l2, no_chord, total / len(r)


def mode_chord_logp(clips) -> np.ndarray:
    """(2 modes, 24) log P(chord relative to the tonic | mode) from the truth's chord durations."""
    counts = np.full((2, ck.N_CHORDS), PRIOR_S)
    for clip in clips:
        if not clip.key:
            continue
        k = next(k for k in range(ck.N_KEYS) if key_label(k % 12, k // 12) == clip.key)
        for (start, end), label in zip(clip.intervals, clip.labels):
            j = LABELS.index(label)
            if j < ck.N_CHORDS:
                counts[k // 12, (j // 12) * 12 + (j % 12 - k % 12) % 12] += end - start
    return np.log(counts / counts.sum(axis=1, keepdims=True))


def train() -> dict:
    """Fit the listener's model on the train part, save it to ``models/chords/chords.pt`` (+ sha256) and
    ``train_log.json`` beside it; returns the log."""
    import torch

    from cadenza.models.weights import save_weights

    torch.set_num_threads(1)
    t0 = time.time()
    clips = load_clips("train")
    rs, ys = [], []
    for clip in clips:
        x, times, delay = features(clip.audio, SR)
        y = hop_targets(clip, times - delay)
        keep = (y >= 0) & (x[:, 0].any(axis=1))  # inside the truth, tonal
        rs.append(rolled(x[keep]))
        ys.append(y[keep])
    r, y = torch.tensor(np.concatenate(rs), dtype=torch.float32), torch.tensor(np.concatenate(ys))
    l1, l2, no_chord, loss = fit_classifier(r, y)
    save_weights({"lags": torch.tensor(LAGS), "w1": l1.weight.detach(), "b1": l1.bias.detach(),
                  "w2": l2.weight.detach(), "bias": torch.cat([l2.bias, no_chord]).detach(),
                  "mode_logp": torch.tensor(mode_chord_logp(clips), dtype=torch.float32),
                  "gamma": torch.tensor(GAMMA), "smooth": torch.tensor(SMOOTH)}, WEIGHTS)
    info = {"command": "python -m bench.chords --train", "clips": [c.name for c in clips], "hops": int(len(y)),
            "loss_last_epoch": loss, "lags": LAGS, "hidden": HIDDEN, "epochs": EPOCHS, "batch": BATCH, "lr": LR,
            "weight_decay": WEIGHT_DECAY, "gamma": GAMMA, "smooth": SMOOTH, "prior_s": PRIOR_S,
            "seconds": round(time.time() - t0, 1)}
    WEIGHTS.with_name("train_log.json").write_text(json.dumps(info, indent=1))
    return info


# ------------------------------------------------------------------ tuning


TUNE_GRID = {  # searched one group at a time, each from the best so far
    "chord": {"stay": [0.8, 0.9, 0.95, 0.97, 0.99], "beta": [0.5, 1.0, 1.5]},
    "key": {"key_tau_s": [10.0, 30.0, 100.0], "key_margin": [0.0, 0.05, 0.1]},
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
    parser.add_argument("--train", action="store_true", help="fit the listener's model on the train part")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    if args.train:
        print(json.dumps({k: v for k, v in train().items() if k != "clips"}))
        return 0
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
