"""Train the DDSP decoder for one instrument: ``python -m cadenza.models.ddsp.train --instrument violin``.

Data: :mod:`cadenza.models.ddsp.data` (rendered here, cached in ``data/ddsp``);
inputs from the causal listener, cross-checked against the MIDI
(:func:`cadenza.models.ddsp.features.cross_checked`). Random 2 s windows, Adam,
multi-scale spectral loss against the rendered audio, fixed seed, one torch
thread by default. Stops at ``--steps`` or ``--minutes`` of wall time and
writes ``models/ddsp/<instrument>.pt`` (a checkpoint every 100 steps too).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cadenza.engine.dsp.ddsp import noise_matrix
from cadenza.engine.dsp.units import hz_to_midi
from cadenza.models.ddsp import data, features
from cadenza.models.ddsp.model import Decoder, fast_basis, render, save
from cadenza.models.ddsp_torch import multiscale_spectral_loss

HERE = Path(__file__).resolve().parent


def prepared(instrument: str, split: str, minutes: float | None = None) -> dict[str, np.ndarray]:
    """Audio and cross-checked listener features for one set, its first ``minutes`` if given
    (features cached beside the audio)."""
    sets = data.load(instrument, split)
    if minutes:
        keep = int(minutes * 60 * data.SAMPLE_RATE) // data.HOP
        sets = {"audio": sets["audio"][: keep * data.HOP], "f0_midi": sets["f0_midi"][:keep]}
    cache = data.CACHE / f"{instrument}_{split}_{minutes or 'all'}min_features.npz"
    if cache.exists():
        with np.load(cache) as z:
            feats = {k: z[k] for k in ("f0", "voicing", "loudness")}
        stats = json.loads(cache.with_suffix(".json").read_text())
    else:
        heard = features.listen(sets["audio"], data.SAMPLE_RATE, data.HOP / data.SAMPLE_RATE)
        feats, stats = features.cross_checked(heard, sets["f0_midi"])
        np.savez(cache, **feats)
        cache.with_suffix(".json").write_text(json.dumps(stats))
    n = min(len(feats["f0"]), len(sets["audio"]) // data.HOP)
    return {"audio": sets["audio"][: n * data.HOP], "f0": feats["f0"][:n], "voicing": feats["voicing"][:n],
            "loudness": feats["loudness"][:n], "f0_midi": sets["f0_midi"][:n], "stats": stats}


def ranges(sets) -> dict[str, list[float]]:
    """What the instrument played: loudness (dB, 10th..95th percentile) and pitch (MIDI, 5th..95th)
    of voiced frames — the voice maps note velocity and its automatic octave shift onto these."""
    voiced = (sets["voicing"] >= 0.5) & (sets["f0"] > 0)
    midi = hz_to_midi(sets["f0"][voiced])
    return {"loudness_range": [round(float(v), 1) for v in np.percentile(sets["loudness"][voiced], [10, 95])],
            "pitch_range": [round(float(v), 1) for v in np.percentile(midi, [5, 95])]}


def batch(sets, rng, size: int, frames: int):
    """``size`` random windows of ``frames`` control frames: inputs (B, T) and target audio (B, T·hop)."""
    starts = rng.integers(0, len(sets["f0"]) - frames, size)
    pick = lambda k: torch.tensor(np.stack([sets[k][s:s + frames] for s in starts]))
    audio = torch.tensor(np.stack([sets["audio"][s * data.HOP:(s + frames) * data.HOP] for s in starts]))
    return pick("f0"), pick("loudness"), pick("voicing"), audio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrument", default="violin", choices=sorted(data.INSTRUMENTS))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--minutes", type=float, default=50.0, help="wall-clock limit")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0, help="window length")
    parser.add_argument("--data-minutes", type=float, default=25.0, help="training audio used")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out or HERE / f"{args.instrument}.pt"
    t_start = time.time()
    sets = prepared(args.instrument, "train", args.data_minutes)
    print(f"data ready in {time.time() - t_start:.0f} s; cross-check vs MIDI: {sets['stats']}", flush=True)
    decoder = Decoder(args.hidden, data.SAMPLE_RATE, data.HOP).to(device)
    mat = torch.tensor(noise_matrix(65, decoder.band_hz, data.SAMPLE_RATE), device=device)
    opt = torch.optim.Adam(decoder.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.98 ** (s / 100))
    frames = int(args.seconds * data.SAMPLE_RATE / data.HOP)
    t_train = time.time()
    losses = []
    meta = {}
    bar = tqdm(range(args.steps), desc=f"train {args.instrument}", mininterval=5.0)
    for step in bar:
        f0, loud, voicing, target = (t.to(device) for t in batch(sets, rng, args.batch, frames))
        amp, dist, mags, _ = decoder(f0, loud, voicing)
        noise = torch.rand(target.shape, device=device) * 2 - 1
        audio = render(decoder, f0, amp, dist, mags, noise, mat, fast_basis(decoder, f0))
        loss = multiscale_spectral_loss(audio, target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 3.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        done = (time.time() - t_train) / 60 >= args.minutes or step == args.steps - 1
        if (step + 1) % 100 == 0 or done:
            meta = {"instrument": args.instrument, "steps": step + 1, "batch": args.batch,
                    "window_s": args.seconds, "seed": args.seed, "lr": args.lr,
                    "train_minutes": round((time.time() - t_train) / 60, 1),
                    "loss_last100": round(float(np.mean(losses[-100:])), 4),
                    "data_minutes": round(len(sets["audio"]) / data.SAMPLE_RATE / 60, 1),
                    "cross_check": sets["stats"], "threads": args.threads, "device": device} | ranges(sets)
            save(decoder.cpu(), out, meta)
            decoder.to(device)
        if done:
            break
    bar.close()
    print(json.dumps(meta), flush=True)
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
