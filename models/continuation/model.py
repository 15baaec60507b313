"""The continuation net: a 2-layer LSTM language model over grid note events (``events.py``).

Input per step: the token's embedding plus the embedding of its position in the
beat (the cursor after it, 0..3 sixteenths); output: logits over the next token
(``events.VOCAB``). Trained with cross-entropy on windows that begin with
``START`` (teacher forcing). Live, one event step runs as the numba port
(``numba_step.py``) on a CPU, or through ``forward`` with its state on CUDA.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cadenza.models.continuation.events import BEAT, VOCAB
from cadenza.models.weights import load_model, save_model


@dataclass
class ContinuationConfig:
    """Sizes of the net."""

    embed: int = 96
    hidden: int = 192
    layers: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


class ContinuationNet(nn.Module):
    """Token + beat-position embeddings → LSTM → next-token logits."""

    def __init__(self, config: ContinuationConfig | None = None):
        super().__init__()
        self.config = config = config or ContinuationConfig()
        self.embed = nn.Embedding(VOCAB, config.embed)
        self.position = nn.Embedding(BEAT, config.embed)
        self.lstm = nn.LSTM(config.embed, config.hidden, config.layers, batch_first=True)
        self.out = nn.Linear(config.hidden, VOCAB)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, state=None):
        """Logits (batch, time, VOCAB) for int64 (batch, time) tokens and positions; returns (logits, state)."""
        h, state = self.lstm(self.embed(tokens) + self.position(positions), state)
        return self.out(h), state

    def loss(self, tokens: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats per token) of ``targets`` (-100 = ignored) given the inputs."""
        logits, _ = self(tokens, positions)
        return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100)


def save(model: ContinuationNet, path, **extra) -> None:
    """Save the state dict, the config and plain-data metadata (weights_only-loadable), with its sha256."""
    save_model(model, path, **extra)


def load(path, device: str | torch.device = "cpu") -> tuple[ContinuationNet, dict]:
    """Load weights written by :func:`save` (sha256-checked, weights_only); returns (model in eval mode, meta)."""
    return load_model(path, lambda config: ContinuationNet(ContinuationConfig(**config)), "a continuation model", device)
