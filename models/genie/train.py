"""Train Piano Genie (or its LM baseline) on music21's corpus.

    python -m cadenza.models.genie.train [--baseline] [--steps N] [--batch B] [--length L] [--threads T]

Writes ``models/genie/genie.pt`` (or ``lm_baseline.pt`` with ``--baseline``):
state dict + config + metadata (steps, batch, wall time, validation loss),
loadable with ``torch.load(..., weights_only=True)``, and its ``.sha256``. Fixed seed; CUDA when
available, else CPU. The valid split's perplexity is printed at the end.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.models.genie import data
from cadenza.models.genie.model import Genie, GenieConfig, save

HERE = Path(__file__).resolve().parent
SEED = 1234


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def evaluate(model: Genie, keys: np.ndarray, dt: np.ndarray, device, batch: int = 64) -> float:
    """Mean reconstruction cross-entropy (nats per note) over eval windows, teacher forced."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(keys), batch):
        k = torch.from_numpy(keys[i:i + batch]).to(device)
        d = torch.from_numpy(dt[i:i + batch]).to(device)
        total += float(model.losses(k, d)["recon"]) * k.numel()
        count += k.numel()
    model.train()
    return total / max(count, 1)


def train(baseline: bool, steps: int, batch: int, length: int, lr: float, out: Path) -> dict:
    """Train from scratch with the fixed seed; save to ``out``; return the metadata saved."""
    from tqdm import tqdm

    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    device = pick_device()
    pieces = data.load_pieces("train")
    valid_keys, valid_dt = data.eval_windows(data.load_pieces("valid"), length)
    model = Genie(GenieConfig(buttons=not baseline)).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="lm baseline" if baseline else "genie", mininterval=5.0)
    for step in bar:
        keys, dt = data.windows(pieces, length, batch, rng)
        losses = model.losses(torch.from_numpy(keys).to(device), torch.from_numpy(dt).to(device))
        optim.zero_grad()
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix({k: f"{float(v):.3f}" for k, v in losses.items()})
    seconds = time.perf_counter() - start
    valid_nats = evaluate(model, valid_keys, valid_dt, device)
    meta = {"steps": steps, "batch": batch, "length": length, "lr": lr, "seed": SEED,
            "train_seconds": round(seconds, 1), "device": str(device),
            "threads": torch.get_num_threads(), "torch": str(torch.__version__),
            "cpu": platform.processor() or platform.machine(),
            "valid_perplexity": round(math.exp(valid_nats), 4),
            "train_pieces": len(pieces)}
    save(model, out, **meta)
    print(f"saved {out}: {meta}")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", action="store_true", help="train the LM baseline (no buttons)")
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    parser.add_argument("--batch", type=int, default=32, help="windows per step")
    parser.add_argument("--length", type=int, default=64, help="notes per window")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay to 10 %%)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="output file (default: models/genie/genie.pt or lm_baseline.pt)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or HERE / ("lm_baseline.pt" if args.baseline else "genie.pt")
    train(args.baseline, args.steps, args.batch, args.length, args.lr, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
