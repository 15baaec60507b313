"""The neural vocoder: causal mel and f0 to DDSP controls (see CARD.md)."""
