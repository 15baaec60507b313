"""Piano Genie benchmark, from the committed weights, on the held-out test pieces.

    python -m bench.genie [--quick]

Writes ``bench/results/genie.json``::

    {"perplexity", "lm_baseline_perplexity", "contour_violation", "in_key",
     "step_us": {"cpu_p50", "cpu_p99", "gpu_p99"}}

- perplexity: exp(mean cross-entropy per note) of the decoder given the
  encoder's buttons, teacher forced, over the test split cut into windows as long as
  the training windows (``meta["length"]`` in the weights);
- lm_baseline_perplexity: the same for the button-less LM baseline (same size,
  data and steps);
- contour_violation: the decoder plays the encoder's buttons on its own (greedy,
  fed its own previous key; the first note is the piece's own, so that the run
  starts in the piece's key — buttons carry contour, not the key); over consecutive
  presses whose buttons differ, the share whose decoded pitch moves the other way
  or not at all;
- in_key: share of those decoded notes whose pitch class is in the piece's key
  (Krumhansl–Schmuckler estimate on the original notes; minor keys admit both
  the natural and the raised 6th and 7th degrees). The table adds the same
  decoding started from nothing (as on stage), scored against its own best-fit key;
- step_us: one live decoder step (the numba port: LSTM step + key choice) on one
  CPU thread, p50 / p99 in µs, timed at SCHED_FIFO priority where allowed — the
  way JACK runs the audio thread that calls it (the table adds normal priority);
  ``gpu_p99`` is the torch step on CUDA (null without a GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from cadenza.models.genie import data
from cadenza.models.genie.model import START, load

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE.parent / "models" / "genie"
GOALS = {"perplexity": "≤ 0.5 × LM baseline", "contour_violation": "≤ 0.05", "cpu_p99": "≤ 500 µs"}

MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
MINOR_STEPS = (0, 2, 3, 5, 7, 8, 9, 10, 11)


def key_mask(pitches: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """12 booleans: the pitch classes of the key that best fits the duration-weighted histogram."""
    hist = np.bincount(pitches % 12, weights=durations, minlength=12)
    best, mask = -2.0, None
    for tonic in range(12):
        for profile, steps in ((MAJOR_PROFILE, MAJOR_STEPS), (MINOR_PROFILE, MINOR_STEPS)):
            r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1]
            if r > best:
                best = r
                mask = np.zeros(12, dtype=bool)
                mask[[(tonic + s) % 12 for s in steps]] = True
    return mask


def test_windows(length: int, quick: bool):
    """Test-split windows (keys, dt) and, per window, the key mask of its piece."""
    keys, dts, masks = [], [], []
    pieces = data.load_pieces("test")
    for piece in pieces:
        k, d = data.eval_windows([piece], length)
        if len(k):
            keys.append(k)
            dts.append(d)
            masks += [key_mask(piece.pitch, piece.duration)] * len(k)
    keys, dts, masks = np.concatenate(keys), np.concatenate(dts), np.array(masks)
    if quick:
        pick = np.random.default_rng(0).choice(len(keys), size=min(96, len(keys)), replace=False)
        keys, dts, masks = keys[pick], dts[pick], masks[pick]
    return keys, dts, masks, len(pieces)


@torch.no_grad()
def perplexity(model, keys, dts, batch: int = 64) -> float:
    total, count = 0.0, 0
    for i in range(0, len(keys), batch):
        k, d = torch.from_numpy(keys[i:i + batch]), torch.from_numpy(dts[i:i + batch])
        total += float(model.losses(k, d)["recon"]) * k.numel()
        count += k.numel()
    return math.exp(total / count)


@torch.no_grad()
def play_encoder_buttons(model, keys, dts, primed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(buttons, decoded keys): greedy autoregressive decoding of the encoder's buttons.

    ``primed``: the first decoded note is the window's true first note.
    """
    k, d = torch.from_numpy(keys), torch.from_numpy(dts)
    buttons = model(k, d)["buttons"]
    value = buttons.float() * (2.0 / (model.config.levels - 1)) - 1.0
    prev = torch.full((len(keys), 1), START, dtype=torch.long)
    state, out = None, []
    for t in range(keys.shape[1]):
        x = model.decoder_inputs(prev, d[:, t:t + 1], value[:, t:t + 1])
        h, state = model.decoder(x, state)
        prev = k[:, :1] if primed and t == 0 else model.dec_out(h).argmax(-1)
        out.append(prev)
    return buttons.numpy(), torch.cat(out, 1).numpy()


def contour_violation(buttons: np.ndarray, pitches: np.ndarray) -> float:
    db = np.diff(buttons, axis=1)
    dp = np.diff(pitches, axis=1)
    moved = db != 0
    bad = moved & (np.sign(dp) != np.sign(db))
    return float(bad.sum() / max(moved.sum(), 1))


def in_key(pitches: np.ndarray, masks: np.ndarray) -> float:
    pcs = (pitches + data.LOWEST_KEY) % 12
    return float(np.take_along_axis(masks, pcs, axis=1).mean())


@contextmanager
def realtime_priority(priority: int = 70):
    """SCHED_FIFO for this thread, as JACK runs the audio thread (``jackd -R``); yields whether it took."""
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, PermissionError, OSError):
        yield False
        return
    try:
        yield True
    finally:
        os.sched_setscheduler(0, before[0], before[1])


def time_presses(decoder, buttons, dts) -> np.ndarray:
    """Nanoseconds per live step (decoder step + key choice) for each press."""
    times = np.empty(len(buttons))
    for i in range(len(buttons)):
        t0 = time.perf_counter_ns()
        decoder.press(dts[i], int(buttons[i]))
        times[i] = time.perf_counter_ns() - t0
    return times


def step_latency(weights: Path, presses: int) -> tuple[dict, dict]:
    """The live step (numba) on one thread, at real-time priority where allowed (as on the
    audio thread) and at normal priority; torch eager step on CPU and, if present, CUDA (µs)."""
    from cadenza.instruments.generators.genie import load_decoder

    torch.set_num_threads(1)
    decoder = load_decoder(weights)
    rng = np.random.default_rng(0)
    buttons = rng.integers(0, 8, presses)
    dts = rng.uniform(0.05, 0.5, presses)
    with realtime_priority() as realtime:
        rt = time_presses(decoder, buttons, dts)
    normal = time_presses(decoder, buttons, dts)
    result = {"cpu_p50": round(float(np.percentile(rt, 50)) / 1e3, 1),
              "cpu_p99": round(float(np.percentile(rt, 99)) / 1e3, 1), "gpu_p99": None}
    rows = {f"numba, 1 CPU thread, {'SCHED_FIFO 70' if realtime else 'normal priority'}":
            (result["cpu_p50"], result["cpu_p99"]),
            "numba, 1 CPU thread, normal priority": (float(np.percentile(normal, 50)) / 1e3,
                                                     float(np.percentile(normal, 99)) / 1e3)}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        model, _ = load(weights, device)
        state, prev, samples = None, START, []
        for i in range(min(presses, 2000)):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter_ns()
            logits, state = model.step(prev, float(dts[i]), int(buttons[i]), state)
            prev = int(logits.argmax())  # .item() synchronises with the GPU
            samples.append(time.perf_counter_ns() - t0)
        rows[f"torch eager, {device}"] = (float(np.percentile(samples, 50)) / 1e3,
                                          float(np.percentile(samples, 99)) / 1e3)
    if "torch eager, cuda" in rows:
        result["gpu_p99"] = round(rows["torch eager, cuda"][1], 1)
    return result, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="96 test windows, 2000 timed steps")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    genie_path, lm_path = WEIGHTS / "genie.pt", WEIGHTS / "lm_baseline.pt"
    genie, genie_meta = load(genie_path)
    lm, lm_meta = load(lm_path)
    length = int(genie_meta["length"])
    keys, dts, masks, n_pieces = test_windows(length, args.quick)
    ppl = perplexity(genie, keys, dts)
    lm_ppl = perplexity(lm, keys, dts)
    buttons, decoded = play_encoder_buttons(genie, keys, dts)
    violation = contour_violation(buttons, decoded)
    key_share = in_key(decoded, masks)
    data_key_share = in_key(keys, masks)
    _, free = play_encoder_buttons(genie, keys, dts, primed=False)
    own_keys = np.array([key_mask(row + data.LOWEST_KEY, np.ones(len(row))) for row in free])
    free_key_share = in_key(free, own_keys)
    free_violation = contour_violation(buttons, free)
    data_violation = contour_violation(buttons, keys)
    steps, torch_times = step_latency(genie_path, 2000 if args.quick else 20000)
    result = {"perplexity": round(ppl, 4), "lm_baseline_perplexity": round(lm_ppl, 4),
              "contour_violation": round(violation, 4), "in_key": round(key_share, 4), "step_us": steps}
    out = HERE / "results" / "genie.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    notes = keys.size
    print(f"## Piano Genie ({'quick: ' if args.quick else ''}{len(keys)} test windows × {length} notes "
          f"= {notes} notes from {n_pieces} held-out pieces)\n")
    print("| metric | value | goal / reference |")
    print("|---|---|---|")
    print(f"| perplexity (decoder given encoder buttons) | {ppl:.3f} | {GOALS['perplexity']}: "
          f"{0.5 * lm_ppl:.3f} — {'met' if ppl <= 0.5 * lm_ppl else 'NOT met'} |")
    print(f"| LM baseline perplexity (no buttons, same size, data, steps) | {lm_ppl:.3f} | |")
    print(f"| contour violation (decoded from the piece's first note) | {violation:.4f} | {GOALS['contour_violation']} — "
          f"{'met' if violation <= 0.05 else 'NOT met'}; original notes vs encoder buttons: {data_violation:.4f} |")
    print(f"| in key (decoded from the piece's first note) | {key_share:.4f} | original notes: {data_key_share:.4f} |")
    print(f"| decoded from nothing: in its own key / contour violation | {free_key_share:.4f} / "
          f"{free_violation:.4f} | as on stage |")
    for i, (label, (p50, p99)) in enumerate(torch_times.items()):
        goal = f"{GOALS['cpu_p99']} — {'met' if p99 <= 500 else 'NOT met'}" if i == 0 else "reference"
        print(f"| step p50 / p99 (µs), {label} | {p50:.1f} / {p99:.1f} | {goal} |")
    if steps["gpu_p99"] is None:
        print("| step p99, GPU | n/a | no CUDA device here |")
    print(f"\ntraining: genie {genie_meta.get('steps')} steps in {genie_meta.get('train_seconds')} s, "
          f"LM baseline {lm_meta.get('steps')} steps in {lm_meta.get('train_seconds')} s "
          f"({genie_meta.get('device')}, {genie_meta.get('threads')} thread(s))")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
