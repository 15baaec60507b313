"""Continuation benchmark, from the committed weights, on the held-out test pieces.

    python -m bench.continuation [--quick]

Writes ``bench/results/continuation.json`` (``continuation-quick.json`` with
``--quick``) and a PNG beside it (one held-out phrase and its continuation as a piano roll)::

    {"perplexity", "baseline_perplexity", "ratio", "unigram_perplexity",
     "in_key", "in_key_masked", "in_key_data", "step_us": {...}, "bar_ms": {...}}

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
- step_us: one event step (``ContinuationNet.step``: embed + 2-layer LSTM +
  read-out, torch eager) on one CPU thread, p50 / p99 / max µs; ``bar_ms``: one
  ``continue_bar(16)`` call (all its steps and the sampling), p50 / p99 ms —
  the worker-lane job per bar. ``gpu`` is null: no device machine was lent to
  the task that ran this (nothing depends on one; CUDA is used when present).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.models.continuation import data, events, score
from cadenza.models.continuation.sampler import WEIGHTS, Continuer, key_mask

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GOALS = {"ratio": 0.8, "in_key": 0.95}


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
    """µs per event step and ms per ``continue_bar(16)`` on the continuer's device."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, events.VOCAB, steps)
    state, times = None, np.empty(steps)
    for i, token in enumerate(tokens):
        t0 = time.perf_counter_ns()
        _, state = continuer.model.step(int(token), i % events.BEAT, state)
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
    result = {"perplexity": round(ppl, 4), "baseline_perplexity": round(base, 4), "ratio": round(ppl / base, 4),
              "unigram_perplexity": round(uni, 4), "in_key": round(share, 4), "in_key_masked": round(masked, 4),
              "in_key_data": round(data_share, 4), "scored_bars": len(scored), "continued_phrases": len(continued),
              "continued_notes": n_notes, "step_us": {"cpu": step, "gpu": None}, "bar_ms": {"cpu": bar, "gpu": None},
              "gpu_note": "no device machine lent to this task; CPU only", "quick": args.quick}
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
    print(f"| event step p50 / p99 / max (µs), torch, 1 CPU thread | {step['p50']} / {step['p99']} / {step['max']} | |")
    print(f"| continue_bar(16) p50 / p99 (ms), 1 CPU thread | {bar['p50']} / {bar['p99']} | worker-lane job |")
    print("| GPU | n/a | no device machine lent to this task |")
    print(f"\ntraining: {meta.get('total_steps', meta.get('steps'))} steps in "
          f"{meta.get('total_train_seconds', meta.get('train_seconds'))} s on {meta.get('device')} "
          f"({meta.get('threads')} thread(s)), {meta.get('parameters')} parameters")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
