"""The DDSP decoder: f0 and loudness to harmonic-plus-noise controls (see CARD.md)."""
