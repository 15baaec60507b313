"""Train the beat tracker's onset network on clips rendered by the bench's data builder.

    python -m cadenza.models.beat.train [--steps 6000] [--hidden 64] [--train-splits 16] [--out PATH]

Input per 10 ms frame: the tracker's own band differences (log-filtered
spectral flux per band) summed into 27 third-octave groups — computed by the
same numba code the streaming node runs (:mod:`cadenza.engine.dsp.onset`). Output: the probabilities that a beat,
and that a downbeat, falls on this frame. A one-layer GRU (causal, no lookahead) and two sigmoids.
Trained on the splits ``train0`` … ``train<k-1>`` (36 clips each, with swing, funk, 12/8 and tempo curves;
rendered on first use), checked on ``tune`` (36 clips); the held-out ``test`` split is never read. Writes
``models/beat/onset_gru.pt`` (state dict) and ``train_log.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cadenza.engine.dsp.onset import DELAY_MS, N_GROUPS, OnsetFrontEnd
from cadenza.models.weights import save_weights

HERE = Path(__file__).resolve().parent
NET_WEIGHTS = HERE / "onset_gru.pt"  # where the beat listener looks for them
SR = 44100


class OnsetNet(nn.Module):
    """GRU over grouped band differences → per frame, a beat and a downbeat probability."""

    def __init__(self, hidden: int = 24):
        super().__init__()
        self.gru = nn.GRU(N_GROUPS, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, groups) → logits (batch, frames, 2): beat, downbeat."""
        h, _ = self.gru(x)
        return self.out(h)


def features(audio: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(frames, groups) network inputs of a clip, the hop (s) and the tracker's frame delay (s)."""
    front = OnsetFrontEnd(SR)
    return front.features(audio), front.hop / SR, DELAY_MS * 1e-3


def targets(n_frames: int, hop_s: float, delay_s: float, beats: np.ndarray) -> np.ndarray:
    """1 on the frame nearest each beat, 0.5 on its neighbours, 0 elsewhere."""
    y = np.zeros(n_frames, np.float32)
    t = (np.arange(n_frames) + 1) * hop_s - delay_s  # the time each frame stands for
    for b in beats:
        k = int(np.argmin(np.abs(t - b)))
        for d, v in ((-1, 0.5), (1, 0.5), (0, 1.0)):
            if 0 <= k + d < n_frames:
                y[k + d] = max(y[k + d], v)
    return y


def dataset(splits: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    from cadenza.models.beat.data import load_clips

    data = []
    for split in splits:
        for clip in load_clips(split):
            x, hop_s, delay_s = features(clip.audio)
            y = np.stack([targets(len(x), hop_s, delay_s, clip.beats),
                          targets(len(x), hop_s, delay_s, clip.downbeats)], axis=1)
            data.append((x.astype(np.float32), y))
    return data


def batch(data, rng, size: int, frames: int):
    xs, ys = [], []
    for _ in range(size):
        x, y = data[rng.integers(len(data))]
        s = rng.integers(0, len(x) - frames)
        xs.append(x[s: s + frames])
        ys.append(y[s: s + frames])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def evaluate(net: OnsetNet, data, loss_fn) -> float:
    with torch.no_grad():
        losses = [float(loss_fn(net(torch.from_numpy(x)[None]), torch.from_numpy(y)[None])) for x, y in data]
    return float(np.mean(losses))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--train-splits", type=int, default=16, help="train on train0 .. train<k-1>")
    parser.add_argument("--out", type=Path, default=NET_WEIGHTS, help="weights file (the node's default path)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    train = dataset([f"train{k}" for k in range(args.train_splits)])
    check = dataset(["tune"])
    t_data = time.perf_counter() - t0
    net = OnsetNet(args.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([5.0, 20.0]))  # beats, (rarer) downbeats
    log = []
    for step in range(1, args.steps + 1):
        x, y = batch(train, rng, 16, 600)
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps:
            row = {"step": step, "train_loss": loss.item(), "tune_loss": evaluate(net, check, loss_fn),
                   "seconds": round(time.perf_counter() - t0, 1)}
            log.append(row)
            print(row, flush=True)
    save_weights(net.state_dict(), args.out)
    info = {"args": {**vars(args), "out": str(args.out)}, "train_clips": len(train), "check_clips": len(check),
            "params": sum(p.numel() for p in net.parameters()), "data_seconds": round(t_data, 1),
            "total_seconds": round(time.perf_counter() - t0, 1), "log": log}
    (args.out.parent / "train_log.json").write_text(json.dumps(info, indent=1))
    print(f"wrote {args.out} ({info['params']} parameters) in {info['total_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
