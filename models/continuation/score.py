"""Held-out scoring: nats per event of the bar after a phrase, with the phrase heard or with nothing before it.

Both readings score the same tokens — the bar's note, duration and shift
tokens; velocity tokens are left out, since whether one is sent depends on what
came before (``data.Case``). Perplexity is ``exp`` of the mean.
"""

from __future__ import annotations

import numpy as np
import torch

from cadenza.models.continuation.data import Case
from cadenza.models.continuation.events import START, VEL
from cadenza.models.continuation.model import ContinuationNet


def _sequence(case: Case, with_phrase: bool) -> tuple[list[int], list[int], int]:
    """(tokens, positions, index of the first scored token) of one reading of ``case``."""
    if with_phrase:
        tokens = [START] + case.phrase[0] + case.target[0]
        positions = [0] + case.phrase[1] + case.target[1]
        return tokens, positions, 1 + len(case.phrase[0])
    return [START] + case.alone[0], [0] + case.alone[1], 1


@torch.no_grad()
def nats(model: ContinuationNet, cases: list[Case], with_phrase: bool, device="cpu",
         batch: int = 64) -> tuple[float, int]:
    """(total nats, number of scored tokens) over ``cases``, teacher forced, in batches of ``batch``."""
    model.eval()
    seqs = sorted((_sequence(c, with_phrase) for c in cases), key=lambda s: len(s[0]))
    total, count = 0.0, 0
    for i in range(0, len(seqs), batch):
        chunk = seqs[i:i + batch]
        width = max(len(s[0]) for s in chunk) - 1
        tokens = np.zeros((len(chunk), width), dtype=np.int64)
        positions = np.zeros_like(tokens)
        targets = np.full_like(tokens, -100)
        for row, (tok, pos, first) in enumerate(chunk):
            n = len(tok) - 1
            tokens[row, :n], positions[row, :n] = tok[:-1], pos[:-1]
            scored = [t if j + 1 >= first and t < VEL else -100 for j, t in enumerate(tok[1:])]
            targets[row, :n] = scored
        logits, _ = model(torch.from_numpy(tokens).to(device), torch.from_numpy(positions).to(device))
        t = torch.from_numpy(targets).to(device)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        total += float(loss)
        count += int((t != -100).sum())
    return total, count


def perplexity(model: ContinuationNet, cases: list[Case], with_phrase: bool, device="cpu") -> float:
    """exp(mean nats per scored token) of ``cases``."""
    total, count = nats(model, cases, with_phrase, device)
    return float(np.exp(total / max(count, 1)))
