"""Piano Genie: 8 buttons to 88 keys (see CARD.md)."""
