"""The beat tracker's onset network (see CARD.md)."""
