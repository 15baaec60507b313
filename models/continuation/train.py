"""Train the continuation net on music21's corpus.

    python -m cadenza.models.continuation.train [--steps N] [--batch B] [--length L] [--threads T] [--init PT]

Writes ``models/continuation/continuation.pt``: state dict + config + metadata
(steps, batch, wall time, valid perplexities), loadable with
``torch.load(..., weights_only=True)``, and its ``.sha256``. Fixed seed; CUDA
when available, else CPU. ``--init`` starts from saved weights (their steps are
added to ``meta["total_steps"]``) instead of from scratch. At the end the valid split's bar-after-a-phrase
perplexity is printed with the phrase heard and without it (``score.py``).
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.models.continuation import data, score
from cadenza.models.continuation.model import ContinuationNet, load, save

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "continuation.pt"
SEED = 1234


def train(steps: int, batch: int, length: int, lr: float, out: Path, init: Path | None = None) -> dict:
    """Train with the fixed seed (from scratch, or from the weights ``init``); save to ``out``; return its metadata."""
    from tqdm import tqdm

    torch.manual_seed(SEED)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, before = load(init, device) if init else (ContinuationNet().to(device), {})
    model.train()
    done = int(before.get("total_steps", before.get("steps", 0)))
    rng = np.random.default_rng(SEED + done)  # a run from saved weights draws new windows
    lines = data.load_lines("train")
    valid = data.cases(data.load_lines("valid"))
    optim = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="continuation", mininterval=5.0)
    for step in bar:
        tokens, positions, targets = (torch.from_numpy(a).to(device) for a in data.batch(lines, length, batch, rng))
        loss = model.loss(tokens, positions, targets)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{float(loss):.3f}")
    seconds = time.perf_counter() - start
    meta = {"steps": steps, "total_steps": steps + done,
            "total_train_seconds": round(seconds + float(before.get("total_train_seconds",
                                                                   before.get("train_seconds", 0.0))), 1),
            "init": init.name if init else None, "batch": batch, "length": length, "lr": lr, "seed": SEED,
            "train_seconds": round(seconds, 1), "device": str(device),
            "threads": torch.get_num_threads(), "torch": str(torch.__version__),
            "cpu": platform.processor() or platform.machine(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_lines": len(lines), "valid_cases": len(valid),
            "valid_perplexity_phrase": round(score.perplexity(model, valid, True, device), 4),
            "valid_perplexity_alone": round(score.perplexity(model, valid, False, device), 4)}
    save(model.cpu(), out, **meta)
    print(f"saved {out}: {meta}")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="optimiser steps")
    parser.add_argument("--batch", type=int, default=32, help="windows per step")
    parser.add_argument("--length", type=int, default=160, help="events per window")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay to 10 %%)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="output file")
    parser.add_argument("--init", type=Path, help="start from these weights instead of from scratch")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train(args.steps, args.batch, args.length, args.lr, args.out, args.init)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
