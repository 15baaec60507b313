"""Continuation benchmark, from the committed weights, on the held-out test pieces.

    python -m bench.continuation [--quick]

Writes ``bench/results/continuation.json`` (``continuation-quick.json`` with
``--quick``) and a PNG beside it (one held-out phrase and its continuation as a piano roll)::

    {"perplexity", "baseline_perplexity", "ratio", "unigram_perplexity",
     "in_key", "in_key_masked", "in_key_data", "step_us": {...}, "bar_ms": {...},
     "band": {"clips", "kinds": {kind: {"clips", "notes", "median_ms", "p90_ms",
              "signed_median_ms"}}, "goals", "render_s", "audio_s"}}

- perplexity: exp(mean nats per event) of the bar after a 4-bar phrase
  (``data.cases``: up to 4 bar lines per held-out line), the phrase heard;
- baseline_perplexity: the *same net* (same size, weights, data and steps) reading
  the same bar with nothing before it — only ``START`` and the bar's own events
  as they arrive: the context-free baseline. ``ratio`` = perplexity ÷ baseline
  (goal ≤ 0.8). Both score the same note, duration and shift events (``score.py``);
- unigram_perplexity: event frequencies of the train split alone, as a floor reference;
- in_key: share of generated notes in the piece's key (music21's Krumhansl
  analysis; minor admits its raised 7th, ``sampler.key_mask``) when the sampler
  continues a held-out phrase for 2 bars at temperature 1, density 1, full
  register and *no* key mask (goal ≥ 0.95); ``in_key_masked`` the same with
  the key mask (1.0 by construction); ``in_key_data`` the held-out notes themselves;
- step_us: one event step (the token's embedding, the 2-layer LSTM and the read-out) on one
  CPU thread, p50 / p99 / max µs: ``cpu`` on the CPU path the node runs (the numba port,
  ``numba_step.py``), ``cpu_torch`` torch eager (the code of the CUDA path, here on the CPU);
  ``bar_ms``: one ``continue_bar(16)`` call (all its steps and the sampling), p50 / p99 ms —
  the worker-lane job per bar — on each. ``gpu`` is null: no device machine was lent to
  the task that ran this (nothing depends on one; CUDA is used when present).
- band: the continuation playing on with a band, scored as ``bench.band`` scores its
  generators. Each held-out band clip (``bench.datasets.band_set``, the clips ``bench.band``
  uses; ``--quick``: one per kind) is played through ``patches/genie_band.toml`` offline
  (``render(..., midi=..., notes_out=...)``, the code behind ``cadenza render``) with the
  node ``cont`` set to the clip's swing. The performer presses Genie's buttons for 2 bars of
  eighths on the clip's true eighths from its first bar line after 4 s, then stops; after
  a bar of silence ``cont`` continues the phrase on the beat listener's grid until the clip
  ends. Scored: each ``cont`` onset after the last press is released, its signed distance
  (ms) to the nearest true sixteenth (``bench.band.grid_errors``: swung in swing clips, on
  ramp clips from the second beat after the ramp); per clip kind and ``all``: the notes,
  the median and p90 of the absolute error and the median of the signed one. Goals, as
  ``bench.band``'s (``goals``: name, measured, met): on steady and swing clips median
  <= 5 ms and p90 <= the beat bench's predicted-beat p90 of that kind + 5 ms; ramp p90
  <= 40 ms; rubato reported, not gated. ``render_s``: the renders' wall time (s),
  ``audio_s``: the clips' length (s).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import tomlkit
import torch

from bench import band
from bench.datasets.band_set import KINDS, SR, Clip, load_clips
from cadenza.engine.cli import render
from cadenza.engine.events import Kind, make_events
from cadenza.engine.midi import read_notes_file, write_notes_file
from cadenza.models.continuation import data, events, score
from cadenza.models.continuation.sampler import WEIGHTS, Continuer, key_mask

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GOALS = {"ratio": 0.8, "in_key": 0.95}
BAND_PATCH = HERE.parent / "patches" / "genie_band.toml"
PHRASE = (0, 2, 4, 5, 7, 5, 4, 2, 3, 5, 7, 6, 4, 2, 1, 0)  # the Genie buttons pressed, an eighth each: 2 bars
PHRASE_FROM_S = 4.0  # the phrase starts on the clip's first bar line from here (the beat listener has locked)
HOLD = 0.8  # a press lasts this share of its eighth


def unigram_perplexity(cases: list[data.Case]) -> float:
    """exp(mean nats) of the cases' scored events under the train split's event frequencies (add-one)."""
    lines = data.load_lines("train", progress=False)
    counts = np.ones(events.VOCAB)
    for line in lines:
        tokens, _, _ = events.encode(line.step, line.pitch, data.velocities(line.step), line.duration,
                                     int(line.step[0]) // events.BEAT * events.BEAT)
        np.add.at(counts, tokens, 1)
    counts[events.VEL:] = 0.0  # velocity events are not scored
    logp = np.log(counts / counts.sum(), where=counts > 0, out=np.full(events.VOCAB, -np.inf))
    scored = [t for c in cases for t in c.alone[0] if t < events.VEL]
    return float(np.exp(-logp[scored].mean()))


def phrase_notes(case: data.Case) -> list[tuple[int, int, int, int]]:
    """The notes of a case's phrase as the sampler takes them (step, pitch, velocity, duration)."""
    line = case.line
    keep = (line.step >= case.bar - 64) & (line.step < case.bar)
    velocity = data.velocities(line.step)
    return [(int(s), int(p), int(v), int(d)) for s, p, v, d in
            zip(line.step[keep], line.pitch[keep], velocity[keep], line.duration[keep])]


def in_key(continuer: Continuer, cases: list[data.Case], masked: bool) -> tuple[float, int, list]:
    """(share of continued notes in the key, notes, the first case's notes) over 2-bar continuations."""
    hits, total, first = 0, 0, []
    for i, case in enumerate(cases):
        mask = key_mask(case.line.tonic, case.line.mode)
        continuer.prime(phrase_notes(case), end=case.bar)
        notes = [n for bar in range(2) for n in
                 continuer.continue_bar(16, 1.0, 1.0, key_mask=mask if masked else None, seed=1000 * i + bar)]
        hits += sum(bool(mask[p % 12]) for _, p, _, _ in notes)
        total += len(notes)
        if i == 0:
            first = notes
    return hits / max(total, 1), total, first


def step_latency(continuer: Continuer, steps: int, bars: int) -> tuple[dict, dict]:
    """µs per event step (``continuer.net.feed`` of one token) and ms per ``continue_bar(16)``, on the
    continuer's own path (its ``backend``)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, events.VOCAB, steps)
    times = np.empty(steps)
    continuer.reset()
    for i, token in enumerate(tokens):
        t0 = time.perf_counter_ns()
        continuer.net.feed([int(token)], [i % events.BEAT])
        times[i] = time.perf_counter_ns() - t0
    bar_times = np.empty(bars)
    continuer.prime([(0, 60, 80, 4), (4, 64, 80, 4), (8, 67, 80, 4), (12, 72, 80, 4)])
    for i in range(bars):
        t0 = time.perf_counter_ns()
        continuer.continue_bar(16, seed=i)
        bar_times[i] = time.perf_counter_ns() - t0
    step = {k: round(float(np.percentile(times, q)) / 1e3, 1) for k, q in (("p50", 50), ("p99", 99), ("max", 100))}
    bar = {k: round(float(np.percentile(bar_times, q)) / 1e6, 2) for k, q in (("p50", 50), ("p99", 99))}
    return step, bar


def band_inputs(clip: Clip, folder: Path) -> tuple[Path, Path, float]:
    """genie_band.toml with the clip's swing on ``cont``, and the performer's :data:`PHRASE` as a MIDI file
    (one press per true eighth, swung in swing clips); returns both paths and when the last press ends (s)."""
    doc = tomlkit.parse(BAND_PATCH.read_text())
    for node in doc["node"]:
        if node["id"] == "cont":
            node["swing"] = round(clip.spec.swing, 4)
    patch = folder / f"{clip.spec.name}-genie_band.toml"
    patch.write_text(tomlkit.dumps(doc))
    first = int(np.argmax(clip.grid_s[::16] >= PHRASE_FROM_S)) * 16
    eighths = clip.grid_s[first: first + 2 * len(PHRASE) + 1: 2]
    on, off = eighths[:-1], eighths[:-1] + HOLD * np.diff(eighths)
    rows = make_events(2 * len(PHRASE))
    rows["time"] = np.round(np.concatenate([on, off]) * SR)
    rows["kind"] = np.repeat([Kind.NOTE_ON, Kind.NOTE_OFF], len(PHRASE))
    rows["a"] = np.tile(np.array(doc["midi"]["buttons"]["notes"])[list(PHRASE)], 2)
    rows["b"] = 90
    phrase = folder / f"{clip.spec.name}-phrase.mid"
    write_notes_file(phrase, {"performer": rows}, SR)
    return patch, phrase, float(off[-1])


def band_errors(clip: Clip, folder: Path) -> tuple[list[float], float]:
    """Signed onset errors (s) of the continuation to the clip's true sixteenths after the phrase, and the
    render's wall time (s)."""
    wav, notes = folder / f"{clip.spec.name}.wav", folder / f"{clip.spec.name}-notes.mid"
    sf.write(str(wav), clip.audio, SR, subtype="FLOAT")
    patch, phrase, phrase_end = band_inputs(clip, folder)
    t0 = time.perf_counter()
    render(patch, folder / "mix.wav", midi=phrase, input_wav=wav, tail_s=0.0, quiet=True, notes_out=notes)
    seconds = time.perf_counter() - t0
    onsets = [t for t, _ in read_notes_file(notes).get("cont", [])]
    return band.grid_errors(clip, onsets, 4, max(band.SKIP_S, phrase_end)), seconds


def spread(errors_s: list[float]) -> dict:
    """The notes, and the median and p90 of the absolute and the median of the signed onset errors (ms), of
    onset errors given in s (no figures for no notes)."""
    e = np.asarray(errors_s) * 1e3
    if not len(e):
        return {"notes": 0}
    return {"notes": len(e), "median_ms": round(float(np.median(np.abs(e))), 2),
            "p90_ms": round(float(np.percentile(np.abs(e), 90)), 2), "signed_median_ms": round(float(np.median(e)), 2)}


def band_bench(quick: bool) -> dict:
    """The ``band`` entry of the results: onset errors (ms) per clip kind and overall, and bench.band's goals."""
    clips = load_clips("test", quick)
    errors, elapsed = {}, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            errors[clip.spec.name], seconds = band_errors(clip, Path(tmp))
            elapsed += seconds
            s = spread(errors[clip.spec.name])
            print(f"{clip.spec.name:<16} {clip.spec.bpm:5.0f} BPM  {s['notes']:4d} continued notes  median "
                  f"{s.get('median_ms', np.nan):6.1f} ms  p90 {s.get('p90_ms', np.nan):6.1f} ms", flush=True)
    kinds = {}
    for kind in (*KINDS, "all"):
        picked = [c for c in clips if kind in (c.spec.kind, "all")]
        if picked:
            kinds[kind] = {"clips": len(picked)} | spread([x for c in picked for x in errors[c.spec.name]])
    return {"clips": [c.spec.name for c in clips], "kinds": kinds,
            "goals": band.goal_rows(kinds, band.beat_p90_by_kind(), []),
            "render_s": round(elapsed, 1), "audio_s": round(sum(len(c.audio) for c in clips) / SR, 1)}


def band_lines(result: dict) -> list[str]:
    """The markdown table's rows for the ``band`` entry: one per clip kind and one overall."""
    lines = []
    for kind, s in result["kinds"].items():
        goals = "; ".join(f"{name.split(': ', 1)[1]}: {'met' if met else 'NOT met'}"
                          for name, _, met in result["goals"] if name.startswith(f"{kind}:"))
        measured = f"{s['median_ms']:.1f} / {s['p90_ms']:.1f}" if "median_ms" in s else "–"
        clips = f"{s['clips']} clip{'s' * (s['clips'] != 1)}"
        lines.append(f"| continued over band clips, {kind} ({clips}, {s['notes']} notes): onset error to the true "
                     f"sixteenths, median / p90 (ms) | {measured} | "
                     f"{goals or ('reported, not gated' if kind == 'rubato' else 'reference')} |")
    return lines


def plot(case: data.Case, notes: list, path: Path) -> None:
    """A piano roll: the held-out phrase, its true next 2 bars and the continuation."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    line = case.line
    for s, p, d in zip(line.step, line.pitch, line.duration):
        if case.bar - 64 <= s < case.bar + 32:
            ax.broken_barh([(s - case.bar, d)], (p - 0.4, 0.8), color="tab:blue" if s < case.bar else "tab:gray")
    for s, p, _, d in notes:
        ax.broken_barh([(s, d)], (p - 0.3, 0.6), color="tab:orange")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("grid steps (sixteenths) from the bar line")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(f"{line.piece_id}: phrase (blue), true next bars (grey), continuation (orange)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 scored bars, 60 continued phrases, 2000 steps")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="weights file (default: the committed one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    continuer = Continuer(args.weights, device="cpu")
    lines = data.load_lines("test", progress=False)
    cases = data.cases(lines)
    rng = np.random.default_rng(0)
    scored = [cases[i] for i in sorted(rng.choice(len(cases), 400, replace=False))] if args.quick else cases
    continued = [cases[i] for i in sorted(rng.choice(len(cases), 60 if args.quick else 400, replace=False))]
    ppl = score.perplexity(continuer.model, scored, True)
    base = score.perplexity(continuer.model, scored, False)
    uni = unigram_perplexity(scored)
    share, n_notes, example = in_key(continuer, continued, masked=False)
    masked, n_masked, _ = in_key(continuer, continued, masked=True)
    data_share = float(np.mean([key_mask(c.line.tonic, c.line.mode)[c.line.pitch % 12].mean() for c in continued]))
    step, bar = step_latency(continuer, 2000 if args.quick else 20000, 50 if args.quick else 300)
    torch_step, torch_bar = step_latency(Continuer(args.weights, device="cpu", backend="torch"),
                                         2000 if args.quick else 20000, 50 if args.quick else 300)
    result = {"perplexity": round(ppl, 4), "baseline_perplexity": round(base, 4), "ratio": round(ppl / base, 4),
              "unigram_perplexity": round(uni, 4), "in_key": round(share, 4), "in_key_masked": round(masked, 4),
              "in_key_data": round(data_share, 4), "scored_bars": len(scored), "continued_phrases": len(continued),
              "continued_notes": n_notes, "step_us": {"cpu": step, "cpu_torch": torch_step, "gpu": None},
              "bar_ms": {"cpu": bar, "cpu_torch": torch_bar, "gpu": None},
              "gpu_note": "no device machine lent to this task; CPU only", "quick": args.quick,
              "band": band_bench(args.quick)}
    out = RESULTS / ("continuation-quick.json" if args.quick else "continuation.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(continued[0], example, out.with_suffix(".png"))

    meta = continuer.meta
    print(f"## Continuation ({'quick: ' if args.quick else ''}{len(scored)} held-out bars after a 4-bar phrase, "
          f"{len(continued)} phrases continued for 2 bars; {len(lines)} held-out lines)\n")
    print("| metric | value | goal / reference |")
    print("|---|---|---|")
    print(f"| perplexity, phrase heard | {ppl:.3f} | ≤ 0.8 × baseline = {0.8 * base:.3f}: "
          f"{'met' if ppl / base <= GOALS['ratio'] else 'NOT met'} (ratio {ppl / base:.3f}) |")
    print(f"| baseline: same net, no phrase before the bar | {base:.3f} | same size, weights, data |")
    print(f"| unigram (train event frequencies) | {uni:.3f} | reference |")
    print(f"| continued notes in the piece's key, no key mask | {share:.4f} ({n_notes} notes) | ≥ 0.95: "
          f"{'met' if share >= GOALS['in_key'] else 'NOT met'} |")
    print(f"| the same with the key mask | {masked:.4f} ({n_masked} notes) | 1 by construction |")
    print(f"| held-out notes in their own key | {data_share:.4f} | reference |")
    for name, st, br in (("numba, the CPU path", step, bar), ("torch eager on the CPU (the CUDA path's code)",
                                                               torch_step, torch_bar)):
        print(f"| event step p50 / p99 / max (µs), {name}, 1 thread | {st['p50']} / {st['p99']} / {st['max']} | |")
        print(f"| continue_bar(16) p50 / p99 (ms), {name} | {br['p50']} / {br['p99']} | worker-lane job |")
    print("\n".join(band_lines(result["band"])))
    print("| GPU | n/a | no device machine lent to this task |")
    print(f"\ntraining: {meta.get('total_steps', meta.get('steps'))} steps in "
          f"{meta.get('total_train_seconds', meta.get('train_seconds'))} s on {meta.get('device')} "
          f"({meta.get('threads')} thread(s)), {meta.get('parameters')} parameters")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
