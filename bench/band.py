"""Playing with the band: band_follow.toml's drums and bass over band clips, scored on the clips' true grid and chords.

    python -m bench.band [--quick] [--part test|tune]

The set (:mod:`bench.datasets.band_set`, cached in ``data/band/``): drums, bass and
chords rendered with FluidSynth at 70-170 BPM, steady, swing, a tempo ramp and rubato;
the table is the held-out test part (other seeds than the tune part).

Each clip is played through ``patches/band_follow.toml`` offline with
``cadenza render ... --notes-out`` (the same code as live); on swing clips the drums'
``swing`` is set to the clip's ratio, as a performer sets the knob for a swing band.
Scored from the MIDI file it writes:

- **onset error**: each generated note's distance to the nearest true grid point of its
  generator's division (drums: sixteenths, bass: beats; swung in swing clips), after the
  first 4 s; on ramp clips from the second beat after the ramp ends;
- **chord tones**: the share of bass notes (after 4 s) whose pitch class is in the true
  chord of the beat the note is on (its nearest true beat).

Side by side: the same patch with a bass that only listens (``anticipate = false``: no memory
of the progression), and with no beat listener (``follow = ""`` for the drums, the bass and
the clock: the engine clock alone, at the patch's 120 BPM). Goals (issue 18):
on steady and swing clips median <= 5 ms and p90 <= the beat bench's predicted-beat p90
of that kind + 5 ms (read from bench/results/beat.json); ramp p90 <= 40 ms; rubato
reported, not gated; chord tones >= 0.90. Writes bench/results/band.json, band.png.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import tomlkit  # noqa: E402

from bench.datasets.band_set import KINDS, SR, Clip, load_clips  # noqa: E402
from cadenza.engine.cli import render  # noqa: E402
from cadenza.engine.midi import read_notes_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PATCH = ROOT / "patches" / "band_follow.toml"
RESULTS = ROOT / "bench" / "results" / "band.json"
BEAT_RESULTS = ROOT / "bench" / "results" / "beat.json"
SKIP_S = 4.0
GENERATORS = {"drums": 4, "bass": 1}  # node id -> true grid points per beat it is scored on
GOALS = {"median_ms": 5.0, "beat_p90_margin_ms": 5.0, "ramp_p90_ms": 40.0, "chord_tones": 0.90}
TRIADS = ((0, 4, 7), (0, 3, 7))


SYSTEMS = {  # name -> (follow the beat listener, the bass anticipates the progression)
    "band_follow": (True, True),
    "bass listening only": (True, False),
    "engine clock": (False, True),
}


def patch_for(clip: Clip, system: str, folder: Path) -> Path:
    """band_follow.toml as the clip plays it in ``system``: the clip's swing on the drums; no beat listener
    (the engine clock) or a bass that does not anticipate, as :data:`SYSTEMS` says."""
    listen, anticipate = SYSTEMS[system]
    doc = tomlkit.parse(PATCH.read_text())
    for node in doc["node"]:
        if node["id"] == "drums":
            node["swing"] = round(clip.spec.swing, 4)
        if node["type"] == "bass":
            node["anticipate"] = anticipate
        if not listen and node["type"] in ("drums", "bass"):
            node["follow"] = ""
    if not listen:
        doc["clock"]["follow"] = ""
    path = folder / f"{clip.spec.name}-{system.replace(' ', '-')}.toml"
    path.write_text(tomlkit.dumps(doc))
    return path


def grid_errors(clip: Clip, onsets, per_beat: int, start: float = SKIP_S) -> list[float]:
    """Signed distance (s) of each onset (s) to its nearest true grid point, ``per_beat`` points a beat
    (4: sixteenths, 1: beats), for the onsets from ``start`` (s; on ramp clips, from the second beat
    after the ramp ends at the soonest) to the clip's last grid point."""
    if clip.spec.kind == "ramp":
        beats = clip.beats_s
        start = max(start, float(beats[np.searchsorted(beats, clip.ramp_end_s - 1e-6) + 2]))
    grid = clip.grid_s[:: 4 // per_beat]
    onsets = np.array([t for t in onsets if start <= t <= grid[-1]])
    if not len(onsets):
        return []
    nearest = np.argmin(np.abs(onsets[:, None] - grid[None, :]), axis=1)
    return (onsets - grid[nearest]).tolist()


def score(clip: Clip, notes: dict) -> dict:
    """Onset errors (s) per generator and the bass's chord-tone hits, as the module docstring says."""
    row = {"errors_s": {node: grid_errors(clip, [t for t, _ in notes.get(node, [])], per_beat)
                        for node, per_beat in GENERATORS.items()}, "chord_tone": []}
    chord_starts = np.array([c[0] for c in clip.chords])
    beats = clip.beats_s
    for t, note in notes.get("bass", []):
        if t < SKIP_S:
            continue
        on = beats[np.argmin(np.abs(beats - t))]  # the chord of the beat the note is on (a note a hair early is on it)
        _, root, quality = clip.chords[max(int(np.searchsorted(chord_starts, on + 1e-3, "right")) - 1, 0)]
        row["chord_tone"].append(int((note - root) % 12 in TRIADS[quality]))
    return row


def play(clip: Clip, system: str, folder: Path) -> tuple[dict, float]:
    wav = folder / f"{clip.spec.name}.wav"
    if not wav.exists():
        sf.write(str(wav), clip.audio, SR, subtype="FLOAT")
    mid = folder / f"{clip.spec.name}-{system.replace(' ', '-')}.mid"
    t0 = time.perf_counter()
    render(patch_for(clip, system, folder), folder / "mix.wav", input_wav=wav, tail_s=0.0, quiet=True, notes_out=mid)
    return read_notes_file(mid), time.perf_counter() - t0


def summarise(rows: list[dict], clips: list[Clip]) -> dict:
    out = {}
    for kind in KINDS:
        picked = [r for r, c in zip(rows, clips) if c.spec.kind == kind]
        if not picked:
            continue
        errs = np.abs(np.concatenate([e for r in picked for e in r["errors_s"].values()] or [[]]))
        tones = [h for r in picked for h in r["chord_tone"]]
        entry = {"clips": len(picked), "notes": int(len(errs)),
                 "chord_tones": float(np.mean(tones)) if tones else None}
        if len(errs):
            entry |= {"median_ms": float(np.median(errs) * 1e3), "p90_ms": float(np.percentile(errs, 90) * 1e3)}
        for node in GENERATORS:
            e = np.concatenate([r["errors_s"][node] for r in picked] or [[]])
            if len(e):
                entry[f"{node}_signed_median_ms"] = float(np.median(e) * 1e3)
        out[kind] = entry
    return out


def beat_p90_by_kind() -> dict[str, float]:
    """The beat bench's predicted-beat p90 (ms) per clip kind, where it has one."""
    if not BEAT_RESULTS.exists():
        return {}
    per_kind = json.loads(BEAT_RESULTS.read_text())["trackers"]["cadenza"].get("pred_err_per_kind_ms", {})
    return {kind: v[1] for kind, v in per_kind.items()}


def goal_rows(summary: dict, beat_p90: dict, chord_tone: list[int]) -> list[tuple[str, str, bool]]:
    rows = []
    for kind in ("steady", "swing"):
        s = summary.get(kind)
        if not s or "median_ms" not in s:
            continue
        rows.append((f"{kind}: median <= {GOALS['median_ms']:g} ms", f"{s['median_ms']:.1f}",
                     s["median_ms"] <= GOALS["median_ms"]))
        if kind in beat_p90:
            bound = beat_p90[kind] + GOALS["beat_p90_margin_ms"]
            rows.append((f"{kind}: p90 <= beat bench {beat_p90[kind]:.1f} + 5 ms", f"{s['p90_ms']:.1f}", s["p90_ms"] <= bound))
    if "ramp" in summary and "p90_ms" in summary["ramp"]:
        rows.append(("ramp: p90 <= 40 ms", f"{summary['ramp']['p90_ms']:.1f}",
                     summary["ramp"]["p90_ms"] <= GOALS["ramp_p90_ms"]))
    if chord_tone:
        share = float(np.mean(chord_tone))
        rows.append(("bass chord tones >= 0.90 (all bass notes)", f"{share:.3f}", share >= GOALS["chord_tones"]))
    return rows


def table(results: dict) -> str:
    lines = ["| system | kind | clips | notes | median (ms) | p90 (ms) | drums / bass signed median (ms) | bass chord tones |",
             "|---|---|---|---|---|---|---|---|"]
    for system, summary in results["systems"].items():
        for kind, s in summary.items():
            signed = " / ".join(f"{s[k]:+.1f}" if k in s else "–" for k in ("drums_signed_median_ms", "bass_signed_median_ms"))
            tones = f"{s['chord_tones']:.3f}" if s.get("chord_tones") is not None else "–"
            lines.append(f"| {system} | {kind} | {s['clips']} | {s['notes']} | {s.get('median_ms', float('nan')):.1f} | "
                         f"{s.get('p90_ms', float('nan')):.1f} | {signed} | {tones} |")
    lines += ["", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if met else 'NO'} |" for name, value, met in results["goals"]]
    return "\n".join(lines)


def plot(results: dict, rows: dict, clips: list[Clip], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(KINDS), figsize=(4 * len(KINDS), 3.2), sharey=True)
    for ax, kind in zip(axes, KINDS):
        for system, colour in (("band_follow", "tab:blue"), ("engine clock", "tab:grey")):
            e = [x for r, c in zip(rows[system], clips) if c.spec.kind == kind for v in r["errors_s"].values() for x in v]
            if e:
                ax.hist(np.clip(np.array(e) * 1e3, -60, 60), bins=60, range=(-60, 60), alpha=0.6, color=colour, label=system)
        ax.set_title(kind)
        ax.set_xlabel("onset - true grid point (ms)")
    axes[0].set_ylabel("notes")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one clip per kind, under 3 minutes")
    parser.add_argument("--part", default="test", choices=("test", "tune"), help="held-out clips (test) or tune clips")
    args = parser.parse_args(argv)
    clips = load_clips(args.part, args.quick)
    rows: dict[str, list[dict]] = {system: [] for system in SYSTEMS}
    elapsed = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            for system in SYSTEMS:
                notes, seconds = play(clip, system, Path(tmp))
                elapsed += seconds
                rows[system].append(score(clip, notes))
            s = rows["band_follow"][-1]
            errs = np.abs(np.concatenate(list(s["errors_s"].values())))
            print(f"{clip.spec.name:<16} {clip.spec.bpm:5.0f} BPM  median {np.median(errs) * 1e3:6.1f} ms  "
                  f"p90 {np.percentile(errs, 90) * 1e3:6.1f} ms  chord tones {np.mean(s['chord_tone'] or [np.nan]):.2f}",
                  flush=True)
    summaries = {system: summarise(r, clips) for system, r in rows.items()}
    results = {"command": "python -m bench.band" + (" --quick" if args.quick else "") +
                          (" --part tune" if args.part == "tune" else ""),
               "part": args.part, "clips": [c.spec.name for c in clips], "systems": summaries,
               "goals": goal_rows(summaries["band_follow"], beat_p90_by_kind(),
                                  [h for r in rows["band_follow"] for h in r["chord_tone"]]),
               "render_s": elapsed, "audio_s": float(sum(len(c.audio) for c in clips) / SR) * len(SYSTEMS)}
    out = RESULTS if args.part == "test" and not args.quick else RESULTS.with_name(
        f"band{'-quick' if args.quick else ''}{'-tune' if args.part == 'tune' else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    plot(results, rows, clips, out.with_suffix(".png"))
    print(table(results))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
