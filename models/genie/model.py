"""Piano Genie (Donahue, Simon, Dieleman, IUI 2019): an 8-button discrete autoencoder.

- Encoder: key embedding + time feature → 2-layer bidirectional LSTM → one scalar per note.
- Bottleneck: integer quantisation to ``levels`` evenly spaced values in [-1, 1]
  (IQAE), straight-through gradient; button index = level index 0..levels-1.
- Decoder: 2-layer unidirectional LSTM fed the previous key, the time since the
  previous note (``dt_feature``) and the button value; predicts the key (88-way).

Losses (``Genie.losses``):

- reconstruction: cross-entropy of the decoder's key prediction;
- margin: ``mean(relu(|z| - 1)²)`` keeps the encoder's output inside the quantiser's range;
- contour: ``mean(relu(margin - Δk·Δz)²)`` over consecutive notes whose keys differ
  (Δk semitones, Δz encoder outputs), the paper's term that makes a higher
  button mean a higher key; plus, over repeated keys, ``mean(Δz²)`` so a
  repeated key keeps its button (our addition: a button change then always moves the pitch).

With ``buttons=False`` the same class is the language-model baseline: the
decoder alone, without the button input and without the encoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cadenza.models.weights import load_model, save_model

NUM_KEYS = 88
START = NUM_KEYS  # the "previous key" token of a sequence's first note


@dataclass
class GenieConfig:
    """Sizes and loss weights. ``buttons=False`` makes the LM baseline."""

    buttons: bool = True
    levels: int = 8
    embed: int = 64
    enc_hidden: int = 128
    dec_hidden: int = 128
    layers: int = 2
    contour_margin: float = 1.0
    contour_weight: float = 1.0
    repeat_weight: float = 1.0
    margin_weight: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def dt_feature(dt: torch.Tensor) -> torch.Tensor:
    """Time since the previous note (seconds) → a feature near [-1, 1]: log scale, 1 ms .. 8 s."""
    return (torch.log(dt.clamp(0.0, 8.0) + 1e-3) + 2.5) / 2.5


def quantise(z: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through integer quantisation: (value in [-1, 1], button index 0..levels-1)."""
    index = torch.round((z.clamp(-1.0, 1.0) + 1.0) * (levels - 1) / 2.0)
    value = index * (2.0 / (levels - 1)) - 1.0
    return z + (value - z).detach(), index.long()


def button_value(index: torch.Tensor | int, levels: int = 8):
    """Button index 0..levels-1 → the decoder's input value in [-1, 1]."""
    return index * (2.0 / (levels - 1)) - 1.0


class Genie(nn.Module):
    """The autoencoder (or, with ``config.buttons=False``, the LM baseline)."""

    def __init__(self, config: GenieConfig | None = None):
        super().__init__()
        self.config = config = config or GenieConfig()
        if config.buttons:
            self.enc_embed = nn.Embedding(NUM_KEYS, config.embed)
            self.encoder = nn.LSTM(config.embed + 1, config.enc_hidden, config.layers,
                                   batch_first=True, bidirectional=True)
            self.enc_out = nn.Linear(2 * config.enc_hidden, 1)
        self.dec_embed = nn.Embedding(NUM_KEYS + 1, config.embed)
        self.decoder = nn.LSTM(config.embed + 1 + int(config.buttons), config.dec_hidden,
                               config.layers, batch_first=True)
        self.dec_out = nn.Linear(config.dec_hidden, NUM_KEYS)

    def encode(self, keys: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output z (batch, time) for keys 0..87 and dt seconds."""
        x = torch.cat([self.enc_embed(keys), dt_feature(dt).unsqueeze(-1)], dim=-1)
        h, _ = self.encoder(x)
        return self.enc_out(h).squeeze(-1)

    def decoder_inputs(self, prev_keys: torch.Tensor, dt: torch.Tensor,
                       button: torch.Tensor | None) -> torch.Tensor:
        """The decoder's per-step input vector (batch, time, features)."""
        parts = [self.dec_embed(prev_keys), dt_feature(dt).unsqueeze(-1)]
        if self.config.buttons:
            parts.append(button.unsqueeze(-1))
        return torch.cat(parts, dim=-1)

    def decode(self, keys: torch.Tensor, dt: torch.Tensor, button: torch.Tensor | None,
               state=None):
        """Teacher-forced logits (batch, time, 88) for target ``keys``; returns (logits, state)."""
        prev = torch.cat([torch.full_like(keys[:, :1], START), keys[:, :-1]], dim=1)
        h, state = self.decoder(self.decoder_inputs(prev, dt, button), state)
        return self.dec_out(h), state

    def forward(self, keys: torch.Tensor, dt: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits and (for Genie) encoder outputs and buttons for a batch of windows."""
        out: dict[str, torch.Tensor] = {}
        value = None
        if self.config.buttons:
            z = self.encode(keys, dt)
            value, index = quantise(z, self.config.levels)
            out |= {"z": z, "buttons": index}
        out["logits"], _ = self.decode(keys, dt, value)
        return out

    def losses(self, keys: torch.Tensor, dt: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training losses (nats per note for ``recon``) and their weighted ``total``."""
        cfg = self.config
        out = self(keys, dt)
        recon = F.cross_entropy(out["logits"].reshape(-1, NUM_KEYS), keys.reshape(-1))
        result = {"recon": recon, "total": recon}
        if cfg.buttons:
            z = out["z"]
            margin = F.relu(z.abs() - 1.0).pow(2).mean()
            dk = (keys[:, 1:] - keys[:, :-1]).float()
            dz = z[:, 1:] - z[:, :-1]
            moved = dk != 0
            contour = (F.relu(cfg.contour_margin - dk * dz).pow(2) * moved).sum() / moved.sum().clamp(min=1)
            repeat = (dz.pow(2) * ~moved).sum() / (~moved).sum().clamp(min=1)
            result |= {"margin": margin, "contour": contour, "repeat": repeat}
            result["total"] = (recon + cfg.margin_weight * margin + cfg.contour_weight * contour
                               + cfg.repeat_weight * repeat)
        return result

    @torch.no_grad()
    def step(self, prev_key: int, dt: float, button: int | None, state=None, levels: int | None = None):
        """One decoder step (the torch reference of the numba port): (logits (88,), state)."""
        device = self.dec_out.weight.device
        prev = torch.tensor([[prev_key]], device=device)
        dtt = torch.tensor([[dt]], dtype=torch.float32, device=device)
        value = None
        if self.config.buttons:
            value = torch.tensor([[button_value(float(button), levels or self.config.levels)]],
                                 dtype=torch.float32, device=device)
        h, state = self.decoder(self.decoder_inputs(prev, dtt, value), state)
        return self.dec_out(h)[0, 0], state


def save(model: Genie, path, **extra) -> None:
    """Save the state dict, the config and plain-data metadata (weights_only-loadable), with its sha256."""
    save_model(model, path, **extra)


def load(path, device: str | torch.device = "cpu") -> tuple[Genie, dict]:
    """Load weights written by :func:`save` (sha256-checked, weights_only); returns (model in eval mode, meta)."""
    return load_model(path, lambda config: Genie(GenieConfig(**config)), "a Piano Genie model", device)
