"""The pitch listener's learned head: data, model, training (see CARD.md)."""
