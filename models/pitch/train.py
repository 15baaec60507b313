"""Train the pitch listener's learned head on the clips of :mod:`cadenza.models.pitch.data`.

    python -m cadenza.models.pitch.train [--minutes 25] [--hidden 64] [--out PATH]

Random 0.6 s excerpts (300 hops, the first 50 a GRU warm-up outside the loss),
batch 32, Adam (lr 2e-3, cosine to 0 over the time budget), gradient-norm clip 1.
Loss per scored hop: binary cross-entropy of the voicing logit against the
truth's voicing (unvoiced hops weighted ``UNVOICED_WEIGHT``: false alarms cost
more), plus on truly voiced hops the cross-entropy of the bin logits against a
Gaussian over the bins centred on the true f0 (σ 25 cents, as CREPE's
targets), weighted ``ONSET_WEIGHT`` in the ``ONSET_HOPS`` after every note
onset or pitch jump (where most of a tracker's errors fall). Every 500 steps the held-out ``val`` split is scored
(loss; the net's own RPA — peak within 50 cents —, voicing recall and false
alarms); the best state by val loss is kept. Writes ``models/pitch/head.pt``
(state dict, with its sha256 beside it) and ``train_log.json`` beside it. The bench's test
part is never read.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cadenza.engine.dsp.pitch_kernels import BINS_PER_OCTAVE, HEAD_FMIN_HZ, N_BINS
from cadenza.models.pitch import data
from cadenza.models.pitch.model import HIDDEN, WEIGHTS, PitchHead
from cadenza.models.weights import save_weights

SEQ, WARM, BATCH = 300, 50, 32
SIGMA_BINS = 25.0 / (1200.0 / BINS_PER_OCTAVE)
UNVOICED_WEIGHT = 2.0
ONSET_WEIGHT, ONSET_HOPS = 4.0, 15  # 30 ms


def onset_weights(f0: np.ndarray) -> np.ndarray:
    """(…, hops) pitch-loss weights: ``ONSET_WEIGHT`` for ``ONSET_HOPS`` after each hop where the
    truth turns voiced or jumps by more than 50 cents from two hops before, else 1."""
    cents = 1200.0 * np.log2(np.maximum(f0, 1.0))
    prev = np.concatenate([np.zeros_like(f0[..., :2]), f0[..., :-2]], -1)
    prev_c = np.concatenate([cents[..., :2], cents[..., :-2]], -1)
    start = (f0 > 0) & ((prev <= 0) | (np.abs(cents - prev_c) > 50.0))
    w = np.ones(f0.shape, np.float32)
    for k in range(ONSET_HOPS):
        shifted = np.concatenate([np.zeros_like(start[..., :k]), start[..., : start.shape[-1] - k]], -1)
        w[shifted] = ONSET_WEIGHT
    return w


def true_bins(f0: torch.Tensor) -> torch.Tensor:
    """Fractional bin of each f0 (Hz; unvoiced → 0)."""
    return (BINS_PER_OCTAVE * torch.log2(f0.clamp_min(HEAD_FMIN_HZ) / HEAD_FMIN_HZ)).clamp(0, N_BINS - 1)


def loss_terms(logits, f0, scored, weights):
    """(voicing BCE, pitch CE) over the scored hops; ``weights`` (as f0) weight the pitch term."""
    voiced = f0 > 0
    v_weight = torch.where(voiced, 1.0, UNVOICED_WEIGHT)[scored]
    v_loss = (nn.functional.binary_cross_entropy_with_logits(
        logits[..., 0][scored], voiced[scored].float(), reduction="none") * v_weight).sum() / v_weight.sum()
    bins = torch.arange(N_BINS, dtype=logits.dtype)
    mask = voiced & scored
    target = torch.exp(-0.5 * ((bins - true_bins(f0[mask])[:, None]) / SIGMA_BINS) ** 2)
    target = target / target.sum(-1, keepdim=True)
    w = weights[mask]
    p_loss = (-(target * torch.log_softmax(logits[..., 1:][mask], -1)).sum(-1) * w).sum() / w.sum()
    return v_loss, p_loss


def batch(d: dict, rng: np.random.Generator, n: int = BATCH):
    clips = rng.integers(0, d["inputs"].shape[0], n)
    starts = rng.integers(0, d["inputs"].shape[1] - SEQ, n)
    take = lambda a: np.stack([a[c, s:s + SEQ] for c, s in zip(clips, starts)])  # noqa: E731
    x = torch.from_numpy(take(d["inputs"]).astype(np.float32))
    f0 = take(d["f0"])
    scored = torch.from_numpy(take(d["scored"]))
    scored[:, :WARM] = False
    return x, torch.from_numpy(f0), scored, torch.from_numpy(onset_weights(f0))


@torch.no_grad()
def evaluate(net: PitchHead, d: dict) -> dict:
    """Loss and the net's own accuracy over whole val clips (GRU from rest, as live)."""
    logits, _ = net(torch.from_numpy(d["inputs"].astype(np.float32)))
    f0, scored = torch.from_numpy(d["f0"]), torch.from_numpy(d["scored"])
    v_loss, p_loss = loss_terms(logits, f0, scored, torch.from_numpy(onset_weights(d["f0"])))
    voiced = f0 > 0
    peak = logits[..., 1:].argmax(-1).float()
    hit = ((peak - true_bins(f0)).abs() * (1200.0 / BINS_PER_OCTAVE) < 50.0) & voiced & scored
    says = logits[..., 0] > 0
    return {"loss": float(v_loss + p_loss), "voicing_bce": float(v_loss), "pitch_ce": float(p_loss),
            "rpa": float(hit.sum() / (voiced & scored).sum()),
            "vr": float((says & voiced & scored).sum() / (voiced & scored).sum()),
            "vfa": float((says & ~voiced & scored).sum() / (~voiced & scored).sum())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=25.0, help="wall-clock budget")
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train, val = data.load("train"), data.load("val")
    net = PitchHead(args.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    budget = args.minutes * 60.0
    t0 = time.time()
    log = {"hidden": args.hidden, "train_clips": int(train["inputs"].shape[0]),
           "val_clips": int(val["inputs"].shape[0]), "data_version": data.VERSION, "evals": []}
    best, best_state, step = math.inf, None, 0
    while True:
        elapsed = time.time() - t0
        if step % 500 == 0 or elapsed >= budget:
            net.eval()
            row = {"step": step, "minutes": round(elapsed / 60, 2), **evaluate(net, val)}
            net.train()
            log["evals"].append(row)
            print(json.dumps(row), flush=True)
            if row["loss"] < best:
                best, best_state = row["loss"], {k: v.clone() for k, v in net.state_dict().items()}
        if elapsed >= budget:
            break
        for g in opt.param_groups:
            g["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * min(elapsed / budget, 1.0)))
        x, f0, scored, weights = batch(train, rng)
        logits, _ = net(x)
        v_loss, p_loss = loss_terms(logits, f0, scored, weights)
        opt.zero_grad()
        (v_loss + p_loss).backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
    log.update(steps=step, minutes=round((time.time() - t0) / 60, 2), best_val_loss=best)
    save_weights(best_state, args.out)
    Path(args.out).with_name("train_log.json").write_text(json.dumps(log, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
