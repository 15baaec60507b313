"""Phrase continuation: a small LSTM over grid note events that picks up the performer's phrase (see CARD.md)."""
